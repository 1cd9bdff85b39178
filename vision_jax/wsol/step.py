"""The WSOL train step `(state, batch, key) -> (state, metrics)` and its optimiser.

SGD with momentum 0.9 and weight decay on convolution and dense kernels (or AdamW); the new
layers (the class head, FSL-Seg's mask head) may learn `head_lr_mult` times faster (10 in the
`full` config, as is usual when fine-tuning an ImageNet network for WSOL); the learning rate
decays along a cosine over the run. The learning rate
lives in the state (`extra["lr"]`, a traced scalar), so one compiled step serves the whole
learning-rate search, run by ecorep.trainer like every family's.

Batches: {"image": uint8 (B, S, S, 3), "label": int32 (B,)} for the classifiers (labels at the
training level, c_k(y)); {"image", "mask": uint8 (B, S, S) box masks} for FSL-Seg.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ecorep import trainer
from vision_jax.wsol import methods
from vision_jax.wsol.model import WsolNet

HEADS = ("head", "mask_head")


@dataclasses.dataclass(frozen=True)
class StepSettings:
  """Everything the compiled step closes over (hashable: compiled steps are cached on it)."""
  method: str
  total_steps: int
  optimizer: str = "sgd"
  momentum: float = 0.9
  weight_decay: float = 1e-4
  head_lr_mult: float = 1.0
  has_patch: int = 8
  has_drop_rate: float = 0.5
  cutmix_beta: float = 1.0
  cutmix_prob: float = 1.0
  adl_drop_rate: float = 0.75
  adl_threshold: float = 0.9


OPTIMIZERS = ("sgd", "adamw")


def make_optimizer(settings: StepSettings, params) -> optax.GradientTransformation:
  """The update direction; the step scales it by −lr per group. sgd: weight decay + momentum
  (the reference's); adamw: Adam's direction + decoupled weight decay (faster in short runs)."""
  decay_mask = jax.tree.map(lambda p: p.ndim > 1, params)
  decay = optax.add_decayed_weights(settings.weight_decay, mask=decay_mask)
  if settings.optimizer == "adamw":
    return optax.chain(optax.scale_by_adam(), decay)
  return optax.chain(decay, optax.trace(decay=settings.momentum))


def lr_at(lr, step, total_steps: int):
  """Cosine decay from `lr` to 0 over the run."""
  return lr * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(step, total_steps) / total_steps))


def new_state(params, batch_stats, tx, lr: float) -> trainer.TrainState:
  return trainer.new_state(params, tx, model_state=batch_stats,
                           extra={"lr": jnp.asarray(lr, jnp.float32)})


def _scale(updates, lr, mult):
  return {k: jax.tree.map(lambda u: -lr * (mult if k in HEADS else 1.0) * u, v)
          for k, v in updates.items()}


def make_train_step(net: WsolNet, settings: StepSettings,
                    tx: optax.GradientTransformation) -> Callable:
  """The un-jitted step (ecorep.trainer.compile_step compiles it)."""
  depth = net.backbone.depth

  def forward(params, batch_stats, x, key):
    ctx = (methods.adl(key, depth, settings.adl_drop_rate, settings.adl_threshold)
           if settings.method == "adl" else contextlib.nullcontext())
    with ctx:
      (out, _), updates = net.apply({"params": params, "batch_stats": batch_stats}, x,
                                    train=True, mutable=["batch_stats"])
    return out, updates["batch_stats"]

  def step(state: trainer.TrainState, batch, key):
    k_aug, k_fwd = jax.random.split(key)
    x = batch["image"].astype(jnp.float32) / 255.0
    perm, lam = None, None
    if settings.method == "has":
      x = methods.hide_patches(k_aug, x, settings.has_patch, settings.has_drop_rate)
    elif settings.method == "cutmix":
      x, perm, lam = methods.cutmix(k_aug, x, settings.cutmix_beta, settings.cutmix_prob)

    def loss_fn(params):
      out, batch_stats = forward(params, state.model_state, x, k_fwd)
      if net.mask_head:
        logits = jax.image.resize(out, (out.shape[0], *x.shape[1:3]), "bilinear")
        loss = optax.sigmoid_binary_cross_entropy(logits, batch["mask"].astype(jnp.float32))
        return loss.mean(), (batch_stats, {})
      ce = optax.softmax_cross_entropy_with_integer_labels
      loss = ce(out, batch["label"])
      if perm is not None:
        loss = lam * loss + (1.0 - lam) * ce(out, batch["label"][perm])
      top1 = jnp.mean(jnp.argmax(out, -1) == batch["label"])
      return loss.mean(), (batch_stats, {"top1": top1})

    (loss, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    direction, opt_state = tx.update(grads, state.opt_state, state.params)
    lr = lr_at(state.extra["lr"], state.step, settings.total_steps)
    params = optax.apply_updates(state.params, _scale(direction, lr, settings.head_lr_mult))
    grad_norm = optax.tree.norm(grads)
    new = state.replace(params=params, model_state=batch_stats, opt_state=opt_state)
    return new, {"loss": loss, "grad_norm": grad_norm, **metrics}

  return step


def learning_rate(lr: float, total_steps: int) -> Callable[[int], float]:
  """The schedule as the loop logs it (host arithmetic: no device op per log line)."""
  return lambda step: lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


