"""One training run per learning rate on the shared loop (ecorep.trainer), picked on D_f.

Each learning rate trains in its own run directory (<workdir>/lr_<lr>: config.json with that
one rate, model.json in the encoder format, checkpoints, metrics.jsonl), so a killed search
resumes inside the run it was in, and a finished run is restored rather than retrained. The
state after the last step is scored on D_f; the best score wins. Compiled steps are cached per
(network, step settings, mesh), so the whole grid (and every seed) compiles once.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from ecorep import trainer
from ecorep.mesh import replicated
from ecorep.pipeline import batch_iterator
from ecorep.sampler import EpochSampler, run_length
from vision_jax import encoder as encoder_lib
from vision_jax.wsol import model as model_lib
from vision_jax.wsol import step as step_lib

_log = logging.getLogger("vision_jax.wsol")
_STEPS: dict[Any, Callable] = {}


@dataclasses.dataclass(frozen=True)
class ClassReader:
  """`read(rows, step)` of a classifier's training batches (labels at the training level)."""
  images: Any
  labels: np.ndarray
  seed: int

  def __call__(self, rows: np.ndarray, step: int) -> dict:
    return {"image": self.images.train(rows, step, self.seed),
            "label": self.labels[rows].astype(np.int32)}


@dataclasses.dataclass(frozen=True)
class MaskReader:
  """FSL-Seg's batches: evaluation-size images and their box masks, flipped together."""
  images: Any
  masks: np.ndarray   # uint8 (N, S, S)
  seed: int

  def __call__(self, rows: np.ndarray, step: int) -> dict:
    images, masks = self.images.eval(rows).copy(), self.masks[rows].copy()
    flip = np.random.default_rng([self.seed, step, 11]).random(len(rows)) < 0.5
    flip &= getattr(self.images, "flip", True)
    images[flip], masks[flip] = images[flip, :, ::-1], masks[flip, :, ::-1]
    return {"image": images, "mask": masks}


def compiled_step(net, settings: step_lib.StepSettings, tx, mesh) -> Callable:
  """The jitted, guarded step (state replicated, batch sharded), compiled once per key."""
  key = (net, settings, mesh)
  if key not in _STEPS:
    if len(_STEPS) >= 8:
      del _STEPS[next(iter(_STEPS))]
    _STEPS[key] = trainer.compile_step(step_lib.make_train_step(net, settings, tx),
                                       state_shardings=replicated(mesh), mesh=mesh)
  return _STEPS[key]


_STARTS: dict[Any, Callable] = {}


def _initial_state(net, settings: step_lib.StepSettings, tx, mesh) -> Callable:
  """(params, batch_stats, lr) -> replicated TrainState as one compiled program (optax's init
  run op by op would compile a kernel per parameter shape)."""
  key = (net, dataclasses.replace(settings, method="", total_steps=1), mesh)
  if key not in _STARTS:
    if len(_STARTS) >= 8:
      del _STARTS[next(iter(_STARTS))]
    _STARTS[key] = jax.jit(lambda p, s, lr: step_lib.new_state(p, s, tx, lr),
                           out_shardings=replicated(mesh))
  return _STARTS[key]


@dataclasses.dataclass
class Trial:
  lr: float
  val: dict
  state: Any
  seconds: float


def search(cfg: ml_collections.ConfigDict, *, net, params, batch_stats,
           settings: step_lib.StepSettings, read: Callable, num_train: int, batch_size: int,
           num_epochs: float, lrs, evaluate: Callable[[Any], dict], score: Callable[[dict], float],
           workdir: str | None, mesh, image_size: int, allow_config_change: bool = False
           ) -> tuple[Trial, list[Trial]]:
  """Trains one run per learning rate from (params, batch_stats); returns (best, all)."""
  sampler = EpochSampler(num_train, batch_size, cfg.seed)
  total = run_length(num_epochs=num_epochs, steps_per_epoch=sampler.steps_per_epoch,
                     max_steps=cfg.train.max_steps)
  settings = dataclasses.replace(settings, total_steps=total)
  tx = step_lib.make_optimizer(settings, params)
  step = compiled_step(net, settings, tx, mesh)
  spec = encoder_lib.model_spec(**model_lib.backbone_spec(net), image_size=image_size,
                                method=f"wsol_{settings.method}")
  trials = []
  start = _initial_state(net, settings, tx, mesh)
  # Host copies: every run starts from fresh device buffers (the loop donates its state).
  params, batch_stats = jax.device_get((params, batch_stats))
  for lr in lrs:
    t0 = time.perf_counter()
    run_dir = os.path.join(workdir, f"lr_{lr:g}") if workdir else None
    state = start(params, batch_stats, np.float32(lr))
    run_cfg = ml_collections.ConfigDict(cfg.to_dict())
    run_cfg.train.lr = (float(lr),)
    run_cfg.name = ""
    task = trainer.Task(
        name=f"{settings.method} lr {lr:g}", state=state, step=step,
        batches=lambda s: batch_iterator(sampler, read, state=s), total_steps=total,
        steps_per_epoch=sampler.steps_per_epoch, batch_size=batch_size,
        key=jax.random.key(cfg.seed), mesh=mesh,
        learning_rate=step_lib.learning_rate(lr, total), throughput_name="images_per_sec",
        run_files=lambda d, resuming: encoder_lib.write_or_check_model_spec(
            d, spec, resuming=resuming))
    options = trainer.Options.from_config(cfg.train, allow_config_change=allow_config_change,
                                          progress=sys.stderr.isatty())
    result = trainer.fit(task, run_dir, options, run_cfg if run_dir else None)
    val = evaluate(result.state)
    trials.append(Trial(float(lr), val, result.state, time.perf_counter() - t0))
    _log.info("%s lr %g: D_f score %.4f (%d steps, %.0f s)", settings.method, lr, score(val),
              total, trials[-1].seconds)
  best = max(trials, key=lambda t: score(t.val))
  return best, trials


def variables_of(state) -> dict:
  return {"params": state.params, "batch_stats": state.model_state}
