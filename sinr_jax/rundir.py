"""The run directory: what a training run writes and what `sinr_jax.load` reads back.

  <run>/model.json     model and input specification (enough to rebuild the model without a config)
  <run>/taxa.json      the class index: taxon id of every output
  <run>/config.json    the full training config (for the record)
  <run>/checkpoints/   orbax checkpoints (atomic; the newest complete one is what resume and load use)
  <run>/metrics.jsonl  training metrics; <run>/plots/ training curves
Metadata files are written atomically after every setting has been validated and before the
first checkpoint, so a run killed at any point leaves either a resumable directory or one with
no checkpoint, which a rerun starts afresh (replacing its metadata, whatever model it held).
Also written by the shared runtime (ecorep.trainer): config_history.jsonl, best/ when a best
metric is tracked.
"""
from __future__ import annotations

import os

from ecorep import io
from sinr_jax.errors import CheckpointMismatchError, SinrInputError

FORMAT = "sinr_jax.run/1"
MODEL_FILE = "model.json"
TAXA_FILE = "taxa.json"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def model_spec(*, num_species: int, input_dim: int, encoder: str, width: int, depth: int,
               dropout: float, input_kind: str, env_raster: str | None,
               env_shape: tuple[int, ...] | None, covariates: dict | None = None) -> dict:
  """`covariates`: the point covariates' spec (sinr_jax.covariates.CovariateSpec.to_json)."""
  return {
      "format": FORMAT,
      "model": {"num_species": int(num_species), "input_dim": int(input_dim), "encoder": encoder,
                "width": int(width), "depth": int(depth), "dropout": float(dropout)},
      "input": {"kind": input_kind,
                "env_raster": None if env_raster is None else os.path.abspath(env_raster),
                "env_shape": None if env_shape is None else list(env_shape),
                "covariates": covariates},
  }


def read_model_spec(run_dir: str) -> dict:
  return io.read_versioned_json(os.path.join(run_dir, MODEL_FILE), FORMAT,
                                what="sinr_jax run directory", error=SinrInputError)


def _identity_fields(spec: dict) -> dict:
  # The env raster's path may move between machines; its shape (input.env_shape) is what matters.
  return {f"{section}.{key}": value for section in ("model", "input")
          for key, value in spec.get(section, {}).items() if key != "env_raster"}


def write_or_check_model_spec(run_dir: str, spec: dict, *, resuming: bool) -> None:
  """Writes model.json for a fresh run; a resumed run must hold the same model."""
  io.write_or_check_model_spec(os.path.join(run_dir, MODEL_FILE), spec, check=resuming,
                               read=lambda: read_model_spec(run_dir), fields=_identity_fields,
                               error=CheckpointMismatchError)
