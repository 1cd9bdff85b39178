"""Pretraining objectives, chosen by name: simclr, moco, byol, supervised.

  objective = build_objective(cfg, total_steps=..., global_batch_size=..., num_classes=...)

`cfg.method` names the objective, `cfg.model` the backbone and `cfg.objective` holds the
objective's own fields (the dataclass fields of its class, e.g. SimCLR.temperature).
"""
from __future__ import annotations

import dataclasses
import difflib

import jax.numpy as jnp

from ecorep.errors import ConfigError
from vision_jax.resnet import STAGES, ResNet
from vision_jax.ssl.byol import BYOL
from vision_jax.ssl.moco import MoCo
from vision_jax.ssl.simclr import SimCLR, nt_xent
from vision_jax.ssl.supervised import Supervised

OBJECTIVES = {"simclr": SimCLR, "moco": MoCo, "byol": BYOL, "supervised": Supervised}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

__all__ = ["BYOL", "MoCo", "OBJECTIVES", "SimCLR", "Supervised", "build_backbone",
           "build_objective", "objective_class", "nt_xent"]


def objective_class(name: str):
  if name not in OBJECTIVES:
    hint = difflib.get_close_matches(str(name), list(OBJECTIVES), n=1)
    raise ConfigError(f"unknown objective '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint
                                                      else "")
                      + f"; known objectives: {', '.join(sorted(OBJECTIVES))}", field="method")
  return OBJECTIVES[name]


def build_backbone(model_cfg) -> ResNet:
  if model_cfg.depth not in STAGES:
    raise ConfigError(f"model.depth {model_cfg.depth} is not one of {sorted(STAGES)}",
                      field="model.depth")
  if model_cfg.get("dtype", "float32") not in DTYPES:
    raise ConfigError(f"model.dtype must be one of {sorted(DTYPES)}", field="model.dtype")
  return ResNet(depth=int(model_cfg.depth), width_multiplier=int(model_cfg.width_multiplier),
                small_stem=bool(model_cfg.small_stem),
                base_width=int(model_cfg.get("base_width", 64)),
                dtype=DTYPES[model_cfg.get("dtype", "float32")])


def build_objective(cfg, *, total_steps: int, global_batch_size: int,
                    num_classes: int | None = None):
  cls = objective_class(cfg.method)
  fields = {f.name for f in dataclasses.fields(cls)} - {"backbone", "total_steps"}
  kwargs = dict(cfg.get("objective", {}) or {})
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ConfigError(f"objective.{unknown[0]} is not a setting of {cls.name}; its settings: "
                      f"{', '.join(sorted(fields))}", field=f"objective.{unknown[0]}")
  if cls is BYOL:
    kwargs["total_steps"] = total_steps
  if cls is Supervised and not kwargs.get("num_classes"):
    if not num_classes:
      raise ConfigError("supervised pretraining needs objective.num_classes (or a labelled "
                        "source)", field="objective.num_classes")
    kwargs["num_classes"] = num_classes
  if cls is MoCo and kwargs.get("queue_size", MoCo.queue_size) % global_batch_size:
    raise ConfigError(f"objective.queue_size {kwargs.get('queue_size', MoCo.queue_size)} must "
                      f"be a multiple of the batch size {global_batch_size}",
                      field="objective.queue_size")
  return cls(backbone=build_backbone(cfg.model), **kwargs)
