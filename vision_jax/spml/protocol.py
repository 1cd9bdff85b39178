"""Training runs: one (learning rate, batch size) run of the linear or fine-tune protocol, each
run by the shared loop (ecorep.trainer), and the search over the grid.

Both keep the epoch with the best validation MAP (fully labelled validation split), as the
reference, and return that epoch's state. The linear protocol keeps the features on the devices
and scans the train step over each epoch: one loop step is one epoch (one dispatch), runs stay in
memory. The fine-tune protocol feeds image batches from the host, one loop step per batch, and
each run has its own directory (metrics.jsonl, a checkpoint per epoch, best/), so a killed run
resumes at its last finished epoch (epochs depend only on (seed, epoch), so the resumed run sees
the batches it would have seen).
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

from ecorep import io, trainer
from ecorep.checkpoint import Checkpointer
from ecorep.errors import NonFiniteLossError
from ecorep.mesh import batch_sharding, check_batch_size, is_main_process, replicate, replicated
from ecorep.metrics import read_metrics
from ecorep.pipeline import batch_iterator
from vision_jax.spml import step as step_lib
from vision_jax.spml.data import Split
from vision_jax.spml.metrics import mean_average_precision

_log = logging.getLogger("vision_jax.spml")
BEST_METRIC = "val/map"

__all__ = ["NonFiniteLossError", "RunResult", "linear_run", "finetune_run", "search"]


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


def val_map_evaluator(predict: Callable, val: Split, get_x: Callable) -> Callable:
  """The loop's evaluator hook: validation MAP of the state's classifier."""
  def evaluate(state):
    scores = predict(state.params, state.model_state, get_x, len(val))
    return {"map": mean_average_precision(val.labels, scores).map}
  return evaluate


def device_arrays(split: Split, mesh) -> dict:
  """A training split's features and labels, replicated for the linear epoch step."""
  obs = split.observed if split.observed is not None else split.labels.astype(np.int8)
  return replicate({"observed": np.asarray(obs, np.int8),
                    "true": np.asarray(split.labels, np.uint8),
                    "x": np.asarray(split.x, np.float32)}, mesh)


def make_linear_epoch(step_fn: Callable, mesh, shardings, arrays: dict) -> Callable:
  """The loop step of the linear protocol: `step_fn` scanned over one epoch, batches gathered on
  the device from replicated features and labels; batch = {"perm": (steps, B) rows}."""
  rows = batch_sharding(mesh)

  def epoch_fn(state, batch, key, arrays):
    def body(state, idx):
      valid = idx >= 0
      safe = jnp.maximum(idx, 0)
      b = {"x": arrays["x"][safe], "observed": arrays["observed"][safe],
           "true": arrays["true"][safe], "idx": idx, "mask": valid.astype(jnp.float32)}
      return step_fn(state, jax.lax.with_sharding_constraint(b, rows), key)
    state, metrics = jax.lax.scan(body, state, batch["perm"])
    return state, {"loss": metrics["loss"]}

  return trainer.compile_step(epoch_fn, state_shardings=shardings, mesh=mesh, consts=(arrays,))


class _Epochs:
  """Iterator of the linear protocol: item e is {"perm": epoch e's (steps, B) rows}."""

  def __init__(self, sampler, state: dict | None):
    self.sampler, self.epoch = sampler, int((state or {}).get("epoch", 0))

  def __next__(self) -> dict:
    perm = step_lib.epoch_batches(self.sampler, self.epoch)
    self.epoch += 1
    return {"perm": perm}

  def get_state(self) -> dict:
    return {"epoch": self.epoch}


@dataclasses.dataclass(frozen=True)
class _SplitReader:
  """`read(rows, step)` for the fine-tune loop: inputs and labels of a split's rows (−1: pad)."""
  split: Split
  observed: np.ndarray

  def __call__(self, rows: np.ndarray, step: int) -> dict:
    del step
    valid = rows >= 0
    safe = np.where(valid, rows, rows[valid][0] if valid.any() else 0)
    return {"x": self.split.x.batch(safe), "observed": self.observed[safe],
            "true": self.split.labels[safe], "idx": rows.astype(np.int32),
            "mask": valid.astype(np.float32)}


def _result(lr, batch_size, fit: trainer.TrainResult, steps_per_epoch: int,
            workdir: str | None) -> RunResult:
  """RunResult of a finished loop run; with a run directory the histories come from its
  metrics.jsonl (so a resumed run reports the epochs before the resume too)."""
  if workdir is not None:
    rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    val = [r[BEST_METRIC] for r in rows if BEST_METRIC in r]
    losses = [r["loss"] for r in rows if "loss" in r]
  else:
    val = [e[BEST_METRIC] for e in fit.evals]
    losses = list(fit.losses)
  best_epoch = (fit.best_step // steps_per_epoch) - 1 if fit.best_step is not None else -1
  return RunResult(lr, batch_size, best_epoch, float(fit.best_value if fit.best_value is not None
                                                     else -np.inf),
                   [float(v) for v in val], [float(v) for v in losses], fit.best_state)


def linear_run(state, epoch_step: Callable, predict: Callable, num_train: int, val: Split, *,
               epochs: int, batch_size: int, lr: float, seed: int, key: jax.Array,
               mesh) -> RunResult:
  """Linear classifier on fixed features, `epochs` epochs, best epoch by validation MAP."""
  val_x = np.asarray(val.x, np.float32)
  sampler = step_lib.epoch_sampler(num_train, batch_size, seed)
  task = trainer.Task(
      name=f"linear lr {lr:g} bs {batch_size}", state=state, step=epoch_step,
      batches=lambda s: _Epochs(sampler, s), total_steps=epochs, steps_per_epoch=1,
      batch_size=sampler.epoch_size, key=key, mesh=mesh,
      place_batch=lambda b: replicate(b, mesh),
      evaluators={"val": val_map_evaluator(predict, val, lambda i: val_x[i])}, eval_every=1,
      best_metric=BEST_METRIC)
  fit = trainer.fit(task, None, trainer.Options(log_every=1, progress=False))
  return _result(lr, batch_size, fit, 1, None)


def finetune_run(state, step: Callable, predict: Callable, train: Split, val: Split, *,
                 epochs: int, batch_size: int, lr: float, seed: int, mesh, key: jax.Array,
                 workdir: str | None = None) -> RunResult:
  """End-to-end training of backbone + head from `state` (`step` from compile_step, donating
  the state), best epoch by validation MAP; a checkpoint per epoch in `workdir`."""
  observed = train.observed if train.observed is not None else train.labels.astype(np.int8)
  sampler = step_lib.epoch_sampler(len(train), batch_size, seed)
  spe = sampler.steps_per_epoch
  read = _SplitReader(train, observed)
  task = trainer.Task(
      name=f"finetune lr {lr:g} bs {batch_size}", state=state, step=step,
      batches=lambda s: batch_iterator(sampler, read, state=s), total_steps=epochs * spe,
      steps_per_epoch=spe, batch_size=batch_size, key=key, mesh=mesh,
      evaluators={"val": val_map_evaluator(predict, val, val.x.batch)}, eval_every=spe,
      best_metric=BEST_METRIC, throughput_name="images_per_sec")
  fit = trainer.fit(task, workdir, trainer.Options(log_every=spe, checkpoint_every=spe,
                                                   keep_checkpoints=1))
  return _result(lr, batch_size, fit, spe, workdir)


def search(mesh, run: Callable, lrs, batch_sizes, workdir: str | None, template=None):
  """Runs `run(lr, batch_size, run_dir)` over the grid; returns (best RunResult, summaries).

  With a workdir, finished runs are recorded in search.json and skipped by a rerun, and the best
  run's state is kept in best/."""
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


def precise_batch_stats(model, params, batch_stats, get_batch: Callable, num: int,
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
