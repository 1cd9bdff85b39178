"""Frozen encoders: the pretraining run directory and `load_encoder`.

  <run>/model.json    {"format": "vision_jax.encoder/1", "backbone": {"depth", "width_multiplier",
                       "small_stem", "base_width"}, "image_size": int, "method": str}
  <run>/checkpoints/  ecorep.trainer checkpoints; the train state holds params["backbone"] and
                      model_state["backbone"] (BN statistics; plus heads, optimiser, targets:
                      ignored here)
  <run>/config.json, <run>/metrics.jsonl   the training config and metrics (for the record)

`Encoder.features(images)` runs the backbone in eval mode (BN running statistics), jitted once
per batch shape and sharded over this process's devices; the last partial batch is padded.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ecorep import io
from ecorep.errors import CheckpointMismatchError
from ecorep.trainer import read_checkpoint
from ecorep.mesh import batch_sharding, data_mesh, replicate
from vision_jax.errors import VisionInputError
from vision_jax.resnet import ResNet, build_resnet, feature_dim
from vision_jax.ssl.base import init_key

FORMAT = "vision_jax.encoder/1"
MODEL_FILE = "model.json"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def model_spec(*, depth: int, width_multiplier: int, small_stem: bool, image_size: int,
               method: str, base_width: int = 64) -> dict:
  return {"format": FORMAT,
          "backbone": {"depth": int(depth), "width_multiplier": int(width_multiplier),
                       "small_stem": bool(small_stem), "base_width": int(base_width)},
          "image_size": int(image_size), "method": str(method)}


def read_model_spec(run_dir: str | os.PathLike) -> dict:
  path = os.path.join(os.fspath(run_dir), MODEL_FILE)
  spec = io.read_versioned_json(path, FORMAT, what="vision_jax pretraining run",
                                error=VisionInputError)
  for key in ("depth", "width_multiplier", "small_stem"):
    if key not in spec.get("backbone", {}):
      raise VisionInputError("model.json lacks the backbone's " + key, file=path,
                             field=f"backbone.{key}")
  return spec


def _identity_fields(spec: dict) -> dict:
  backbone = {"base_width": 64, **spec.get("backbone", {})}  # runs written before base_width
  return {**{"backbone." + k: v for k, v in backbone.items()},
          "image_size": spec.get("image_size"), "method": spec.get("method")}


def write_or_check_model_spec(run_dir: str, spec: dict, *, resuming: bool) -> None:
  """Writes model.json for a fresh run; a resumed run must describe the same model."""
  io.write_or_check_model_spec(os.path.join(run_dir, MODEL_FILE), spec, check=resuming,
                               read=lambda: read_model_spec(run_dir), fields=_identity_fields,
                               error=CheckpointMismatchError)


def _module(backbone: dict) -> ResNet:
  return build_resnet(backbone, section="backbone")


@dataclasses.dataclass
class Encoder:
  module: ResNet
  variables: dict          # {'params': ..., 'batch_stats': ...} of the backbone
  image_size: int
  step: int | None = None

  def __post_init__(self):
    self._mesh = data_mesh(jax.local_devices())
    self.variables = replicate(jax.tree.map(jnp.asarray, self.variables), self._mesh)
    self._rows = batch_sharding(self._mesh)

    def forward(variables, images):
      if images.dtype == jnp.uint8:
        images = images.astype(jnp.float32) / 255.0
      return self.module.apply(variables, images, train=False)[0]
    self._forward = jax.jit(forward, out_shardings=self._rows)

  @property
  def feature_dim(self) -> int:
    return feature_dim(self.module.depth, self.module.width_multiplier, self.module.base_width)

  @classmethod
  def random(cls, depth: int, width_multiplier: int, small_stem: bool, image_size: int,
             seed: int = 0, base_width: int = 64, zero_init_residual: bool = True) -> "Encoder":
    """A randomly initialised backbone (BN running statistics at their initial 0/1).

    zero_init_residual=True is the pretraining runs' starting point (each block's last BN γ = 0,
    so residual branches are silent); False gives γ = 1 everywhere (PyTorch's default).
    """
    module = _module({"depth": depth, "width_multiplier": width_multiplier,
                      "small_stem": small_stem, "base_width": base_width})
    module = module.clone(zero_init_residual=zero_init_residual)
    variables = jax.jit(lambda k: module.init(
        k, jnp.zeros((1, image_size, image_size, 3), jnp.float32), train=False))(
            init_key(seed))
    return cls(module, dict(variables), int(image_size))

  def features(self, images: Any, batch_size: int = 256) -> np.ndarray:
    """(N, H, W, 3) uint8 or float in [0, 1] (or (N, H, W[, 1]) gray) -> float32 (N, D)."""
    images = np.asarray(images)
    if images.ndim == 3:
      images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
      raise VisionInputError(f"expected images of shape (N, H, W, 3), got {images.shape}",
                             field="images")
    if images.dtype != np.uint8:
      if not np.issubdtype(images.dtype, np.floating):
        raise VisionInputError(f"images must be uint8 or float in [0, 1], not {images.dtype}",
                               field="images")
      images = images.astype(np.float32)
    if images.shape[-1] == 1:
      images = np.repeat(images, 3, axis=-1)
    n_dev = self._mesh.devices.size
    batch_size = max(n_dev, -(-min(batch_size, max(len(images), 1)) // n_dev) * n_dev)
    out = np.empty((len(images), self.feature_dim), np.float32)
    for start in range(0, len(images), batch_size):
      chunk = images[start:start + batch_size]
      padded = np.zeros((batch_size, *chunk.shape[1:]), chunk.dtype)
      padded[:len(chunk)] = chunk
      feats = self._forward(self.variables, jax.device_put(padded, self._rows))
      out[start:start + len(chunk)] = np.asarray(feats)[:len(chunk)]
    return out


def load_encoder(run_dir: str | os.PathLike, step: int | None = None) -> Encoder:
  """The backbone of a pretraining run at its newest (or `step`'s) checkpoint."""
  run_dir = os.path.abspath(os.fspath(run_dir))
  spec = read_model_spec(run_dir)
  module = _module(spec["backbone"])
  ckpt_dir = os.path.join(run_dir, CHECKPOINT_DIR)
  state, step = read_checkpoint(ckpt_dir, step, error=VisionInputError)
  try:
    variables = {"params": state["params"]["backbone"],
                 "batch_stats": state["model_state"]["backbone"]}
  except (KeyError, TypeError) as e:
    raise VisionInputError("checkpoint has no params/model_state 'backbone' entry",
                           file=ckpt_dir) from e
  size = int(spec["image_size"])
  expected = jax.eval_shape(lambda: module.init(jax.random.key(0),
                                                jnp.zeros((1, size, size, 3)), train=False))
  saved = dict(jax.tree_util.tree_flatten_with_path(variables)[0])
  for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]:
    got = saved.get(path)
    if got is None or tuple(got.shape) != tuple(leaf.shape):
      name = jax.tree_util.keystr(path)
      raise CheckpointMismatchError(
          f"checkpoint holds {'no array' if got is None else 'shape ' + str(tuple(got.shape))} "
          f"for {name}, model.json's backbone expects {tuple(leaf.shape)}: the checkpoint "
          "belongs to a different architecture", file=ckpt_dir, field=name)
  return Encoder(module, variables, size, step=step)
