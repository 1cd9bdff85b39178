"""Optimisers of the pretraining objectives: LARS (SimCLR, BYOL), SGD (MoCo), Adam/AdamW.

Learning rate: linear warm-up from 0 to the peak, then cosine decay to 0 at the last step; the
peak is `base_lr·B/256` (linear scaling), `base_lr·√B` (SimCLR's square-root scaling for small
batches) or `base_lr`. LARS follows the SimCLR reference: weight decay is added to the gradient,
the trust ratio η·‖w‖/‖g + λw‖ rescales it, then momentum; BN parameters and biases get neither
weight decay nor adaptation (`exclude_bn_bias`), which leaves them on plain momentum SGD: their
steps scale with the loss, so a reference's learning rate transfers only with the reference's
loss scale (hence SimCLR's NT-Xent in the TF form).
"""
from __future__ import annotations

import math

import jax
import optax

from ecorep.errors import ConfigError

OPTIMIZERS = ("lars", "sgd", "adam", "adamw")
SCALINGS = ("linear", "sqrt", "none")


def decay_mask(params):
  """True for weight matrices/kernels (decayed, adapted); False for BN scales/offsets and biases.

  Flax names every conv/dense weight 'kernel'; BN parameters are 'scale' and 'bias', and dense
  biases 'bias', so the rule is by leaf name.
  """
  def is_kernel(path, _):
    return getattr(path[-1], "key", None) == "kernel"
  return jax.tree_util.tree_map_with_path(is_kernel, params)


def peak_learning_rate(base_lr: float, batch_size: int, scaling: str) -> float:
  if scaling == "linear":
    return base_lr * batch_size / 256
  if scaling == "sqrt":
    return base_lr * math.sqrt(batch_size)
  if scaling == "none":
    return base_lr
  raise ConfigError(f"optim.lr_scaling must be one of {SCALINGS}, got '{scaling}'",
                    field="optim.lr_scaling")


def warmup_cosine(peak: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
  """0 → peak linearly over `warmup_steps`, then peak·(1 + cos(π·t))/2 with t from 0 to 1."""
  warmup_steps = min(max(int(warmup_steps), 0), max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(0.0, peak, warmup_steps, max(total_steps, 1), 0.0)


def warmup_steps(optim_cfg, steps_per_epoch: int) -> int:
  if optim_cfg.get("warmup_steps", -1) >= 0:
    return int(optim_cfg.warmup_steps)
  return int(round(optim_cfg.get("warmup_epochs", 0.0) * steps_per_epoch))


def make_optimizer(optim_cfg, *, batch_size: int, total_steps: int,
                   steps_per_epoch: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(transformation, learning-rate schedule) from an `optim` config section."""
  name = optim_cfg.name
  if name not in OPTIMIZERS:
    raise ConfigError(f"optim.name must be one of {OPTIMIZERS}, got '{name}'", field="optim.name")
  peak = peak_learning_rate(optim_cfg.base_lr, batch_size, optim_cfg.lr_scaling)
  schedule = warmup_cosine(peak, warmup_steps(optim_cfg, steps_per_epoch), total_steps)
  mask = decay_mask if optim_cfg.get("exclude_bn_bias", True) else True
  wd = float(optim_cfg.get("weight_decay", 0.0))
  momentum = float(optim_cfg.get("momentum", 0.9))
  nesterov = bool(optim_cfg.get("nesterov", False))
  if name == "lars":
    tx = optax.lars(schedule, weight_decay=wd, weight_decay_mask=mask,
                    trust_coefficient=float(optim_cfg.get("trust_coefficient", 1e-3)),
                    trust_ratio_mask=mask, momentum=momentum, nesterov=nesterov)
  elif name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(wd, mask=mask),
                     optax.sgd(schedule, momentum=momentum, nesterov=nesterov))
  elif name == "adam":  # L2 penalty in the gradient, as torch.optim.Adam's weight_decay
    tx = optax.chain(optax.add_decayed_weights(wd, mask=mask), optax.adam(schedule))
  else:
    tx = optax.adamw(schedule, weight_decay=wd, mask=mask)
  return tx, schedule
