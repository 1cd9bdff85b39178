"""Projection and prediction heads of the self-supervised objectives (Flax Linen).

SimCLR (`SimCLRProjection`): every layer is a bias-free dense + BN; hidden layers add ReLU, the
output BN has no β (as the reference's `LinearLayer(use_bias=False, use_bn=True)`). v1 has 2
layers (d→d→128), v2 has 3 (d→d→d→128).
BYOL projector/predictor (`MLPHead`, as DeepMind's BYOL): dense(+bias) → BN → ReLU → dense (no
bias); MoCo v2's head: the same without BN and with an output bias (PyTorch `nn.Linear`s).
`LinearHead`: the one linear classifier (supervised pretraining, fine-tuning, SPML, CAMs),
parameters {"kernel": (D, C), "bias": (C,)}.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.resnet import BN_EPSILON, BN_MOMENTUM


class SimCLRProjection(nn.Module):
  num_layers: int = 2
  hidden_dim: int = 2048
  out_dim: int = 128

  @nn.compact
  def __call__(self, x, train: bool):
    norm = lambda **kw: nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                                     epsilon=BN_EPSILON, **kw)
    x = x.astype(jnp.float32)
    for _ in range(self.num_layers - 1):
      x = nn.relu(norm()(nn.Dense(self.hidden_dim, use_bias=False)(x)))
    return norm(use_bias=False)(nn.Dense(self.out_dim, use_bias=False)(x))


class MLPHead(nn.Module):
  hidden_dim: int = 4096
  out_dim: int = 256
  use_bn: bool = True
  out_bias: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(self.hidden_dim)(x.astype(jnp.float32))
    if self.use_bn:
      x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                       epsilon=BN_EPSILON)(x)
    return nn.Dense(self.out_dim, use_bias=self.out_bias)(nn.relu(x))


LINEAR_INITS = ("zeros", "torch")


def _torch_uniform(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class LinearHead(nn.Module):
  """x @ kernel + bias. initializer "zeros" (a classifier trained on top of a pretrained
  backbone) or "torch" (kernel and bias U[±1/√fan_in], as torch.nn.Linear; the SPML reference)."""
  num_classes: int
  initializer: str = "zeros"   # not `init`: that is Module.init

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # same signature as the other heads
    x = x.astype(jnp.float32)
    if self.initializer == "zeros":
      kernel_init = bias_init = nn.initializers.zeros
    elif self.initializer == "torch":
      kernel_init = bias_init = _torch_uniform(x.shape[-1])
    else:
      raise ValueError(f"initializer must be one of {LINEAR_INITS}, got {self.initializer!r}")
    kernel = self.param("kernel", kernel_init, (x.shape[-1], self.num_classes))
    bias = self.param("bias", bias_init, (self.num_classes,))
    return x @ kernel + bias
