"""Projection and prediction heads of the self-supervised objectives (Flax Linen).

SimCLR (`SimCLRProjection`): every layer is a bias-free dense + BN; hidden layers add ReLU, the
output BN has no β (as the reference's `LinearLayer(use_bias=False, use_bn=True)`). v1 has 2
layers (d→d→128), v2 has 3 (d→d→d→128).
BYOL projector/predictor (`MLPHead`, as DeepMind's BYOL): dense(+bias) → BN → ReLU → dense (no
bias); MoCo v2's head: the same without BN and with an output bias (PyTorch `nn.Linear`s).
`LinearHead`: the supervised classifier.
"""
from __future__ import annotations

import flax.linen as nn
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


class LinearHead(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool):
    del train  # same signature as the other heads
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros)(x.astype(jnp.float32))
