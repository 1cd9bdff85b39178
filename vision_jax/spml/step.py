"""The SPML train step `train_step(state, batch, key) -> (state, metrics)` and prediction.

A batch is `{"x", "observed", "true", "idx", "mask"}`, sharded along its leading axis: inputs,
observed {−1, 0, 1} and full {0, 1} labels, the rows' indices in the training split (ROLE's
estimator rows; −1 for padding) and the padding mask. Parameters are replicated; ROLE's
"sparse"/"lowrank" table is row-sharded and touched only at the batch's rows (vision_jax.spml.role).

One Adam (torch defaults) with the estimator's parameters at `lr_mult`× the learning rate, as the
reference. The state is ecorep.trainer's TrainState: `model_state` holds the backbone's BN
statistics, `extra` the learning rate (a traced scalar, so one compiled step serves the whole
learning-rate search) and ROLE's row-sharded table when there is one. The shared loop guards
against non-finite losses and counts steps.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from ecorep import trainer
from ecorep.mesh import batch_sharding
from ecorep.sampler import EpochSampler
from vision_jax.spml import role
from vision_jax.spml.models import Classifier


TrainState = trainer.TrainState  # params {"head", ["backbone"], ["est"]}; extra {"lr", ["table"]}


def make_optimizer(params) -> optax.GradientTransformation:
  """Adam's direction (torch defaults); `_apply_lr` scales it by −lr (−lr·lr_mult for "est"),
  which together is `optax.adam(lr)` per group."""
  labels = {k: ("est" if k == "est" else "model") for k in params}
  return optax.multi_transform({"model": optax.scale_by_adam(), "est": optax.scale_by_adam()},
                               labels)


def _apply_lr(updates, lr, lr_mult):
  return {k: jax.tree.map(lambda u: -(lr * lr_mult if k == "est" else lr) * u, v)
          for k, v in updates.items()}


def init_estimator(key: jax.Array, observed: np.ndarray, mesh, *, mode: str | None,
                   rank: int) -> tuple[dict, role.Table | None]:
  """(estimator parameters for the main optimiser, row-sharded table or None)."""
  if mode is None:
    return {}, None
  k_table, k_v = jax.random.split(key)
  if mode == "dense":
    return {"table": role.init_dense_logits(k_table, observed)}, None
  table = role.init_table(k_table, observed, mesh, mode=mode, rank=rank)
  if mode == "lowrank":
    return {"v": role.init_lowrank_v(k_v, observed.shape[1], rank)}, table
  return {}, table


def new_state(params, batch_stats, tx, table, lr: float) -> TrainState:
  extra = {"lr": jnp.asarray(lr, jnp.float32)}
  if table is not None:
    extra["table"] = table
  return trainer.new_state(params, tx, model_state=batch_stats, extra=extra)


def table_of(state: TrainState) -> role.Table | None:
  return state.extra.get("table")


def state_shardings(state: TrainState, mesh):
  """Replicated everywhere except ROLE's row-sharded table. Placing the state with these and
  compiling the step with them as output shardings keeps one compiled step for every call."""
  rep = NamedSharding(mesh, P())
  out = jax.tree.map(lambda _: rep, state)
  if table_of(state) is not None:
    out = out.replace(extra={**out.extra, "table": role.Table(
        value=role.row_sharding(mesh), mu=role.row_sharding(mesh), nu=role.row_sharding(mesh),
        count=role.row_sharding(mesh, 1))})
  return out


def place_state(state: TrainState, mesh) -> TrainState:
  return jax.device_put(state, state_shardings(state, mesh))


def flip_images(key: jax.Array, x: jax.Array) -> jax.Array:
  """Random horizontal flip per example (p = 0.5)."""
  flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
  return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)


def make_train_step(model: Classifier, loss_fn: Callable, tx: optax.GradientTransformation, *,
                    mode: str | None, lr_mult: float, mesh,
                    flip: bool = False) -> Callable:
  """The un-jitted step `(state, batch, key) -> (state, metrics)`: ecorep.trainer.compile_step
  compiles it for the fine-tune loop, the linear protocol scans it over an epoch."""
  rows_sharding = batch_sharding(mesh)

  def step(state: TrainState, batch, key):
    x = batch["x"]
    lr, table = state.extra["lr"], table_of(state)
    if flip:  # the only randomness of a step (keys cost compile time on XLA:CPU)
      x = jax.lax.with_sharding_constraint(flip_images(key, x), rows_sharding)
    idx, mask = batch["idx"], batch["mask"]
    rows = None
    if mode in ("sparse", "lowrank"):
      rows = role.gather_rows(table.value, idx, mesh)

    def objective(params, rows):
      logits, batch_stats = model.logits(params, state.model_state, x, train=True)
      est_logits = None
      if mode == "dense":
        est_logits = params["est"]["table"][jnp.maximum(idx, 0)]
      elif mode == "sparse":
        est_logits = rows
      elif mode == "lowrank":
        est_logits = role.lowrank_logits(rows, params["est"]["v"], batch["observed"])
      loss, aux = loss_fn(logits, batch["observed"], true=batch["true"], mask=mask,
                          est_logits=est_logits)
      return loss, (aux, batch_stats)

    (loss, (aux, batch_stats)), (grads, row_grads) = jax.value_and_grad(
        objective, argnums=(0, 1), has_aux=True)(state.params, rows)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, _apply_lr(updates, lr, lr_mult))
    extra = state.extra
    if mode in ("sparse", "lowrank"):
      extra = {**extra, "table": role.sparse_adam(table, idx, row_grads, mask > 0, lr * lr_mult,
                                                  mesh)}
    return state.replace(params=params, model_state=batch_stats, opt_state=opt_state,
                         extra=extra), {"loss": loss, **aux}

  return step


def _batched(forward: Callable, mesh, batch_size: int) -> Callable:
  """`run(params, batch_stats, get_batch, num) -> (num, ·) numpy` over batches of examples;
  every example is evaluated: a short batch is padded to the full batch size (one compiled
  shape) and the padding dropped (the reference drops the last partial batch even at test
  time). `batch_size` must be a multiple of the devices."""
  sharding = batch_sharding(mesh)
  forward = jax.jit(forward)

  def run(params, batch_stats, get_batch: Callable[[np.ndarray], np.ndarray], num: int):
    out = []
    for start in range(0, num, batch_size):
      idx = np.arange(start, min(start + batch_size, num))
      x = get_batch(idx)
      pad = batch_size - len(idx)
      if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
      y = forward(params, batch_stats, jax.device_put(x, sharding))
      out.append(np.asarray(jax.device_get(y))[:len(idx)])
    return np.concatenate(out).astype(np.float32)

  return run


def make_predict(model: Classifier, mesh, batch_size: int) -> Callable:
  """Logits of the classifier in evaluation mode."""
  return _batched(lambda p, s, x: model.logits(p, s, x, train=False)[0], mesh, batch_size)


def make_features(model: Classifier, mesh, batch_size: int) -> Callable:
  """Pooled features of the backbone in evaluation mode (the linear phase's fixed inputs)."""
  return _batched(lambda p, s, x: model.features(p, s, x, train=False)[0], mesh, batch_size)


def epoch_sampler(num: int, batch_size: int, seed: int) -> EpochSampler:
  """Shuffled epochs whose last batch is padded with −1 (masked) rather than dropped, so every
  example is trained on every epoch."""
  return EpochSampler(num, batch_size, seed, remainder="pad")


def epoch_batches(sampler: EpochSampler, epoch: int) -> np.ndarray:
  """(steps, batch) int32 row indices of one epoch (−1: padding)."""
  first = epoch * sampler.steps_per_epoch
  return np.stack([sampler.global_rows(first + b)
                   for b in range(sampler.steps_per_epoch)]).astype(np.int32)
