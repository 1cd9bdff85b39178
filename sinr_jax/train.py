"""Training: one jitted `train_step(state, batch, key)`, data-parallel over every device.

  python -m sinr_jax.train --config=configs/sinr.py:an_full,coords,cap1000 --workdir=runs/x \
      [--config.train.batch_size=4096 ...]

Rerunning the same command on an existing --workdir resumes from its newest checkpoint.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from typing import Any, Callable

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
from ecorep.mesh import (batch_sharding, check_batch_size, data_mesh, is_main_process,
                         replicate, shard_batch)
from ecorep.metrics import MetricWriter
from ecorep.progress import progress_bar
from sinr_jax import coords, losses, rundir
from sinr_jax.data import TrainingData, load_training_data
from sinr_jax.errors import NonFiniteLossError
from sinr_jax.features import InputEncoder, make_encoder
from sinr_jax.models import RangeModel
from sinr_jax.pipeline import EpochBatches, batch_iterator

_log = logging.getLogger("sinr_jax.train")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


@dataclasses.dataclass
class TrainResult:
  workdir: str
  state: TrainState
  model: RangeModel
  encoder: InputEncoder
  data: TrainingData
  num_steps: int
  stopped_early: bool


def build_model(cfg: ml_collections.ConfigDict, num_species: int, input_dim: int) -> RangeModel:
  m = cfg.model
  return RangeModel(num_species=num_species, input_dim=input_dim, encoder=m.encoder,
                    width=m.width, depth=m.depth, dropout=m.dropout)


def lr_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Exponential decay by `lr_decay` once per epoch (the reference's ExponentialLR)."""
  return optax.exponential_decay(cfg.train.lr, transition_steps=steps_per_epoch,
                                 decay_rate=cfg.train.lr_decay, staircase=True)


def init_state(model: RangeModel, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
  params = model.init(key, jnp.zeros((1, model.input_dim), jnp.float32))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def make_train_step(model: RangeModel, tx: optax.GradientTransformation, encoder: InputEncoder,
                    cfg: ml_collections.ConfigDict, mesh) -> Callable:
  """Returns `train_step(state, batch, key) -> (state, metrics)`, compiled once.

  `batch` = {'lonlat': (B,2) degrees, 'label': (B,) class}, sharded along the batch axis; `key`
  is the run's base key (each step folds in its step number). A non-finite loss leaves
  parameters and optimiser state unchanged; the host loop then stops the run.
  """
  loss_name, loss_fn = losses.get_loss(cfg.train.loss)
  uses_random = loss_name in losses.USES_RANDOM_LOCATIONS
  sample = coords.SAMPLERS[cfg.train.random_locations]
  rows = batch_sharding(mesh)

  def step_fn(state: TrainState, batch, key, encoder: InputEncoder):
    key = jax.random.fold_in(key, state.step)
    k_rand, k_drop, k_loss = jax.random.split(key, 3)
    x = encoder(coords.normalize(batch["lonlat"]))
    n = x.shape[0]
    if uses_random:  # one forward over data and random locations, as the reference does
      x = jnp.concatenate([x, encoder(sample(k_rand, n))], axis=0)
    x = jax.lax.with_sharding_constraint(x, rows)

    def objective(params):
      emb = model.apply({"params": params}, x, train=True, method=RangeModel.embed,
                        rngs={"dropout": k_drop})
      return loss_fn(emb=emb[:n], emb_rand=emb[n:] if uses_random else None,
                     species_emb=params["species_embedding"], labels=batch["label"], key=k_loss,
                     pos_weight=cfg.train.pos_weight, block_size=cfg.train.head_block_size)

    loss, grads = jax.value_and_grad(objective)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = TrainState(step=state.step + 1, params=keep(params, state.params),
                           opt_state=keep(opt_state, state.opt_state))
    return new_state, {"loss": loss}

  jitted = jax.jit(step_fn, donate_argnums=0)
  return lambda state, batch, key: jitted(state, batch, key, encoder)


def train(cfg: ml_collections.ConfigDict, workdir: str, *, mesh=None,
          stop_at_step: int | None = None) -> TrainResult:
  """Trains (or resumes) the run in `workdir`.

  `stop_at_step` ends the run after that step as if it were killed there: nothing after the last
  periodic checkpoint is saved (tests use it to check that resuming is exact).
  """
  workdir = os.path.abspath(workdir)
  mesh = data_mesh() if mesh is None else mesh
  check_batch_size(cfg.train.batch_size, mesh)
  data = load_training_data(cfg, workdir)
  encoder = make_encoder(cfg.model.input, data.env_raster)
  model = build_model(cfg, len(data.class_index), encoder.input_dim)
  if is_main_process():
    os.makedirs(workdir, exist_ok=True)
    rundir.write_or_check_model_spec(workdir, rundir.model_spec(
        num_species=len(data.class_index), input_dim=encoder.input_dim,
        encoder=cfg.model.encoder, width=cfg.model.width, depth=cfg.model.depth,
        dropout=cfg.model.dropout, input_kind=encoder.kind, env_raster=data.env_raster_path,
        env_shape=None if data.env_raster is None else data.env_raster.shape))
    data.write_class_index(os.path.join(workdir, rundir.TAXA_FILE))
    io.write_text(os.path.join(workdir, rundir.CONFIG_FILE), config_to_json(cfg))

  source = EpochBatches(data.lonlat, data.labels, cfg.train.batch_size, seed=cfg.seed,
                        num_steps=0, process_index=jax.process_index(),
                        process_count=jax.process_count())
  steps_per_epoch = source.steps_per_epoch
  total_steps = cfg.train.num_epochs * steps_per_epoch
  if cfg.train.max_steps > 0:
    total_steps = min(total_steps, cfg.train.max_steps)
  source.num_steps = total_steps
  schedule = lr_schedule(cfg, steps_per_epoch)
  tx = optax.adam(schedule)

  key = jax.random.key(cfg.seed)
  state = jax.jit(lambda k: init_state(model, tx, k),
                  out_shardings=jax.sharding.NamedSharding(mesh, jax.P()))(key)
  encoder = replicate(encoder, mesh)
  ckpt = Checkpointer(os.path.join(workdir, rundir.CHECKPOINT_DIR),
                      max_to_keep=cfg.train.keep_checkpoints)
  iterator_state = None
  if ckpt.latest_step() is not None:
    state, extra = ckpt.restore(state)
    iterator_state = extra.get("data_iterator")
    _log.info("resuming %s from step %d", workdir, int(state.step))
  start = int(state.step)
  batches = batch_iterator(source, iterator_state)
  train_step = make_train_step(model, tx, encoder, cfg, mesh)

  _log.info("%d observations of %d species (%s), %d steps of %d (%d per epoch) on %d device(s)",
            len(data.labels), len(data.class_index), data.source, total_steps,
            cfg.train.batch_size, steps_per_epoch, mesh.devices.size)
  writer = MetricWriter(workdir)
  bar = progress_bar(total_steps, initial=start, desc="train")
  pending, window_start, stopped_early = [], time.perf_counter(), False
  try:
    for step in range(start, total_steps):
      batch = shard_batch(next(batches), mesh)
      state, metrics = train_step(state, batch, key)
      pending.append(metrics["loss"])
      done = step + 1
      bar.update(1)
      save_now = done % cfg.train.checkpoint_every == 0 or done == total_steps
      if done % cfg.train.log_every == 0 or save_now or done == stop_at_step:
        window = np.asarray(jax.device_get(pending), np.float64)
        if not np.isfinite(window).all():
          bad = done - len(window) + int(np.argmin(np.isfinite(window)))
          ckpt.wait()
          raise NonFiniteLossError(
              f"non-finite loss at step {bad} in {workdir}; stopped. The last good checkpoint "
              f"is step {ckpt.latest_step()} (parameters were not updated by the bad step). "
              "Lower train.lr or check the input data.")
        elapsed = time.perf_counter() - window_start
        writer.write(done, {"loss": float(window.mean()), "lr": float(schedule(step)),
                            "epoch": done / steps_per_epoch,
                            "obs_per_sec": len(window) * cfg.train.batch_size / elapsed})
        bar.set_postfix(loss=f"{window.mean():.4f}", refresh=False)
        pending, window_start = [], time.perf_counter()
      if done == stop_at_step:  # behave like a kill: nothing beyond the last periodic checkpoint
        stopped_early = True
        break
      if save_now:
        ckpt.save(done, state, {"data_iterator": batches.get_state(), "epoch": done / steps_per_epoch})
  finally:
    bar.close()
    ckpt.close()
    writer.close()
  if is_main_process() and not stopped_early:
    from sinr_jax.plots import plot_training_curves
    plot_training_curves(os.path.join(workdir, "metrics.jsonl"),
                         os.path.join(workdir, "plots", "training_curves.png"))
  return TrainResult(workdir=workdir, state=state, model=model, encoder=encoder, data=data,
                     num_steps=int(state.step), stopped_early=stopped_early)


USAGE = """usage: python -m sinr_jax.train --config=configs/sinr.py:<variant> --workdir=<dir>
         [--config.<key>=<value> ...]
         [--distributed | --coordinator=host:port --num_processes=N --process_id=i]"""


def main(argv: list[str]) -> int:
  def body(argv):
    cfg, flags = parse_cli(argv, allowed=("workdir", *DISTRIBUTED_FLAGS))
    initialize_from_flags(flags)
    workdir = flags.get("workdir") or os.path.join("runs", cfg.get("name", "sinr"))
    train(cfg, workdir)
    print(f"run written to {os.path.abspath(workdir)}")
  return run_cli(argv, body, USAGE, errors=(NonFiniteLossError,))


def cli() -> None:
  """The `sinr-train` entry point."""
  sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
  cli()
