"""SINR training: the range model's state, step and data, run by the shared loop (ecorep.trainer).

  python -m sinr_jax.train --config=configs/sinr.py:an_full,coords,cap1000 --workdir=runs/x \
      [--config.train.batch_size=4096 ...] [--allow_config_change]

Rerunning the same command on an existing --workdir resumes from its newest intact checkpoint;
a setting that would change the run's trajectory is refused unless --allow_config_change.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ecorep import trainer
from ecorep.cli import DISTRIBUTED_FLAGS, flag_is_true, initialize_from_flags, run_cli
from ecorep.config import parse_cli
from ecorep.errors import ConfigError, NonFiniteLossError
from ecorep.mesh import batch_sharding, data_mesh, is_main_process, replicate, replicated
from ecorep.pipeline import batch_iterator, gather_rows
from ecorep.runconfig import ALLOW_FLAG
from ecorep.sampler import EpochSampler, run_length
from sinr_jax import coords, losses, models, rundir, sizing
from sinr_jax.data import TrainingData, load_training_data
from sinr_jax.features import InputEncoder, canonical_kind, make_encoder
from sinr_jax.models import RangeModel

_log = logging.getLogger("sinr_jax.train")
TrainState = trainer.TrainState
EVALUATORS = ("range_map",)   # names train.evals may list (see _evaluators)


@dataclasses.dataclass
class TrainResult:
  workdir: str
  state: TrainState
  model: RangeModel
  encoder: InputEncoder
  data: TrainingData
  num_steps: int
  stopped_early: bool


def validate_config(cfg: ml_collections.ConfigDict, mesh) -> None:
  """Every setting that can be checked without data, before anything is read or written."""
  t, m = cfg.train, cfg.model
  trainer.validate_train_config(t, mesh)
  losses.get_loss(t.loss)
  canonical_kind(m.input)
  if m.encoder not in models.ENCODERS:
    raise ConfigError(f"unknown encoder '{m.encoder}'; choose one of "
                      f"{', '.join(models.ENCODERS)}", field="model.encoder")
  if t.random_locations not in coords.RANDOM_LOCATIONS:
    raise ConfigError(f"unknown random-location sampler '{t.random_locations}'; choose one of "
                      f"{', '.join(coords.RANDOM_LOCATIONS)}", field="train.random_locations")
  for key, ok, rule in (("train.lr", math.isfinite(t.lr) and t.lr > 0, "a positive number"),
                        ("train.lr_decay", 0 < t.lr_decay <= 1, "in (0, 1]"),
                        *sizing.validate(t),
                        ("train.head_block_size", t.head_block_size >= 0, ">= 0 (0: no blocks)"),
                        ("model.width", m.width > 0, "positive"),
                        ("model.depth", m.depth >= 0, ">= 0"),
                        ("model.dropout", 0 <= m.dropout < 1, "in [0, 1)"),
                        ("data.cap", cfg.data.cap == -1 or cfg.data.cap > 0,
                         "positive or -1 (all)")):
    if not ok:
      raise ConfigError(f"{key} must be {rule}, got {cfg[key.split('.')[0]][key.split('.')[1]]!r}",
                        field=key)
  trainer.select_evaluators(t.evals, dict.fromkeys(EVALUATORS))


def build_model(cfg: ml_collections.ConfigDict, num_species: int, input_dim: int) -> RangeModel:
  m = cfg.model
  return RangeModel(num_species=num_species, input_dim=input_dim, encoder=m.encoder,
                    width=m.width, depth=m.depth, dropout=m.dropout)


def lr_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Exponential decay by `lr_decay` once per epoch (the reference's ExponentialLR), an epoch
  counting at least train.lr_decay_rows rows (sinr_jax/sizing.py)."""
  return optax.exponential_decay(cfg.train.lr,
                                 transition_steps=sizing.decay_steps(cfg.train, steps_per_epoch),
                                 decay_rate=cfg.train.lr_decay, staircase=True)


def init_state(model: RangeModel, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
  params = model.init(key, jnp.zeros((1, model.input_dim), jnp.float32))["params"]
  return trainer.new_state(params, tx)


def make_step_fn(model: RangeModel, tx: optax.GradientTransformation,
                 cfg: ml_collections.ConfigDict, mesh) -> Callable:
  """`step(state, batch, key, encoder, random_locations) -> (state, metrics)` (not compiled).

  `batch` = {'lonlat': (B,2) degrees, 'label': (B,) class[, 'covariates': (B, C) raw point
  covariates]}, sharded along the batch axis; `random_locations` a coords.RandomLocations.
  """
  loss_name, loss_fn = losses.get_loss(cfg.train.loss)
  uses_random = loss_name in losses.USES_RANDOM_LOCATIONS
  pos_weight = sizing.pos_weight(cfg.train.pos_weight, model.num_species)
  rows = batch_sharding(mesh)

  def step(state: TrainState, batch, key, encoder: InputEncoder,
           random_locations: coords.RandomLocations):
    k_rand, k_drop, k_loss = jax.random.split(key, 3)
    x = encoder(coords.normalize(batch["lonlat"]), batch.get("covariates"))
    n = x.shape[0]
    if uses_random:  # one forward over data and random locations, as the reference does
      x = jnp.concatenate([x, encoder(*random_locations(k_rand, n))], axis=0)
    x = jax.lax.with_sharding_constraint(x, rows)

    def objective(params):
      emb = model.apply({"params": params}, x, train=True, method=RangeModel.embed,
                        rngs={"dropout": k_drop})
      return loss_fn(emb=emb[:n], emb_rand=emb[n:] if uses_random else None,
                     species_emb=params["species_embedding"], labels=batch["label"], key=k_loss,
                     pos_weight=pos_weight, block_size=cfg.train.head_block_size)

    loss, grads = jax.value_and_grad(objective)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), {"loss": loss}

  return step


def make_train_step(model: RangeModel, tx: optax.GradientTransformation, encoder: InputEncoder,
                    cfg: ml_collections.ConfigDict, mesh,
                    random_locations: coords.RandomLocations | None = None) -> Callable:
  """The compiled `train_step(state, batch, key) -> (state, metrics)` (see ecorep.trainer).
  `random_locations` defaults to the global sampler train.random_locations names."""
  if random_locations is None:
    random_locations = coords.random_locations(cfg.train.random_locations)
  return trainer.compile_step(make_step_fn(model, tx, cfg, mesh),
                              consts=(encoder, random_locations))


def _evaluators(cfg, data: TrainingData, model: RangeModel, encoder: InputEncoder) -> dict:
  """Evaluator hooks named in train.evals: `range_map` scores range MAP against the simulated
  world's true ranges (runs on the default world only)."""
  out = {}
  if "range_map" in cfg.train.evals:
    if data.world_dir is None:
      raise ConfigError("the range_map evaluator needs the simulated world's truth; training "
                        "reads data.train_file", field="train.evals")
    from sinr_jax.predictor import RangePredictor
    from sinr_jax.scoring import evaluate_ranges
    from sinr_jax.world import load_world
    world = load_world(data.world_dir)

    def range_map(state):
      predictor = RangePredictor(model, jax.device_get(state.params), encoder, data.class_index)
      r = evaluate_ranges(predictor, world.cell_lonlat, world.presence, world.taxa)
      return {"map": r["map"], "num_species": r["num_species_evaluated"]}
    out["range_map"] = range_map
  return out


def train(cfg: ml_collections.ConfigDict, workdir: str, *, mesh=None,
          stop_at_step: int | None = None, allow_config_change: bool = False,
          data: TrainingData | None = None, plots: bool = True) -> TrainResult:
  """Trains (or resumes) the run in `workdir`.

  `stop_at_step` ends the run after that step as if it were killed there: nothing after the last
  periodic checkpoint is saved (tests use it to check that resuming is exact). `data` replaces
  what the config's data section names (cross-validation trains on subsets of one loaded set);
  `plots=False` skips plots/training_curves.png (many small runs: the curves stay in metrics).
  """
  if cfg.model.get("family", "sinr") == "geo_prior":  # configs/geo_prior.py: its own family
    from sinr_jax.geo_prior.train import train as train_geo_prior
    _log.info("model.family=geo_prior: training the geo prior (sinr_jax.geo_prior) in %s",
              workdir)
    return train_geo_prior(cfg, workdir, mesh=mesh, stop_at_step=stop_at_step,
                           allow_config_change=allow_config_change)
  workdir = os.path.abspath(workdir)
  mesh = data_mesh() if mesh is None else mesh
  validate_config(cfg, mesh)
  data = load_training_data(cfg, workdir) if data is None else data
  sampler = EpochSampler(len(data.labels), cfg.train.batch_size, seed=cfg.seed)
  total_steps = run_length(num_epochs=cfg.train.num_epochs,
                           steps_per_epoch=sampler.steps_per_epoch,
                           max_steps=cfg.train.max_steps)
  spec = data.covariate_spec
  encoder = make_encoder(cfg.model.input, data.env_raster,
                         None if spec is None else (spec.mean, spec.scale))
  model = build_model(cfg, len(data.class_index), encoder.input_dim)
  evaluators = _evaluators(cfg, data, model, encoder)
  schedule = lr_schedule(cfg, sampler.steps_per_epoch)
  tx = optax.adam(schedule)
  key = jax.random.key(cfg.seed)
  state = jax.jit(lambda k: init_state(model, tx, k), out_shardings=replicated(mesh))(key)
  device_encoder = replicate(encoder, mesh)
  read = gather_rows(data.columns())

  def run_files(workdir: str, resuming: bool) -> None:
    rundir.write_or_check_model_spec(workdir, rundir.model_spec(
        num_species=len(data.class_index), input_dim=encoder.input_dim,
        encoder=cfg.model.encoder, width=cfg.model.width, depth=cfg.model.depth,
        dropout=cfg.model.dropout, input_kind=encoder.kind, env_raster=data.env_raster_path,
        env_shape=None if data.env_raster is None else data.env_raster.shape,
        covariates=None if spec is None else spec.to_json()), resuming=resuming)
    data.write_class_index(os.path.join(workdir, rundir.TAXA_FILE), resuming=resuming)

  task = trainer.Task(
      name="train", state=state, step=make_train_step(
          model, tx, device_encoder, cfg, mesh, replicate(data.random_locations(), mesh)),
      batches=lambda it_state: batch_iterator(sampler, read, state=it_state),
      total_steps=total_steps, steps_per_epoch=sampler.steps_per_epoch,
      batch_size=cfg.train.batch_size, key=key, mesh=mesh, evaluators=evaluators,
      eval_every=cfg.train.eval_every, learning_rate=schedule, throughput_name="obs_per_sec",
      run_files=run_files,
      # The learning rate decays per epoch: a longer or shorter run follows the same path.
      changeable_on_resume=("train.max_steps", "train.num_epochs"))
  _log.info("%d observations of %d species (%s), %d steps of %d (%d per epoch) on %d device(s)",
            len(data.labels), len(data.class_index), data.source, total_steps,
            cfg.train.batch_size, sampler.steps_per_epoch, mesh.devices.size)
  _log.info(sizing.describe(cfg.train, len(data.class_index), sampler.steps_per_epoch))
  options = trainer.Options.from_config(cfg.train, stop_at_step=stop_at_step,
                                        allow_config_change=allow_config_change)
  result = trainer.fit(task, workdir, options, cfg)
  if plots and is_main_process() and not result.stopped_early:
    from sinr_jax.plots import plot_training_curves
    plot_training_curves(os.path.join(workdir, "metrics.jsonl"),
                         os.path.join(workdir, "plots", "training_curves.png"))
  return TrainResult(workdir=workdir, state=result.state, model=model, encoder=device_encoder,
                     data=data, num_steps=result.num_steps, stopped_early=result.stopped_early)


USAGE = f"""usage: python -m sinr_jax.train --config=configs/sinr.py:<variant> --workdir=<dir>
       (or --config=configs/geo_prior.py:<variant>: the geo prior, sinr_jax/geo_prior)
         [--config.<key>=<value> ...] [{ALLOW_FLAG}]
         [--distributed | --coordinator=host:port --num_processes=N --process_id=i]"""


def main(argv: list[str]) -> int:
  def body(argv):
    cfg, flags = parse_cli(argv, allowed=("workdir", ALLOW_FLAG[2:], *DISTRIBUTED_FLAGS))
    initialize_from_flags(flags)
    workdir = flags.get("workdir") or os.path.join("runs", cfg.get("name", "sinr"))
    train(cfg, workdir, allow_config_change=flag_is_true(flags, ALLOW_FLAG[2:]))
    print(f"run written to {os.path.abspath(workdir)}")
  return run_cli(argv, body, USAGE, errors=(NonFiniteLossError,),
                 flags=("config", "config.<key>", "workdir", ALLOW_FLAG[2:], *DISTRIBUTED_FLAGS),
                 configs=("sinr_jax.configs.sinr", "sinr_jax.configs.geo_prior"))


def cli() -> None:
  """The `sinr-train` entry point."""
  sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
  cli()
