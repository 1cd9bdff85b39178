"""Training runs: one (learning rate, batch size) run of the linear or fine-tune protocol.

Both keep the epoch with the best validation MAP (fully labelled validation split), as the
reference, and return that epoch's state. The linear protocol keeps the features on the devices
and scans the train step over each epoch (one dispatch per epoch); the fine-tune protocol feeds
image batches from the host, one jitted step each, and checkpoints every epoch so a killed run
resumes at its last finished epoch (epoch permutations depend only on (seed, epoch), so the
resumed run sees the batches it would have seen).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ecorep import io
from ecorep.checkpoint import Checkpointer
from ecorep.mesh import (batch_sharding, check_batch_size, is_main_process, replicate,
                         replicated, shard_batch)
from vision_jax.spml import step as step_lib
from vision_jax.spml.data import Split
from vision_jax.spml.metrics import mean_average_precision
from vision_jax.spml.models import Classifier

_log = logging.getLogger("vision_jax.spml")


class NonFiniteLossError(RuntimeError):
  """A run whose loss became NaN/inf (the state was left at its last finite step)."""


@dataclasses.dataclass
class RunResult:
  lr: float
  batch_size: int
  best_epoch: int
  val_map: float
  val_history: list[float]
  loss_history: list[float]
  best: Any = None   # TrainState of the best epoch (not serialised)

  def summary(self) -> dict:
    return {"lr": self.lr, "batch_size": self.batch_size, "best_epoch": self.best_epoch,
            "val_map": self.val_map, "val_history": self.val_history,
            "loss_history": self.loss_history}


def _copy(tree):
  return jax.tree.map(jnp.copy, tree)


def _labels_on_device(split: Split, mesh):
  obs = split.observed if split.observed is not None else split.labels.astype(np.int8)
  return replicate({"observed": np.asarray(obs, np.int8),
                    "true": np.asarray(split.labels, np.uint8)}, mesh)


def make_linear_epoch(train_step: Callable, mesh, shardings) -> Callable:
  """`run_epoch(state, arrays, perm (steps, B), key) -> (state, losses)`: the train step scanned
  over one epoch, batches gathered on the device from replicated features and labels."""
  rows = batch_sharding(mesh)

  def epoch_fn(state, arrays, perm, key):
    def body(state, idx):
      valid = idx >= 0
      safe = jnp.maximum(idx, 0)
      batch = {"x": arrays["x"][safe], "observed": arrays["observed"][safe],
               "true": arrays["true"][safe], "idx": idx, "mask": valid.astype(jnp.float32)}
      batch = jax.lax.with_sharding_constraint(batch, rows)
      return train_step(state, batch, key)
    state, metrics = jax.lax.scan(body, state, perm)
    return state, metrics["loss"]

  return jax.jit(epoch_fn, donate_argnums=0, out_shardings=(shardings, replicated(mesh)))


def device_arrays(split: Split, mesh) -> dict:
  """A training split's features and labels, replicated for `make_linear_epoch`."""
  arrays = _labels_on_device(split, mesh)
  arrays["x"] = replicate(np.asarray(split.x, np.float32), mesh)
  return arrays


def linear_run(state: step_lib.TrainState, run_epoch: Callable, predict: Callable,
               arrays: dict, num_train: int, val: Split, *, epochs: int, batch_size: int,
               lr: float, seed: int, key: jax.Array) -> RunResult:
  """Linear classifier on fixed features, `epochs` epochs, best epoch by validation MAP."""
  val_x = np.asarray(val.x, np.float32)
  best, best_map, best_epoch, val_hist, loss_hist = None, -np.inf, -1, [], []
  for epoch in range(epochs):
    perm = step_lib.epoch_batches(num_train, batch_size, seed, epoch)
    state, losses = run_epoch(state, arrays, perm, key)
    losses = np.asarray(jax.device_get(losses), np.float64)
    if not np.isfinite(losses).all():
      raise NonFiniteLossError(f"non-finite loss in epoch {epoch} (lr {lr}, batch {batch_size})")
    scores = predict(state.params, state.batch_stats, lambda i: val_x[i], len(val_x))
    val_map = mean_average_precision(val.labels, scores).map
    val_hist.append(val_map)
    loss_hist.append(float(losses.mean()))
    if val_map > best_map:
      best, best_map, best_epoch = _copy(state), val_map, epoch
  return RunResult(lr, batch_size, best_epoch, best_map, val_hist, loss_hist, best)


def finetune_run(state: step_lib.TrainState, step_fn: Callable, predict: Callable,
                 train: Split, val: Split, *, epochs: int, batch_size: int, lr: float,
                 seed: int, mesh, key: jax.Array, workdir: str | None = None) -> RunResult:
  """End-to-end training of backbone + head from `state` (`step_fn` jitted, donating the
  state), best epoch by validation MAP."""
  observed = train.observed if train.observed is not None else train.labels.astype(np.int8)
  best, best_map, best_epoch, val_hist, loss_hist, start = _copy(state), -np.inf, -1, [], [], 0
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=1) if workdir else None
  if ckpt is not None and ckpt.latest_step() is not None:
    (state, best), extra = ckpt.restore((state, best))
    start, best_epoch, best_map = extra["epoch"] + 1, extra["best_epoch"], extra["best_val"]
    val_hist, loss_hist = extra["val_history"], extra["loss_history"]
    _log.info("resuming %s after epoch %d", workdir, extra["epoch"])
  try:
    for epoch in range(start, epochs):
      losses = []
      for idx in step_lib.epoch_batches(len(train), batch_size, seed, epoch):
        valid = idx >= 0
        safe = np.where(valid, idx, idx[0])
        batch = {"x": train.x.batch(safe), "observed": observed[safe],
                 "true": train.labels[safe], "idx": idx, "mask": valid.astype(np.float32)}
        state, metrics = step_fn(state, shard_batch(batch, mesh), key)
        losses.append(metrics["loss"])
      losses = np.asarray(jax.device_get(losses), np.float64)
      if not np.isfinite(losses).all():
        raise NonFiniteLossError(f"non-finite loss in epoch {epoch} (lr {lr}, batch "
                                 f"{batch_size})")
      scores = predict(state.params, state.batch_stats, val.x.batch, len(val))
      val_map = mean_average_precision(val.labels, scores).map
      val_hist.append(val_map)
      loss_hist.append(float(losses.mean()))
      if val_map > best_map:
        best, best_map, best_epoch = _copy(state), val_map, epoch
      _log.info("epoch %d: loss %.4f, val MAP %.4f", epoch, loss_hist[-1], val_map)
      if ckpt is not None:
        ckpt.save(epoch + 1, (state, best), {
            "epoch": epoch, "best_epoch": best_epoch, "best_val": float(best_map),
            "val_history": val_hist, "loss_history": loss_hist})
  finally:
    if ckpt is not None:
      ckpt.close()
  return RunResult(lr, batch_size, best_epoch, float(best_map), val_hist, loss_hist, best)


def search(mesh, run: Callable, lrs, batch_sizes, workdir: str | None, template=None):
  """Runs `run(lr, batch_size, run_dir)` over the grid; returns (best RunResult, summaries)."""
  done, best, ckpt = {}, None, None
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "search.json")
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        done = {(r["lr"], r["batch_size"]): r for r in json.load(f)}
    ckpt = Checkpointer(os.path.join(workdir, "best"), max_to_keep=1, async_save=False)
    if done and ckpt.latest_step() is not None and template is not None:
      top = max(done.values(), key=lambda r: r["val_map"])
      state, _ = ckpt.restore(template(top["lr"]))
      best = RunResult(**{k: top[k] for k in (
          "lr", "batch_size", "best_epoch", "val_map", "val_history", "loss_history")},
          best=state)
  for bs in batch_sizes:
    check_batch_size(bs, mesh)
    for lr in lrs:
      if (lr, bs) in done:
        continue
      t0 = time.perf_counter()
      result = run(lr, bs, os.path.join(workdir, f"run_lr{lr:g}_bs{bs}") if workdir else None)
      summary = {**result.summary(), "seconds": round(time.perf_counter() - t0, 2)}
      done[(lr, bs)] = summary
      _log.info("lr %g, batch %d: val MAP %.4f (epoch %d)", lr, bs, result.val_map,
                result.best_epoch)
      if best is None or result.val_map > best.val_map:
        best = result
        if ckpt is not None:
          ckpt.save(len(done), result.best)
      if workdir and is_main_process():
        io.write_json(os.path.join(workdir, "search.json"), list(done.values()))
  if ckpt is not None:
    ckpt.close()
  return best, list(done.values())


def precise_batch_stats(model: Classifier, params, batch_stats, get_batch: Callable, num: int,
                        batch_size: int, mesh, momentum: float = 0.9):
  """BN statistics averaged exactly over the images (no labels): each train-mode pass returns
  momentum·old + (1 − momentum)·batch, from which the batch statistics are recovered and
  averaged. A fresh backbone's running statistics (0 and 1) would otherwise make the frozen
  features of the linear phase unlike the batch-normalised ones fine-tuning sees."""
  sharding = batch_sharding(mesh)
  usable = num - num % mesh.devices.size  # whole device groups only; batch_size is a multiple

  @jax.jit
  def batch_moments(params, batch_stats, x):
    _, new = model.features(params, batch_stats, x, train=True)
    return jax.tree.map(lambda n, o: (n - momentum * o) / (1.0 - momentum), new, batch_stats)

  total, count = None, 0
  for start in range(0, usable, batch_size):
    idx = np.arange(start, min(start + batch_size, usable))
    moments = batch_moments(params, batch_stats, jax.device_put(get_batch(idx), sharding))
    total = moments if total is None else jax.tree.map(jnp.add, total, moments)
    count += 1
  return jax.tree.map(lambda t: t / count, total) if count else batch_stats
