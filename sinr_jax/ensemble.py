"""Several seeds of one run, averaged: the ensemble's probability and the members' spread.

  ens = train_ensemble(cfg, "runs/slug", seeds=(0, 1, 2))   # runs/slug/seed_0, seed_1, ...
  ens = load_ensemble("runs/slug")                          # every seed_* run found there
  mean, sd = ens.predict_with_spread(lon, lat)              # (N, T) each

Each member is an ordinary run (train.py through ecorep.trainer, resumable, loadable alone).
The ensemble predicts the mean of the members' probabilities; `sd` is their standard deviation
across members, the seed-to-seed uncertainty of the map.
"""
from __future__ import annotations

import glob
import os
import re

import jax
import numpy as np

from sinr_jax.errors import SinrInputError

SEED_DIR = "seed_{}"


class Ensemble:
  def __init__(self, members, seeds):
    if not members:
      raise SinrInputError("an ensemble needs at least one member", field="seeds")
    self.members, self.seeds = list(members), list(seeds)

  @property
  def taxa(self) -> np.ndarray:
    return self.members[0].taxa

  @property
  def covariate_spec(self):
    return self.members[0].covariate_spec

  def member_predictions(self, lon, lat, taxa=None, *, covariates=None) -> np.ndarray:
    """(M, N, T) probabilities of every member."""
    return np.stack([m.predict(lon, lat, taxa, covariates=covariates) for m in self.members])

  def predict_with_spread(self, lon, lat, taxa=None, *, covariates=None):
    probs = self.member_predictions(lon, lat, taxa, covariates=covariates)
    return probs.mean(axis=0), probs.std(axis=0)

  def predict(self, lon, lat, taxa=None, *, covariates=None) -> np.ndarray:
    return self.predict_with_spread(lon, lat, taxa, covariates=covariates)[0]


def predictor_of(result):
  """A RangePredictor of a finished sinr_jax.train.TrainResult (no reload from disk)."""
  from sinr_jax.predictor import RangePredictor
  return RangePredictor(result.model, jax.device_get(result.state.params), result.encoder,
                        result.data.class_index, result.workdir, int(result.state.step),
                        result.data.covariate_spec)


def parse_seeds(text) -> list[int]:
  """'0,1,2' → [0, 1, 2]."""
  try:
    seeds = [int(s) for s in str(text).split(",") if s.strip()]
  except ValueError:
    seeds = []
  if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise SinrInputError(f"seeds must be distinct non-negative integers like 0,1,2; got {text!r}",
                         field="seeds")
  return seeds


def train_ensemble(cfg, workdir: str, seeds, *, data=None, mesh=None,
                   plots: bool = True) -> Ensemble:
  """Trains (or resumes) one run per seed in workdir/seed_<s>; `data`, `plots` as in train()."""
  from sinr_jax.train import train
  members = []
  for seed in seeds:
    member_cfg = cfg.copy_and_resolve_references()
    member_cfg.seed = int(seed)
    result = train(member_cfg, os.path.join(workdir, SEED_DIR.format(seed)), mesh=mesh,
                   data=data, plots=plots)
    members.append(predictor_of(result))
  return Ensemble(members, seeds)


def load_ensemble(workdir: str) -> Ensemble:
  """Every seed_<s> run in workdir, in seed order."""
  from sinr_jax.predictor import load
  runs = sorted(((int(m.group(1)), p) for p in glob.glob(os.path.join(workdir, "seed_*"))
                 if (m := re.fullmatch(r"seed_(\d+)", os.path.basename(p)))))
  if not runs:
    raise SinrInputError("no seed_<n> runs in this directory", file=workdir)
  return Ensemble([load(p) for _, p in runs], [s for s, _ in runs])
