"""Pretraining: one jitted `train_step(state, batch)` for every objective, data-parallel over
every device.

  python -m vision_jax.pretrain --config=configs/simclr.py:<variant> --workdir=runs/x \
      [--config.train.batch_size=4096 ...] [--distributed]

Rerunning the same command on an existing --workdir resumes from its newest checkpoint: the
checkpoint holds the model, BN statistics, optimiser, EMA targets/queues, the RNG key and the
data iterator's position, so a resumed run takes exactly the steps an uninterrupted one would.
The host pipeline (vision_jax.input_pipeline) decodes and crops; flips, colour, grayscale and
blur run inside the step (vision_jax.augment), from a key folded from the state's RNG and step.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
import time
from typing import Any, Callable

import flax.serialization
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ecorep import io
from ecorep.checkpoint import Checkpointer
from ecorep.cli import DISTRIBUTED_FLAGS, initialize_from_flags, run_cli
from ecorep.config import config_to_json, parse_cli
from ecorep.errors import ConfigError
from ecorep.mesh import (batch_sharding, check_batch_size, data_mesh, is_main_process, replicated,
                         shard_batch)
from ecorep.metrics import MetricWriter
from ecorep.progress import progress_bar
from vision_jax import augment, encoder, ssl
from vision_jax.ssl import base as ssl_base
from vision_jax.optim import make_optimizer

_log = logging.getLogger("vision_jax.pretrain")


class NonFiniteLossError(RuntimeError):
  """A NaN/inf loss or gradient: the run stopped; the last good checkpoint is kept."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  extra: Any            # EMA target / key network, MoCo queue: state not trained by gradients
  opt_state: Any
  rng: jax.Array        # raw uint32 key data (typed keys do not checkpoint)


@dataclasses.dataclass
class PretrainResult:
  workdir: str
  state: TrainState
  objective: Any
  num_steps: int
  stopped_early: bool


def _init(objective, tx, image_size: int, init_key, run_key) -> TrainState:
  params, batch_stats, extra = objective.init(init_key, (image_size, image_size, 3))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    extra=extra, opt_state=tx.init(params), rng=jax.random.key_data(run_key))


def make_train_step(objective, tx: optax.GradientTransformation, policy: augment.Policy,
                    schedule: optax.Schedule, mesh) -> Callable:
  """Returns `train_step(state, batch) -> (state, metrics)`, compiled once.

  `batch` = {'views': uint8 (B, V, S, S, 3), 'label': int32 (B,)}, sharded along B. A step
  whose loss or gradient is not finite leaves params, BN statistics, targets and optimiser
  state unchanged (the step counter still advances); the host loop then stops the run.
  """
  rows = batch_sharding(mesh)

  def step_fn(state: TrainState, batch):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    k_aug, k_obj = jax.random.split(key)
    views = jax.lax.with_sharding_constraint(
        augment.augment_views(k_aug, batch["views"], policy), rows)

    def loss_fn(params):
      return objective.loss(params, state.batch_stats, state.extra, views, batch["label"],
                            k_obj, state.step)

    (loss, (batch_stats, extra, metrics)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    extra = objective.after_update(params, extra, state.step)
    grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = TrainState(step=state.step + 1, params=keep(params, state.params),
                           batch_stats=keep(batch_stats, state.batch_stats),
                           extra=keep(extra, state.extra),
                           opt_state=keep(opt_state, state.opt_state), rng=state.rng)
    metrics = {"loss": jnp.where(jnp.isfinite(grad_norm), loss, jnp.nan),
               "grad_norm": grad_norm, "lr": schedule(state.step), **metrics}
    return new_state, metrics

  return jax.jit(step_fn, donate_argnums=0)


@dataclasses.dataclass
class RunSetup:
  """Everything a run of one config computes with: built once per process and config."""
  objective: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  policy: augment.Policy
  init: Callable[[int], TrainState]     # seed -> replicated initial state
  train_step: Callable                  # (state, batch) -> (state, metrics); donates state
  total_steps: int
  steps_per_epoch: int


# Setups of recent runs in this process, keyed by everything their compiled functions close over:
# runs of one config in one process (resume, several seeds, tests) compile once.
_SETUPS: dict[str, RunSetup] = {}
_SETUPS_MAX = 4


def setup_run(cfg: ml_collections.ConfigDict, *, num_examples: int, num_classes: int | None,
              mesh) -> RunSetup:
  """Builds (or reuses) the objective, optimiser, augmentation policy and compiled functions."""
  steps_per_epoch = max(num_examples // cfg.train.batch_size, 1)
  total_steps = (cfg.train.num_steps if cfg.train.num_steps > 0
                 else int(cfg.train.num_epochs * steps_per_epoch))
  key = json.dumps({k: cfg[k].to_dict() for k in ("model", "objective", "augment", "optim")}
                   | {"method": cfg.method, "batch": cfg.train.batch_size,
                      "image_size": cfg.data.image_size, "total_steps": total_steps,
                      "steps_per_epoch": steps_per_epoch, "num_classes": num_classes,
                      "devices": [d.id for d in mesh.devices.flat]}, sort_keys=True, default=str)
  if key in _SETUPS:
    return _SETUPS[key]
  objective = ssl.build_objective(cfg, total_steps=total_steps,
                                  global_batch_size=cfg.train.batch_size, num_classes=num_classes)
  tx, schedule = make_optimizer(cfg.optim, batch_size=cfg.train.batch_size,
                                total_steps=total_steps, steps_per_epoch=steps_per_epoch)
  policy = augment.Policy.from_config(cfg.augment)
  init = jax.jit(functools.partial(_init, objective, tx, cfg.data.image_size),
                 out_shardings=replicated(mesh))
  setup = RunSetup(objective, tx, schedule, policy,
                   lambda seed: init(ssl_base.init_key(seed), jax.random.key(seed)),
                   make_train_step(objective, tx, policy, schedule, mesh), total_steps,
                   steps_per_epoch)
  if len(_SETUPS) >= _SETUPS_MAX:
    del _SETUPS[next(iter(_SETUPS))]
  _SETUPS[key] = setup
  return setup


def build_source(data_cfg):
  """The image source a data config names: a bundled dataset or an image folder."""
  from vision_jax import datasets, sources
  if data_cfg.dataset == "folder":
    if not data_cfg.root:
      raise ConfigError("data.dataset='folder' needs data.root", field="data.root")
    return sources.ImageFolderSource(data_cfg.root)
  if data_cfg.dataset not in datasets.DATASETS:
    raise ConfigError(f"unknown data.dataset '{data_cfg.dataset}'; known: folder, "
                      + ", ".join(sorted(datasets.DATASETS)), field="data.dataset")
  images, labels = datasets.DATASETS[data_cfg.dataset].loader(data_cfg.split)
  return sources.ArraySource(images, labels)


def default_iterator(source, cfg, state: dict | None):
  from vision_jax.input_pipeline import pretrain_iterator
  crop = functools.partial(augment.host_random_resized_crop,
                           scale=tuple(float(s) for s in cfg.data.crop_scale))
  return pretrain_iterator(source, global_batch_size=cfg.train.batch_size,
                           image_size=cfg.data.image_size, seed=cfg.seed, num_views=2,
                           state=state, worker_count=cfg.data.worker_count, crop_fn=crop)


def _num_classes(source) -> int | None:
  n = getattr(source, "num_classes", None)
  return int(n() if callable(n) else n) if n is not None else None


def _save(ckpt: Checkpointer, state: TrainState, iterator, epoch: float) -> None:
  # The state is replicated: saving host copies avoids orbax slicing every array once per
  # device (seconds per save on 8 devices); restore() puts them back with the template's
  # shardings.
  ckpt.save(int(state.step), jax.device_get(flax.serialization.to_state_dict(state)),
            {"data_iterator": iterator.get_state(), "epoch": epoch})


def train(cfg: ml_collections.ConfigDict, workdir: str, *, source=None, mesh=None,
          make_iterator: Callable | None = None,
          stop_at_step: int | None = None) -> PretrainResult:
  """Pretrains (or resumes) the run in `workdir`.

  `source` overrides cfg.data (any random-access source with len() and items
  {'image', 'label'}); `make_iterator(source, cfg, iterator_state)` overrides the grain
  pipeline. `stop_at_step` stops after that step as if the process were killed there: no
  checkpoint is written for it.
  """
  ssl.objective_class(cfg.method)  # an unknown objective fails before any data is read
  workdir = os.path.abspath(workdir)
  mesh = data_mesh() if mesh is None else mesh
  check_batch_size(cfg.train.batch_size, mesh)
  source = build_source(cfg.data) if source is None else source
  make_iterator = make_iterator or default_iterator
  setup = setup_run(cfg, num_examples=len(source), num_classes=_num_classes(source), mesh=mesh)
  total_steps, steps_per_epoch = setup.total_steps, setup.steps_per_epoch
  backbone = setup.objective.backbone
  if is_main_process():
    os.makedirs(workdir, exist_ok=True)
    encoder.write_or_check_model_spec(workdir, encoder.model_spec(
        depth=backbone.depth, width_multiplier=backbone.width_multiplier,
        small_stem=backbone.small_stem, base_width=backbone.base_width,
        image_size=cfg.data.image_size, method=cfg.method))
    io.write_text(os.path.join(workdir, encoder.CONFIG_FILE), config_to_json(cfg))

  state = setup.init(cfg.seed)
  ckpt = Checkpointer(os.path.join(workdir, encoder.CHECKPOINT_DIR),
                      max_to_keep=cfg.train.keep_checkpoints)
  iterator_state = None
  if ckpt.latest_step() is not None:
    restored, extra = ckpt.restore(flax.serialization.to_state_dict(state))
    state = flax.serialization.from_state_dict(state, restored)
    iterator_state = extra.get("data_iterator")
    _log.info("resuming %s from step %d", workdir, int(state.step))
  start = int(state.step)
  iterator = make_iterator(source, cfg, iterator_state)
  _log.info("%s: %d images, %d steps of %d (%d per epoch) on %d device(s)", cfg.method,
            len(source), total_steps, cfg.train.batch_size, steps_per_epoch, mesh.devices.size)

  writer = MetricWriter(workdir)
  bar = progress_bar(total_steps, initial=start, desc=cfg.method)
  pending, window_start, stopped_early = [], time.perf_counter(), False
  try:
    for step in range(start, total_steps):
      batch = shard_batch(next(iterator), mesh)
      state, metrics = setup.train_step(state, batch)
      pending.append(metrics)
      done = step + 1
      bar.update(1)
      save_now = done % cfg.train.checkpoint_every == 0 or done == total_steps
      if done % cfg.train.log_every == 0 or save_now or done == stop_at_step:
        window = jax.device_get(pending)
        losses = np.asarray([m["loss"] for m in window], np.float64)
        if not np.isfinite(losses).all():
          bad = done - len(window) + int(np.argmin(np.isfinite(losses))) + 1
          ckpt.wait()
          raise NonFiniteLossError(
              f"non-finite loss or gradient at step {bad} in {workdir}; stopped. The last good "
              f"checkpoint is step {ckpt.latest_step()} (the bad step changed no parameters). "
              "Lower optim.base_lr or check the input images.")
        elapsed = time.perf_counter() - window_start
        row = {k: float(np.mean([m[k] for m in window])) for k in window[0] if k != "lr"}
        row.update(lr=float(window[-1]["lr"]), epoch=done / steps_per_epoch,
                   images_per_sec=len(window) * cfg.train.batch_size / elapsed)
        writer.write(done, row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
        pending, window_start = [], time.perf_counter()
      if done == stop_at_step:
        stopped_early = True
        break
      if save_now:
        _save(ckpt, state, iterator, done / steps_per_epoch)
  finally:
    bar.close()
    ckpt.close()
    writer.close()
    if hasattr(iterator, "close"):
      iterator.close()
  return PretrainResult(workdir=workdir, state=state, objective=setup.objective,
                        num_steps=int(state.step), stopped_early=stopped_early)


USAGE = """usage: python -m vision_jax.pretrain --config=configs/simclr.py:<variant> --workdir=<dir>
         [--config.<key>=<value> ...]
         [--distributed | --coordinator=host:port --num_processes=N --process_id=i]"""


def main(argv: list[str]) -> int:
  def body(argv):
    cfg, flags = parse_cli(argv, allowed=("workdir", *DISTRIBUTED_FLAGS))
    initialize_from_flags(flags)
    workdir = flags.get("workdir") or os.path.join("runs", cfg.get("name", cfg.method))
    result = train(cfg, workdir)
    print(f"{result.num_steps} steps; run written to {result.workdir}")
  return run_cli(argv, body, USAGE, errors=(NonFiniteLossError,))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
