"""BYOL: an online network (backbone → projector → predictor) regresses the projections of an
EMA target network (backbone → projector), following DeepMind's reference:

  loss = mean_b [ (2 − 2·cos(p₁, sg(z'₂))) + (2 − 2·cos(p₂, sg(z'₁))) ]
  τ_k  = 1 − (1 − τ_base)·(cos(π·k / K) + 1) / 2          (τ_base = 0.996 → 1 at the last step)
  ξ    ← τ_k·ξ + (1 − τ_k)·θ                              (after the optimiser step, new θ)

The target parameters live in `extra`, outside what is differentiated, and pass through
stop_gradient as well. Each view goes through each network separately (BN statistics per view);
the target's BN running statistics come from its own train-mode forward passes.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from vision_jax.heads import MLPHead
from vision_jax.resnet import ResNet
from vision_jax.ssl.base import Siamese, apply_train, ema, init_network, l2_normalize


def target_decay(step, total_steps: int, base: float = 0.996):
  """The cosine EMA schedule τ_k (k = 0-based step of the update)."""
  progress = jnp.asarray(step, jnp.float32) / max(total_steps, 1)
  return 1.0 - (1.0 - base) * (jnp.cos(math.pi * progress) + 1.0) / 2.0


def regression_loss(predictions, targets):
  """2 − 2·cos per row."""
  return 2.0 - 2.0 * jnp.sum(l2_normalize(predictions) * l2_normalize(targets), axis=-1)


@dataclasses.dataclass(frozen=True)
class BYOL:
  backbone: ResNet
  total_steps: int = 1
  base_decay: float = 0.996
  hidden_dim: int = 4096
  out_dim: int = 256

  name = "byol"
  uses_labels = False

  def network(self, with_predictor: bool = True) -> Siamese:
    head = lambda: MLPHead(self.hidden_dim, self.out_dim)
    return Siamese(backbone=self.backbone, head=head(),
                   predictor=head() if with_predictor else None)

  def init(self, key, image_shape):
    params, batch_stats = init_network(self.network(), key, image_shape)
    target = lambda tree: {k: tree[k] for k in ("backbone", "head")}
    extra = {"target_params": target(params), "target_batch_stats": target(batch_stats)}
    return params, batch_stats, extra

  def loss(self, params, batch_stats, extra, views, labels, key, step):
    del labels, key, step
    online, target_net = self.network(), self.network(with_predictor=False)
    target_params = jax.lax.stop_gradient(extra["target_params"])
    target_stats = extra["target_batch_stats"]
    predictions, targets = [], []
    for v in range(2):
      (p, _), batch_stats = apply_train(online, params, batch_stats, views[:, v])
      (z, _), target_stats = apply_train(target_net, target_params, target_stats, views[:, v])
      predictions.append(p)
      targets.append(jax.lax.stop_gradient(z))
    loss = jnp.mean(regression_loss(predictions[0], targets[1]) +
                    regression_loss(predictions[1], targets[0]))
    new_extra = {"target_params": extra["target_params"], "target_batch_stats": target_stats}
    return loss, (batch_stats, new_extra, {})

  def after_update(self, params, extra, step):
    decay = target_decay(step, self.total_steps, self.base_decay)
    online = {k: params[k] for k in ("backbone", "head")}
    return {"target_params": ema(extra["target_params"], online, decay),
            "target_batch_stats": extra["target_batch_stats"]}
