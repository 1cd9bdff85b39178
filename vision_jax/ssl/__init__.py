"""Pretraining objectives, chosen by name: simclr, moco, byol, supervised.

  objective = build_objective(cfg, total_steps=..., global_batch_size=..., num_classes=...)

`cfg.train.loss` names the objective, `cfg.model` the backbone and `cfg.objective` holds the
objective's own fields (the dataclass fields of its class, e.g. SimCLR.temperature).
"""
from __future__ import annotations

import dataclasses
import difflib


from ecorep.errors import ConfigError
from vision_jax.resnet import ResNet, build_resnet
from vision_jax.ssl.byol import BYOL
from vision_jax.ssl.moco import MoCo
from vision_jax.ssl.simclr import SimCLR, nt_xent
from vision_jax.ssl.supervised import Supervised

OBJECTIVES = {"simclr": SimCLR, "moco": MoCo, "byol": BYOL, "supervised": Supervised}

__all__ = ["BYOL", "MoCo", "OBJECTIVES", "SimCLR", "Supervised", "build_backbone",
           "build_objective", "objective_class", "nt_xent"]


def objective_class(name: str):
  if name not in OBJECTIVES:
    hint = difflib.get_close_matches(str(name), list(OBJECTIVES), n=1)
    raise ConfigError(f"unknown objective '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint
                                                      else "")
                      + f"; known objectives: {', '.join(sorted(OBJECTIVES))}", field="train.loss")
  return OBJECTIVES[name]


def build_backbone(model_cfg) -> ResNet:
  return build_resnet(model_cfg)


def build_objective(cfg, *, total_steps: int, global_batch_size: int,
                    num_classes: int | None = None):
  cls = objective_class(cfg.train.loss)
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
