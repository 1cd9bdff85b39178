"""Geo-prior training: the family's state, step, data and run files, run by ecorep.trainer.fit.

  python -m sinr_jax.train --config=configs/geo_prior.py:full --workdir=runs/gp

(sinr_jax.train dispatches here on model.family = "geo_prior".) One step: encode the batch's
(lon, lat, day) and as many random background points (uniform on the sphere and the year), embed
both in one forward pass (dropout on), and descend L_GP (sinr_jax.losses "gp") with the
photographer rows P[u] of the batch. Every epoch draws a fresh subset of at most data.cap
observations per class (ecorep.sampler.EpochSampler(labels=, cap=)). When the run finishes, the
parameters without P are saved as the inference checkpoint (<run>/inference/).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ecorep import trainer
from ecorep.checkpoint import Checkpointer
from ecorep.errors import ConfigError
from ecorep.mesh import batch_sharding, data_mesh, is_main_process, replicated
from ecorep.pipeline import batch_iterator, gather_rows
from ecorep.sampler import EpochSampler, run_length
from sinr_jax import coords, losses
from sinr_jax.data import write_class_index
from sinr_jax.errors import CheckpointMismatchError
from sinr_jax.geo_prior import dates as date_rules
from sinr_jax.geo_prior import encoding, rundir
from sinr_jax.geo_prior.data import FORMATS, GeoPriorData, load_geo_prior_data
from sinr_jax.geo_prior.model import GeoPriorModel
from sinr_jax.geo_prior.photographers import PhotographerIndex

_log = logging.getLogger("sinr_jax.geo_prior.train")
PHOTOGRAPHER_PARAM = "photographer_embedding"


@dataclasses.dataclass
class GeoPriorTrainResult:
  workdir: str
  state: trainer.TrainState
  model: GeoPriorModel
  data: GeoPriorData
  num_steps: int
  stopped_early: bool


def validate_config(cfg: ml_collections.ConfigDict, mesh) -> None:
  """Every setting that can be checked without data, before anything is read or written."""
  t, m, d = cfg.train, cfg.model, cfg.data
  trainer.validate_train_config(t, mesh)
  if t.loss != "gp":
    raise ConfigError(f"the geo prior trains with L_GP (train.loss=gp), got {t.loss!r}",
                      field="train.loss")
  if d.format not in FORMATS:
    raise ConfigError(f"unknown data.format {d.format!r}; choose one of {', '.join(FORMATS)}",
                      field="data.format")
  if d.bad_dates not in date_rules.POLICIES:
    raise ConfigError(f"unknown data.bad_dates {d.bad_dates!r}; choose one of "
                      f"{', '.join(date_rules.POLICIES)}", field="data.bad_dates")
  date_rules.parse_max_date(d.max_date)
  for key, ok, rule in (
      ("train.lr", math.isfinite(t.lr) and t.lr > 0, "a positive number"),
      ("train.lr_decay", 0 < t.lr_decay <= 1, "in (0, 1]"),
      ("train.head_block_size", t.head_block_size >= 0, ">= 0 (0: no blocks)"),
      ("model.width", m.width > 0, "positive"), ("model.depth", m.depth >= 0, ">= 0"),
      ("model.dropout", 0 <= m.dropout < 1, "in [0, 1)"),
      ("data.cap", d.cap == -1 or d.cap > 0, "positive or -1 (all)"),
      ("data.min_photographer_obs", d.min_photographer_obs >= 1, "at least 1")):
    if not ok:
      section, name = key.split(".")
      raise ConfigError(f"{key} must be {rule}, got {cfg[section][name]!r}", field=key)


def build_model(cfg, num_classes: int, num_photographers: int) -> GeoPriorModel:
  m = cfg.model
  return GeoPriorModel(num_classes=num_classes,
                       input_dim=encoding.input_dim(m.use_date, m.wrap),
                       num_photographers=num_photographers if m.photographers else 0,
                       width=m.width, depth=m.depth, dropout=m.dropout)


def init_state(model: GeoPriorModel, tx, key) -> trainer.TrainState:
  params = model.init(key, jnp.zeros((1, model.input_dim), jnp.float32))["params"]
  return trainer.new_state(params, tx)


def make_step_fn(model: GeoPriorModel, tx, cfg, mesh):
  """`step(state, batch, key) -> (state, metrics)` (not compiled). `batch` = {'lonlat' (B, 2)
  degrees, 'day' (B,) day-of-year fraction, 'label' (B,), 'user' (B,) photographer index}."""
  m, block = cfg.model, cfg.train.head_block_size
  rows = batch_sharding(mesh)
  gp_loss = losses.LOSSES["gp"]

  def step(state, batch, key):
    k_rand, k_drop = jax.random.split(key)
    n = batch["lonlat"].shape[0]
    rand_lonlat, rand_day = encoding.background(k_rand, n)
    x = jnp.concatenate([
        encoding.encode(coords.normalize(batch["lonlat"]), batch["day"], use_date=m.use_date,
                        wrap=m.wrap),
        encoding.encode(rand_lonlat, rand_day, use_date=m.use_date, wrap=m.wrap)], axis=0)
    x = jax.lax.with_sharding_constraint(x, rows)

    def objective(params):
      emb = model.apply({"params": params}, x, train=True, method=GeoPriorModel.embed,
                        rngs={"dropout": k_drop})
      users = params.get(PHOTOGRAPHER_PARAM)
      return gp_loss(emb=emb[:n], emb_rand=emb[n:], species_emb=params["species_embedding"],
                     labels=batch["label"], block_size=block, photographer_emb=users,
                     photographers=batch["user"] if users is not None else None)

    loss, grads = jax.value_and_grad(objective)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), {"loss": loss}

  return step


def inference_params(params: dict) -> dict:
  """The parameters without P: photographer embeddings serve training only."""
  return {k: v for k, v in params.items() if k != PHOTOGRAPHER_PARAM}


def _write_inference(workdir: str, state, step: int) -> None:
  with Checkpointer(os.path.join(workdir, rundir.INFERENCE_DIR), max_to_keep=1,
                    async_save=False) as ckpt:
    if ckpt.latest_step() == step:
      return
    params = jax.tree.map(np.asarray, jax.device_get(inference_params(state.params)))
    ckpt.save(step, {"state": {"params": params}})


def _photographer_file(workdir: str, index: PhotographerIndex | None, resuming: bool) -> None:
  path = os.path.join(workdir, rundir.PHOTOGRAPHERS_FILE)
  if index is None:
    return
  if resuming and os.path.exists(path):
    saved = PhotographerIndex.load(path)
    if saved.users.tolist() != index.users.tolist():
      raise CheckpointMismatchError(
          f"the run was trained with {len(saved)} photographers that differ from the "
          f"{len(index)} of this data; use a new --workdir", file=path, field="users")
    return
  index.save(path)


def train(cfg: ml_collections.ConfigDict, workdir: str, *, mesh=None,
          stop_at_step: int | None = None,
          allow_config_change: bool = False) -> GeoPriorTrainResult:
  """Trains (or resumes) the geo prior in `workdir` (see sinr_jax.train.train for the flags)."""
  workdir = os.path.abspath(workdir)
  mesh = data_mesh() if mesh is None else mesh
  validate_config(cfg, mesh)
  data = load_geo_prior_data(cfg, workdir)
  sampler = EpochSampler(len(data.labels), cfg.train.batch_size, seed=cfg.seed,
                         labels=data.labels, cap=cfg.data.cap)
  total_steps = run_length(num_epochs=cfg.train.num_epochs,
                           steps_per_epoch=sampler.steps_per_epoch,
                           max_steps=cfg.train.max_steps)
  num_photographers = len(data.photographers) if data.photographers is not None else 0
  model = build_model(cfg, len(data.class_index), num_photographers)
  schedule = optax.exponential_decay(cfg.train.lr, transition_steps=sampler.steps_per_epoch,
                                     decay_rate=cfg.train.lr_decay, staircase=True)
  tx = optax.adam(schedule)
  key = jax.random.key(cfg.seed)
  state = jax.jit(lambda k: init_state(model, tx, k), out_shardings=replicated(mesh))(key)
  read = gather_rows({"lonlat": data.lonlat, "day": data.day, "label": data.labels,
                      "user": data.users})

  def run_files(workdir: str, resuming: bool) -> None:
    m = cfg.model
    rundir.write_or_check_model_spec(workdir, rundir.model_spec(
        num_classes=len(data.class_index), num_photographers=num_photographers,
        width=m.width, depth=m.depth, dropout=m.dropout, use_date=m.use_date, wrap=m.wrap,
        input_dim=model.input_dim), resuming=resuming)
    write_class_index(os.path.join(workdir, rundir.TAXA_FILE), data.class_index,
                      data.source, resuming=resuming)
    _photographer_file(workdir, data.photographers, resuming)

  task = trainer.Task(
      name="geo_prior", state=state, step=trainer.compile_step(make_step_fn(model, tx, cfg, mesh)),
      batches=lambda it_state: batch_iterator(sampler, read, state=it_state),
      total_steps=total_steps, steps_per_epoch=sampler.steps_per_epoch,
      batch_size=cfg.train.batch_size, key=key, mesh=mesh, learning_rate=schedule,
      throughput_name="obs_per_sec", run_files=run_files,
      changeable_on_resume=("train.max_steps", "train.num_epochs"))
  _log.info("%d observations of %d classes, %d photographers (%s); %d per epoch (cap %d), "
            "%d steps of %d on %d device(s)", len(data.labels), len(data.class_index),
            num_photographers, data.source, sampler.epoch_size, cfg.data.cap, total_steps,
            cfg.train.batch_size, mesh.devices.size)
  options = trainer.Options.from_config(cfg.train, stop_at_step=stop_at_step,
                                        allow_config_change=allow_config_change)
  result = trainer.fit(task, workdir, options, cfg)
  if not result.stopped_early:
    _write_inference(workdir, result.state, result.num_steps)
    if is_main_process():
      from sinr_jax.plots import plot_training_curves
      plot_training_curves(os.path.join(workdir, "metrics.jsonl"),
                           os.path.join(workdir, "plots", "training_curves.png"))
  return GeoPriorTrainResult(workdir=workdir, state=result.state, model=model, data=data,
                             num_steps=result.num_steps, stopped_early=result.stopped_early)
