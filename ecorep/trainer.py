"""The training loop every model family runs: SINR, SSL pretraining, SPML, fine-tuning.

A family builds a `Task` (its state, its step, its batches, its evaluators) after validating
every setting, and hands it to `fit`, which reads top to bottom:

  resume?  -> check the run files, refuse trajectory-changing settings, restore the newest
              intact checkpoint (model, optimiser, data position, RNG)
  loop     -> batch = place(next(batches)); state, metrics = step(state, batch, key)
              every log_every steps: non-finite guard, metrics row, progress bar
              every eval_every steps: evaluators, best state
              every checkpoint_every steps (and the last): checkpoint
  finish   -> wait for checkpoints, close files

Steps are numbered by updates done: checkpoint N, metrics row N and "non-finite loss at step N"
all mean the state after (or the update number) N. The step a family writes is
`(state, batch, key) -> (state, metrics)` with metrics["loss"]; `compile_step` wraps it so that a
step whose loss (or grad_norm) is not finite leaves the state unchanged, and passes it a key
folded from the run's key and the step number.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Callable, Mapping

import flax.serialization
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ecorep import runconfig
from ecorep.checkpoint import Checkpointer
from ecorep.errors import ConfigError, InputError, NonFiniteLossError
from ecorep.mesh import check_batch_size, is_main_process, replicated, shard_batch
from ecorep.metrics import MetricWriter
from ecorep.progress import progress_bar

_log = logging.getLogger(__name__)
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
GUARDED_METRICS = ("loss", "grad_norm")  # a non-finite value of these rejects the update


@flax.struct.dataclass
class TrainState:
  step: jax.Array       # int32 scalar: updates done
  params: Any
  opt_state: Any
  model_state: Any = flax.struct.field(default_factory=dict)  # BN statistics, not trained
  extra: Any = flax.struct.field(default_factory=dict)        # EMA targets, queues, tables, lr


def new_state(params, tx, *, model_state=None, extra=None) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    model_state={} if model_state is None else model_state,
                    extra={} if extra is None else extra)


def compile_step(step_fn: Callable, *, state_shardings: Any = None, mesh=None,
                 donate: bool = True, consts: tuple = ()) -> Callable:
  """jit of the guarded step: `step_fn(state, batch, fold_in(key, state.step), *consts)`, the
  update kept only where every guarded metric is finite, `step` advanced by one either way.

  `consts` are arrays every step reads but never changes (e.g. an environmental raster): they
  are passed as arguments, not baked into the program as constants, and not checkpointed.
  """
  def guarded(state, batch, key, *consts):
    new, metrics = step_fn(state, batch, jax.random.fold_in(key, state.step), *consts)
    ok = jnp.array(True)
    for name in GUARDED_METRICS:
      if name in metrics:
        ok &= jnp.all(jnp.isfinite(metrics[name]))
    new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
    return new.replace(step=state.step + 1), metrics

  out = None
  if state_shardings is not None:
    out = (state_shardings, replicated(mesh))
  jitted = jax.jit(guarded, donate_argnums=0 if donate else (), out_shardings=out)
  if not consts:
    return jitted
  return lambda state, batch, key: jitted(state, batch, key, *consts)


@dataclasses.dataclass
class Task:
  """What a family hands to `fit`."""
  name: str
  state: Any                                  # initial state, placed on the devices
  step: Callable                              # from compile_step
  batches: Callable[[dict | None], Any]       # iterator state (None: start) -> iterator with
                                              # get_state(); closed by fit if it has close()
  total_steps: int
  steps_per_epoch: int
  batch_size: int                             # global examples per step (throughput)
  key: jax.Array
  mesh: Any = None
  place_batch: Callable | None = None         # default: shard along the leading axis
  evaluators: Mapping[str, Callable[[Any], Mapping[str, float]]] = dataclasses.field(
      default_factory=dict)
  eval_every: int = 0                         # 0: evaluators run after the last step only
  best_metric: str | None = None              # "<evaluator>/<metric>": keep the best state
  best_mode: str = "max"
  learning_rate: Callable[[int], float] | None = None   # schedule, logged as "lr"
  throughput_name: str = "examples_per_sec"
  run_files: Callable[[str, bool], None] | None = None  # (workdir, resuming): model.json etc.
  # Settings that may change on resume besides bookkeeping (runconfig.BOOKKEEPING_KEYS): e.g.
  # the run's length, when the schedule does not depend on it.
  changeable_on_resume: tuple[str, ...] = ()


@dataclasses.dataclass
class Options:
  """The loop's own settings (train.log_every, ... of every family's config)."""
  log_every: int = 50
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  allow_config_change: bool = False
  progress: bool = True
  stop_at_step: int | None = None   # tests: stop after this step as if killed there

  @classmethod
  def from_config(cls, train_cfg, **overrides) -> "Options":
    """From a config's train section; keys it lacks keep their defaults (a family whose loop
    cadence is fixed, e.g. per epoch, does not expose them)."""
    opts = cls(**{k: int(train_cfg.get(k, getattr(cls, k)))
                  for k in ("log_every", "checkpoint_every", "keep_checkpoints")}, **overrides)
    opts.validate()
    return opts

  def validate(self) -> None:
    for name in ("log_every", "checkpoint_every", "keep_checkpoints"):
      if getattr(self, name) < 1:
        raise ConfigError(f"train.{name} must be at least 1, got {getattr(self, name)}",
                          field=f"train.{name}")


@dataclasses.dataclass
class TrainResult:
  workdir: str | None
  state: Any
  num_steps: int
  stopped_early: bool
  best_state: Any = None
  best_step: int | None = None
  best_value: float | None = None
  evals: list = dataclasses.field(default_factory=list)   # [{"step": s, "<ev>/<m>": v, ...}]
  losses: list = dataclasses.field(default_factory=list)  # mean loss per log window


def validate_train_config(train_cfg, mesh) -> None:
  """The settings every family shares, checked before anything is read or written."""
  bs = train_cfg.batch_size
  sizes = bs if isinstance(bs, (tuple, list)) else (bs,)
  for b in sizes:
    if not isinstance(b, int) or b <= 0:
      raise ConfigError(f"train.batch_size must be a positive integer, got {b!r}",
                        field="train.batch_size")
    check_batch_size(b, mesh)
  if train_cfg.num_epochs <= 0:
    raise ConfigError(f"train.num_epochs must be positive, got {train_cfg.num_epochs}",
                      field="train.num_epochs")
  max_steps = train_cfg.get("max_steps", -1)
  if max_steps == 0 or max_steps < -1:
    raise ConfigError(f"train.max_steps must be positive or -1 (no limit), got {max_steps}",
                      field="train.max_steps")
  Options.from_config(train_cfg)


def select_evaluators(names, registry: Mapping[str, Any], field: str = "train.evals") -> list:
  """The registry entries named in the config (unknown names are a config error)."""
  names = [names] if isinstance(names, str) else list(names or ())
  unknown = [n for n in names if n not in registry]
  if unknown:
    raise ConfigError(f"unknown evaluator '{unknown[0]}'; known: {', '.join(sorted(registry))}",
                      field=field)
  return [registry[n] for n in names]


def _host_if_replicated(tree):
  # Saving host copies of replicated arrays spares orbax slicing each one per device (seconds
  # per save on 8 devices); sharded arrays (e.g. ROLE's row-sharded table) are saved as they are.
  def one(x):
    if isinstance(x, jax.Array) and x.is_fully_replicated and x.is_fully_addressable:
      return np.asarray(x)
    return x
  return jax.tree.map(one, tree)


def _to_saved(state, key) -> dict:
  return {"state": flax.serialization.to_state_dict(state), "rng": jax.random.key_data(key)}


def _copy(tree):
  return jax.tree.map(jnp.copy, tree)


def _better(value, best, mode) -> bool:
  if value is None or not np.isfinite(value):
    return False
  return best is None or (value > best if mode == "max" else value < best)


def fit(task: Task, workdir: str | None, options: Options,
        cfg: ml_collections.ConfigDict | None = None) -> TrainResult:
  """Trains `task` (resuming from `workdir`'s checkpoints); `workdir` None keeps it in memory."""
  options.validate()
  if task.best_mode not in ("max", "min"):
    raise ValueError(f"best_mode must be 'max' or 'min', got {task.best_mode!r}")
  place = task.place_batch or (lambda b: shard_batch(b, task.mesh))
  state, key, iterator_state, start = task.state, task.key, None, 0
  best_state, best_step, best_value = None, None, None
  ckpt = best_ckpt = writer = None
  main = is_main_process()

  if workdir is not None:
    workdir = os.path.abspath(workdir)
    ckpt_dir = os.path.join(workdir, CHECKPOINT_DIR)
    saved_steps = os.path.isdir(ckpt_dir) and any(n.isdigit() for n in os.listdir(ckpt_dir))
    if task.run_files is not None and main:
      task.run_files(workdir, saved_steps)   # checks an existing run's model, or writes it
    template = _to_saved(state, key)
    if saved_steps:
      ckpt = Checkpointer(ckpt_dir, max_to_keep=options.keep_checkpoints)
      restored, extra, start = ckpt.restore_newest_intact(template, set_aside=main)
      if cfg is not None and main:
        runconfig.claim(workdir, cfg, resume_step=start,
                        allow_changes=options.allow_config_change,
                        ignore=runconfig.BOOKKEEPING_KEYS + task.changeable_on_resume)
      state = flax.serialization.from_state_dict(state, restored["state"])
      key = jax.random.wrap_key_data(np.asarray(restored["rng"]), impl=jax.random.key_impl(key))
      iterator_state = extra.get("data_iterator")
      if iterator_state is not None and options.allow_config_change:
        iterator_state = {**iterator_state, "adapt": True}
      if extra.get("best_step") is not None:
        best_step, best_value = int(extra["best_step"]), float(extra["best_value"])
      _log.info("resuming %s from step %d of %d", workdir, start, task.total_steps)
    else:
      if cfg is not None and main:
        runconfig.claim(workdir, cfg, resume_step=None)
      ckpt = Checkpointer(ckpt_dir, max_to_keep=options.keep_checkpoints)
    if task.best_metric:
      best_ckpt = Checkpointer(os.path.join(workdir, BEST_DIR), max_to_keep=1, async_save=False)
      if best_step is not None and best_ckpt.latest_step() is not None:
        best_state = flax.serialization.from_state_dict(
            state, best_ckpt.restore(template)[0]["state"])
    writer = MetricWriter(workdir, resume_step=start)
  start = int(state.step) if workdir is None else start

  batches = task.batches(iterator_state)
  bar = progress_bar(task.total_steps, initial=start, desc=task.name) if options.progress else None
  result = TrainResult(workdir=workdir, state=state, num_steps=start, stopped_early=False)
  pending, window_start = [], time.perf_counter()

  def run_evaluators(done: int, state) -> None:
    nonlocal best_state, best_step, best_value
    row = {}
    for name, evaluate in task.evaluators.items():
      row.update({f"{name}/{k}": float(v) for k, v in evaluate(state).items()})
    result.evals.append({"step": done, **row})
    if writer is not None:
      writer.write(done, row)
    if task.best_metric:
      if task.best_metric not in row:
        raise ConfigError(f"best metric '{task.best_metric}' is not among the evaluators' "
                          f"metrics: {', '.join(sorted(row))}", field="best_metric")
      if _better(row[task.best_metric], best_value, task.best_mode):
        best_state, best_step, best_value = _copy(state), done, row[task.best_metric]
        if best_ckpt is not None:
          best_ckpt.save(done, _host_if_replicated(_to_saved(state, key)))

  try:
    for step in range(start, task.total_steps):
      state, metrics = task.step(state, place(next(batches)), key)
      pending.append(metrics)
      done = step + 1
      if bar is not None:
        bar.update(1)
      last = done == task.total_steps
      save_now = ckpt is not None and (done % options.checkpoint_every == 0 or last)
      evaluate_now = bool(task.evaluators) and (
          last or (task.eval_every > 0 and done % task.eval_every == 0))
      if done % options.log_every == 0 or save_now or evaluate_now or last or (
          done == options.stop_at_step):
        window = jax.device_get(pending)
        losses = np.asarray([np.mean(m["loss"]) for m in window], np.float64)
        finite = np.array([all(np.all(np.isfinite(m[k])) for k in GUARDED_METRICS if k in m)
                           for m in window])
        if not finite.all():
          bad = done - len(window) + int(np.argmin(finite)) + 1
          if ckpt is not None:
            ckpt.wait()
          saved = ckpt.latest_step() if ckpt is not None else None
          where = f" in {workdir}" if workdir else ""
          raise NonFiniteLossError(
              f"non-finite loss or gradient at step {bad}{where}; stopped. That update was not "
              "applied. " + (f"The last good checkpoint is step {saved}. " if saved is not None
                             else "No checkpoint was saved yet. ")
              + "Lower the learning rate or check the input data.", step=bad,
              last_checkpoint=saved)
        elapsed = time.perf_counter() - window_start
        row = {k: float(np.mean([np.mean(m[k]) for m in window])) for k in window[0]}
        if task.learning_rate is not None:
          row["lr"] = float(task.learning_rate(step))
        row["epoch"] = done / task.steps_per_epoch
        row[task.throughput_name] = len(window) * task.batch_size / max(elapsed, 1e-9)
        result.losses.append(row["loss"])
        if writer is not None:
          writer.write(done, row)
        if bar is not None:
          bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
        pending, window_start = [], time.perf_counter()
      if evaluate_now:
        run_evaluators(done, state)
      if done == options.stop_at_step:  # behave like a kill: nothing beyond the last checkpoint
        result.stopped_early = True
        break
      if save_now:
        ckpt.save(done, _host_if_replicated(_to_saved(state, key)),
                  {"data_iterator": batches.get_state(), "epoch": done / task.steps_per_epoch,
                   "best_step": best_step, "best_value": best_value})
  finally:
    for closer in (bar, ckpt, best_ckpt, writer, batches):
      if closer is not None and hasattr(closer, "close"):
        closer.close()
  result.state, result.num_steps = state, int(state.step)
  result.best_state, result.best_step, result.best_value = best_state, best_step, best_value
  return result


def read_checkpoint(directory: str, step: int | None = None, *,
                    error: type[InputError] = InputError) -> tuple[dict, int]:
  """(train state as saved: nested dicts of arrays, its step) from a run's checkpoint directory,
  for loaders that need part of it (inference parameters); default: the newest intact step.
  Reads without writing anything (a damaged newest step is skipped, not moved). A missing or
  empty directory raises `error` (the caller's package's input error)."""
  if not os.path.isdir(directory):
    raise error("run has no checkpoints", file=directory)
  with Checkpointer(directory, read_only=True) as ckpt:
    if ckpt.latest_step() is None:
      raise error("run has no complete checkpoint yet", file=directory)
    if step is None:
      saved, _, step = ckpt.restore_newest_intact(None)
    else:
      saved, _ = ckpt.restore_as_saved(step)
  return saved["state"], int(step)


def save_checkpoint(directory: str, state: TrainState, key: jax.Array,
                    extra: dict | None = None) -> int:
  """Writes `state` (at its own step) as one checkpoint in the layout `fit` saves and
  `read_checkpoint` reads, for run directories made outside the loop (e.g. imported weights);
  returns the step. Synchronous: the checkpoint is complete when this returns."""
  step = int(state.step)
  with Checkpointer(directory, max_to_keep=1, async_save=False) as ckpt:
    ckpt.save(step, _host_if_replicated(_to_saved(state, key)), extra or {})
  return step
