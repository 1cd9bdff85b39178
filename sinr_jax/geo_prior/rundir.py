"""A geo-prior run directory (written by train.py, read by predictor.py and geo_prior_eval):

  <run>/model.json          format "sinr_jax.geo_prior.run/1": the model and its input encoding
  <run>/taxa.json           the class index (taxon id of every row of O)
  <run>/photographers.json  the photographer index (rows of P; absent without photographers)
  <run>/checkpoints/        training checkpoints (parameters with P, optimiser, data position)
  <run>/inference/          the finished model without P (what the predictor loads)
  <run>/config.json, config_history.jsonl, metrics.jsonl, plots/   as every run (ecorep)
"""
from __future__ import annotations

import os

from ecorep import io
from sinr_jax.errors import CheckpointMismatchError, SinrInputError

FORMAT = "sinr_jax.geo_prior.run/1"
MODEL_FILE = "model.json"
TAXA_FILE = "taxa.json"
PHOTOGRAPHERS_FILE = "photographers.json"
CHECKPOINT_DIR = "checkpoints"
INFERENCE_DIR = "inference"


def model_spec(*, num_classes: int, num_photographers: int, width: int, depth: int,
               dropout: float, use_date: bool, wrap: bool, input_dim: int) -> dict:
  return {"format": FORMAT,
          "model": {"num_classes": int(num_classes), "num_photographers": int(num_photographers),
                    "input_dim": int(input_dim), "width": int(width), "depth": int(depth),
                    "dropout": float(dropout)},
          "input": {"use_date": bool(use_date), "wrap": bool(wrap)}}


def read_model_spec(run_dir: str) -> dict:
  return io.read_versioned_json(os.path.join(run_dir, MODEL_FILE), FORMAT,
                                what="geo-prior run directory", error=SinrInputError)


def _fields(spec: dict) -> dict:
  return {f"{section}.{key}": value for section in ("model", "input")
          for key, value in spec.get(section, {}).items()}


def write_or_check_model_spec(run_dir: str, spec: dict, *, resuming: bool) -> None:
  io.write_or_check_model_spec(os.path.join(run_dir, MODEL_FILE), spec, check=resuming,
                               read=lambda: read_model_spec(run_dir), fields=_fields,
                               error=CheckpointMismatchError)
