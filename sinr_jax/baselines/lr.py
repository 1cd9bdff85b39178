"""Logistic-regression baseline: the SINR model with the identity as location encoder.

ŷ = σ(W·x) on the raw input encoding (coords: the 4 sin/cos terms; env: the raster's channels;
env_coords: both), trained by the ordinary training loop with the same loss, data, cap and
schedule as the SINR run it is compared with (configs/sinr.py's `lr` token does the same).
"""
from __future__ import annotations

import ml_collections

from sinr_jax.features import canonical_kind
from sinr_jax.predictor import RangePredictor, load
from sinr_jax.train import train

INPUTS = ("coords", "env", "env_coords")


def lr_config(cfg: ml_collections.ConfigDict, input_kind: str) -> ml_collections.ConfigDict:
  """A copy of `cfg` with a linear encoder on `input_kind` inputs (and no dropout)."""
  out = cfg.copy_and_resolve_references()
  with out.unlocked():
    out.model.encoder = "linear"
    out.model.dropout = 0.0
    out.model.input = canonical_kind(input_kind)
    out.name = f"lr_{out.model.input}"
  out.lock()
  return out


def train_lr(cfg: ml_collections.ConfigDict, input_kind: str, workdir: str,
             **train_kwargs) -> RangePredictor:
  """Trains (or resumes) logistic regression on `input_kind` in `workdir`; returns the model."""
  train(lr_config(cfg, input_kind), workdir, **train_kwargs)
  return load(workdir)
