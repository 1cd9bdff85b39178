"""Pretraining: the objectives' state, step and data, run by the shared loop (ecorep.trainer).

  python -m vision_jax.pretrain --config=configs/simclr.py:<variant> --workdir=runs/x \
      [--config.train.batch_size=4096 ...] [--distributed] [--allow_config_change]

Rerunning the same command on an existing --workdir resumes from its newest intact checkpoint:
the checkpoint holds the model, BN statistics, optimiser, EMA targets/queues, the run's RNG key
and the data iterator's position, so a resumed run takes exactly the steps an uninterrupted one
would. The host pipeline (vision_jax.input_pipeline) decodes and crops; flips, colour, grayscale
and blur run inside the step (vision_jax.augment), from the step's key.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ecorep import trainer
from ecorep.cli import DISTRIBUTED_FLAGS, flag_is_true, initialize_from_flags, run_cli
from ecorep.config import parse_cli
from ecorep.errors import ConfigError, NonFiniteLossError
from ecorep.mesh import batch_sharding, data_mesh, replicated
from ecorep.runconfig import ALLOW_FLAG
from ecorep.sampler import run_length
from vision_jax import augment, encoder, ssl
from vision_jax.optim import make_optimizer
from vision_jax.ssl import base as ssl_base

_log = logging.getLogger("vision_jax.pretrain")
TrainState = trainer.TrainState

__all__ = ["NonFiniteLossError", "PretrainResult", "RunSetup", "setup_run", "train", "main"]


@dataclasses.dataclass
class PretrainResult:
  workdir: str
  state: TrainState
  objective: Any
  num_steps: int
  stopped_early: bool


def _init(objective, tx, image_size: int, init_key) -> TrainState:
  params, batch_stats, extra = objective.init(init_key, (image_size, image_size, 3))
  return trainer.new_state(params, tx, model_state=batch_stats, extra=extra)


def make_step_fn(objective, tx: optax.GradientTransformation, policy: augment.Policy,
                 mesh) -> Callable:
  """`step(state, batch, key) -> (state, metrics)` for every objective (not compiled).

  `batch` = {'views': uint8 (B, V, S, S, 3), 'label': int32 (B,)}, sharded along B.
  """
  rows = batch_sharding(mesh)

  def step(state: TrainState, batch, key):
    k_aug, k_obj = jax.random.split(key)
    views = jax.lax.with_sharding_constraint(
        augment.augment_views(k_aug, batch["views"], policy), rows)

    def loss_fn(params):
      return objective.loss(params, state.model_state, state.extra, views, batch["label"],
                            k_obj, state.step)

    (loss, (batch_stats, extra, metrics)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    extra = objective.after_update(params, extra, state.step)
    grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
    new = state.replace(params=params, model_state=batch_stats, extra=extra,
                        opt_state=opt_state)
    return new, {"loss": loss, "grad_norm": grad_norm, **metrics}

  return step


@dataclasses.dataclass
class RunSetup:
  """Everything a run of one config computes with: built once per process and config."""
  objective: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  policy: augment.Policy
  init: Callable[[int], TrainState]     # seed -> replicated initial state
  train_step: Callable                  # (state, batch, key) -> (state, metrics); donates state
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
  total_steps = run_length(num_epochs=cfg.train.num_epochs, steps_per_epoch=steps_per_epoch,
                           max_steps=cfg.train.max_steps)
  key = json.dumps({k: cfg[k].to_dict() for k in ("model", "objective", "augment", "optim")}
                   | {"loss": cfg.train.loss, "batch": cfg.train.batch_size,
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
                   lambda seed: init(ssl_base.init_key(seed)),
                   trainer.compile_step(make_step_fn(objective, tx, policy, mesh)), total_steps,
                   steps_per_epoch)
  if len(_SETUPS) >= _SETUPS_MAX:
    del _SETUPS[next(iter(_SETUPS))]
  _SETUPS[key] = setup
  return setup


def build_source(data_cfg):
  """The image source a data config names: a bundled dataset, an image folder, or ArrayRecord
  shards (a file, or a folder of *.array_record files read in name order, as
  `python -m vision_jax.corrupt --format=array_record` writes them)."""
  from vision_jax import datasets, sources
  if data_cfg.dataset in ("folder", "array_record") and not data_cfg.root:
    raise ConfigError(f"data.dataset='{data_cfg.dataset}' needs data.root", field="data.root")
  if data_cfg.dataset == "folder":
    return sources.ImageFolderSource(data_cfg.root)
  if data_cfg.dataset == "array_record":
    root = data_cfg.root
    if not os.path.isdir(root):
      return sources.ArrayRecordSource(root)
    shards = sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".array_record"))
    if not shards:
      raise ConfigError(f"no *.array_record files in {root}", field="data.root")
    return sources.ArrayRecordSource(shards)
  if data_cfg.dataset not in datasets.DATASETS:
    raise ConfigError(f"unknown data.dataset '{data_cfg.dataset}'; known: folder, array_record, "
                      + ", ".join(sorted(datasets.DATASETS)), field="data.dataset")
  images, labels = datasets.DATASETS[data_cfg.dataset].loader(data_cfg.split)
  return sources.ArraySource(images, labels)


def default_iterator(source, cfg, state: dict | None):
  from vision_jax.input_pipeline import pretrain_iterator
  return pretrain_iterator(source, global_batch_size=cfg.train.batch_size,
                           image_size=cfg.data.image_size, seed=cfg.seed, num_views=2,
                           state=state, worker_count=cfg.data.worker_count,
                           crop_fn=augment.crop_fn(cfg.data))


def _num_classes(source) -> int | None:
  n = getattr(source, "num_classes", None)
  return int(n() if callable(n) else n) if n is not None else None


def validate_config(cfg: ml_collections.ConfigDict, mesh) -> None:
  """Settings checked before any data is read or anything written."""
  trainer.validate_train_config(cfg.train, mesh)
  ssl.objective_class(cfg.train.loss)
  ssl.build_backbone(cfg.model)
  augment.crop_fn(cfg.data)
  augment.Policy.from_config(cfg.augment)
  if not cfg.optim.base_lr > 0:
    raise ConfigError(f"optim.base_lr must be positive, got {cfg.optim.base_lr}",
                      field="optim.base_lr")
  if cfg.data.image_size <= 0:
    raise ConfigError(f"data.image_size must be positive, got {cfg.data.image_size}",
                      field="data.image_size")


def train(cfg: ml_collections.ConfigDict, workdir: str, *, source=None, mesh=None,
          make_iterator: Callable | None = None, stop_at_step: int | None = None,
          allow_config_change: bool = False) -> PretrainResult:
  """Pretrains (or resumes) the run in `workdir`.

  `source` overrides cfg.data (any random-access source with len() and items
  {'image', 'label'}); `make_iterator(source, cfg, iterator_state)` overrides the grain
  pipeline. `stop_at_step` stops after that step as if the process were killed there: no
  checkpoint is written for it.
  """
  workdir = os.path.abspath(workdir)
  mesh = data_mesh() if mesh is None else mesh
  validate_config(cfg, mesh)
  source = build_source(cfg.data) if source is None else source
  make_iterator = make_iterator or default_iterator
  make_iterator(source, cfg, None).close()  # fewer images than one batch fails here
  setup = setup_run(cfg, num_examples=len(source), num_classes=_num_classes(source), mesh=mesh)
  backbone = setup.objective.backbone

  def run_files(workdir: str, resuming: bool) -> None:
    encoder.write_or_check_model_spec(workdir, encoder.model_spec(
        depth=backbone.depth, width_multiplier=backbone.width_multiplier,
        small_stem=backbone.small_stem, base_width=backbone.base_width,
        image_size=cfg.data.image_size, method=cfg.train.loss), resuming=resuming)

  task = trainer.Task(
      name=cfg.train.loss, state=setup.init(cfg.seed), step=setup.train_step,
      batches=lambda it_state: make_iterator(source, cfg, it_state),
      total_steps=setup.total_steps, steps_per_epoch=setup.steps_per_epoch,
      batch_size=cfg.train.batch_size, key=jax.random.key(cfg.seed), mesh=mesh,
      learning_rate=setup.schedule, throughput_name="images_per_sec", run_files=run_files)
  _log.info("%s: %d images, %d steps of %d (%d per epoch) on %d device(s)", cfg.train.loss,
            len(source), setup.total_steps, cfg.train.batch_size, setup.steps_per_epoch,
            mesh.devices.size)
  options = trainer.Options.from_config(cfg.train, stop_at_step=stop_at_step,
                                        allow_config_change=allow_config_change)
  result = trainer.fit(task, workdir, options, cfg)
  return PretrainResult(workdir=workdir, state=result.state, objective=setup.objective,
                        num_steps=result.num_steps, stopped_early=result.stopped_early)


USAGE = f"""usage: python -m vision_jax.pretrain --config=configs/simclr.py:<variant> --workdir=<dir>
         [--config.<key>=<value> ...] [{ALLOW_FLAG}]
         [--distributed | --coordinator=host:port --num_processes=N --process_id=i]"""


def main(argv: list[str]) -> int:
  def body(argv):
    cfg, flags = parse_cli(argv, allowed=("workdir", ALLOW_FLAG[2:], *DISTRIBUTED_FLAGS))
    initialize_from_flags(flags)
    workdir = flags.get("workdir") or os.path.join("runs", cfg.get("name", cfg.train.loss))
    result = train(cfg, workdir, allow_config_change=flag_is_true(flags, ALLOW_FLAG[2:]))
    print(f"{result.num_steps} steps; run written to {result.workdir}")
  return run_cli(argv, body, USAGE, errors=(NonFiniteLossError,),
                 flags=("config", "config.<key>", "workdir", ALLOW_FLAG[2:], *DISTRIBUTED_FLAGS),
                 configs=("vision_jax.configs.simclr", "vision_jax.configs.byol",
                          "vision_jax.configs.moco", "vision_jax.configs.supervised",
                          "vision_jax.configs.pretrain_common"))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
