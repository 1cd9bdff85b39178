"""Frozen features of an encoder over an image source: extracted once, cached with the
encoder's identity, fused by concatenation.

Extraction streams the source through the grain evaluation pipeline (input_pipeline:
decode, resize the short side, centre crop, on host threads), shards every global batch over
all devices of all processes (ecorep.mesh), runs the backbone in eval mode (BN running
statistics) and gathers the pooled last-block features (2048-d for ResNet-50, 8192-d at x4)
in source order. Batch t+1 is dispatched before batch t is copied back, so reading, computing
and copying overlap. The seed's transform is the default for photographs: short side 256,
centre crop 224 (in general short side S/0.875 and crop S); small-image sets are resized whole.

Features file / cache (npz, format "vision_jax.features/1"):
  features  (N, D) float32 in source order; zero rows where an image could not be read
  failed    (k,) int64: those rows, with `failures` (k,) str: why
  ids       (N,) str, optional: the data set's image ids
  meta      JSON: {"format", "encoder": identity, "data": identity, "transform", "source": run
            directory and step (informative), "timing": seconds and images/s}
The encoder's identity is its architecture and a digest of its variables (not where the run
lives). A cache is used only when encoder, data and transform all match; a file written by
another encoder, or for other data, is refused with an error naming the file and what differs,
and is never overwritten unless `overwrite=True`.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from typing import Any, Sequence

import jax
import numpy as np

from ecorep.io import atomic_write
from ecorep.mesh import batch_sharding, data_mesh, is_main_process, replicate
from vision_jax.errors import VisionInputError
from vision_jax.input_pipeline import eval_iterator

_log = logging.getLogger(__name__)
FORMAT = "vision_jax.features/1"


def variables_digest(variables: Any) -> str:
  """blake2b of every leaf's path and bytes: two encoders share it only with equal weights."""
  h = hashlib.blake2b(digest_size=16)
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return h.hexdigest()


def _plain(value):
  return json.loads(json.dumps(value, default=str))


def encoder_identity(encoder) -> dict:
  """Architecture (the module's settings), input size and a digest of the variables."""
  module = encoder.module
  settings = {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
              if f.name not in ("parent", "name")}
  return _plain({"module": type(module).__name__, "settings": settings,
                 "image_size": int(encoder.image_size),
                 "variables": variables_digest(encoder.variables)})


def data_identity(name: str, num_images: int, ids: Sequence[str] | None = None) -> dict:
  digest = None
  if ids is not None:
    digest = hashlib.blake2b("\n".join(map(str, ids)).encode(), digest_size=16).hexdigest()
  return {"name": str(name), "num_images": int(num_images), "ids": digest}


@dataclasses.dataclass
class Features:
  features: np.ndarray                 # (N, D) float32
  failed: np.ndarray                   # (k,) int64 rows that could not be read
  failures: list[str]                  # reason per failed row
  ids: np.ndarray | None = None        # (N,) str
  meta: dict = dataclasses.field(default_factory=dict)

  @property
  def num_images(self) -> int:
    return int(self.features.shape[0])

  @property
  def dim(self) -> int:
    return int(self.features.shape[1])

  def ok_mask(self) -> np.ndarray:
    ok = np.ones(self.num_images, bool)
    ok[self.failed] = False
    return ok

  def save(self, path: str | os.PathLike) -> None:
    arrays = {"features": self.features, "failed": self.failed,
              "failures": np.asarray(self.failures, dtype=str),
              "meta": np.asarray(json.dumps({**self.meta, "format": FORMAT}, sort_keys=True))}
    if self.ids is not None:
      arrays["ids"] = np.asarray(self.ids, dtype=str)

    def write(tmp):
      with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    atomic_write(path, write)

  @classmethod
  def load(cls, path: str | os.PathLike) -> "Features":
    """A features file; anything else raises VisionInputError naming it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
      raise VisionInputError("features file not found", file=path)
    try:
      with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
      raise VisionInputError(f"not a readable npz file ({e})", file=path) from e
    if "features" not in data:
      raise VisionInputError("no 'features' array", file=path, field="features")
    feats = np.asarray(data["features"], np.float32)
    if feats.ndim != 2:
      raise VisionInputError(f"features must be (N, D), got {feats.shape}", file=path,
                             field="features")
    meta = {}
    if "meta" in data:
      try:
        meta = json.loads(str(data["meta"]))
      except json.JSONDecodeError as e:
        raise VisionInputError(f"corrupt meta ({e})", file=path, field="meta") from e
      if meta.get("format") != FORMAT:
        raise VisionInputError(f"format {meta.get('format')!r}, expected {FORMAT!r}", file=path,
                               field="format")
    failed = np.asarray(data.get("failed", np.zeros(0, np.int64)), np.int64).reshape(-1)
    failures = [str(s) for s in data.get("failures", np.zeros(0, str)).reshape(-1)]
    if failed.size and (failed.min() < 0 or failed.max() >= len(feats)):
      raise VisionInputError("failed rows outside the features", file=path, field="failed")
    ids = data.get("ids")
    if ids is not None and len(ids) != len(feats):
      raise VisionInputError(f"{len(ids)} ids but {len(feats)} feature rows", file=path,
                             field="ids")
    if not np.isfinite(feats).all():
      row = int(np.flatnonzero(~np.isfinite(feats).all(1))[0])
      raise VisionInputError("features hold NaN or inf", file=path, row=row, field="features")
    failures = failures + ["unreadable"] * (len(failed) - len(failures))
    return cls(feats, failed, failures[:len(failed)], ids, meta)

  def check_rows(self, num_images: int, ids: Sequence[str] | None = None, *,
                 where: str = "features") -> None:
    """Rows must be the data set's images, in its order (by count, and by id where known)."""
    if self.num_images != num_images:
      raise VisionInputError(f"{self.num_images} feature rows but the data set has "
                             f"{num_images} images: features and labels differ in length",
                             file=where, field="features")
    if ids is not None and self.ids is not None:
      mine, theirs = np.asarray(self.ids, str), np.asarray(ids, str)
      if not np.array_equal(mine, theirs):
        row = int(np.flatnonzero(mine != theirs)[0])
        raise VisionInputError(f"row {row} holds image {mine[row]!r}, the data set has "
                               f"{theirs[row]!r} there", file=where, row=row, field="ids")


def fuse(parts: Sequence[Features], names: Sequence[str] | None = None) -> Features:
  """Concatenation of several encoders' features of the same images (seed Table 3.3)."""
  if not parts:
    raise VisionInputError("nothing to fuse", field="encoders")
  n = parts[0].num_images
  for p in parts[1:]:
    if p.num_images != n:
      raise VisionInputError(f"cannot fuse features of {n} and {p.num_images} images",
                             field="features")
  failed: dict[int, str] = {}
  for p in parts:
    for row, why in zip(p.failed.tolist(), p.failures):
      failed.setdefault(int(row), why)
  rows = np.asarray(sorted(failed), np.int64)
  meta = {"format": FORMAT, "fused": list(names) if names else [p.meta.get("encoder")
                                                                 for p in parts],
          "dims": [p.dim for p in parts]}
  return Features(np.concatenate([p.features for p in parts], axis=1), rows,
                  [failed[r] for r in rows.tolist()], parts[0].ids, meta)


@functools.partial(jax.jit, static_argnums=0)
def _forward(module, variables, images):
  return module.apply(variables, images.astype(np.float32) / 255.0, train=False)[0]


def _to_host(array) -> np.ndarray:
  if jax.process_count() == 1:
    return np.asarray(array)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def _placed_variables(encoder, mesh):
  """The encoder's variables replicated over `mesh` (all devices of all processes)."""
  if jax.process_count() == 1:
    return replicate(encoder.variables, mesh)  # already on these devices: no copy
  return replicate(jax.tree.map(np.asarray, encoder.variables), mesh)


def compute(encoder, source, *, data: dict, batch_size: int = 256,
            small_image: bool | None = None, resize_short: int | None = None,
            ids: Sequence[str] | None = None, cache_path: str | os.PathLike | None = None,
            overwrite: bool = False, on_error: str = "mark", num_threads: int = 2,
            info: dict | None = None) -> Features:
  """Features of every item of `source` (or the matching cache; see the module docstring).

  `data` is the data set's identity (data_identity); on_error="mark" keeps unreadable images as
  flagged rows (Features.failed), "raise" stops at the first. `info` (run directory, step) is
  stored for the record only.
  """
  if small_image is None:
    small_image = bool(getattr(encoder.module, "small_stem", False))
  size = int(encoder.image_size)
  transform = {"image_size": size, "small_image": bool(small_image),
               "resize_short": None if small_image else (
                   int(resize_short) if resize_short else int(round(size / 0.875)))}
  wanted = {"encoder": encoder_identity(encoder), "data": _plain(data),
            "transform": transform}
  if cache_path is not None and os.path.exists(cache_path) and not overwrite:
    cached = Features.load(cache_path)
    check_cache(cached, wanted, os.fspath(cache_path))
    _log.info("features of %s read from %s", data.get("name"), cache_path)
    return cached
  mesh = data_mesh()
  n_dev = mesh.devices.size
  batch_size = max(n_dev, -(-int(batch_size) // n_dev) * n_dev)
  variables = _placed_variables(encoder, mesh)
  rows_sharding = batch_sharding(mesh)
  n = len(source)
  out = None
  failed: dict[int, str] = {}
  start, first_done, first_images = time.perf_counter(), None, 0

  def collect(t, result, batch):
    nonlocal out, first_done, first_images
    host = _to_host(result)
    flags = _to_host_flags(batch["failed"])
    rows = t * batch_size + np.arange(batch_size)
    keep = rows < n
    if out is None:
      out = np.zeros((n, host.shape[1]), np.float32)
    out[rows[keep]] = host[keep]
    for k in np.flatnonzero(flags & keep):
      failed[int(rows[k])] = "unreadable image (read on another process)"
    for k in np.flatnonzero(batch["failed"]):
      failed[int(batch["index"][k])] = batch["error"][k]
    if first_done is None:
      first_done, first_images = time.perf_counter(), int(keep.sum())

  pending = None
  iterator = eval_iterator(source, batch_size=batch_size, image_size=size,
                           small_image=small_image, num_threads=num_threads,
                           resize_short=transform["resize_short"], on_error=on_error)
  for t, batch in enumerate(iterator):
    images = jax.make_array_from_process_local_data(rows_sharding, batch["image"])
    result = _forward(encoder.module, variables, images)  # dispatched, not waited for
    if pending is not None:
      collect(*pending)
    pending = (t, result, batch)
  if pending is not None:
    collect(*pending)
  seconds = time.perf_counter() - start
  if out is None:
    out = np.zeros((0, 0), np.float32)
  rows = np.asarray(sorted(failed), np.int64)
  out[rows] = 0.0
  steady = None
  if first_done is not None and n > first_images:
    steady = (n - first_images) / max(time.perf_counter() - first_done, 1e-9)
  timing = {"seconds": seconds, "images_per_sec": n / seconds if seconds > 0 else None,
            "images_per_sec_after_first_batch": steady, "devices": int(n_dev),
            "platform": jax.default_backend(), "batch_size": batch_size}
  meta = {"format": FORMAT, **wanted, "source": _plain(info or {}), "timing": timing}
  result = Features(out, rows, [failed[r] for r in rows.tolist()],
                    None if ids is None else np.asarray(ids, str), meta)
  if rows.size:
    _log.warning("%s: %d image(s) could not be read, e.g. %s", data.get("name"), rows.size,
                 result.failures[0])
  _log.info("features of %d images of %s: %.1f images/s (%d devices)", n, data.get("name"),
            timing["images_per_sec"] or 0.0, n_dev)
  if cache_path is not None and is_main_process():
    result.save(cache_path)
  return result


def _to_host_flags(local_flags: np.ndarray) -> np.ndarray:
  if jax.process_count() == 1:
    return np.asarray(local_flags, bool)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(np.asarray(local_flags), tiled=True), bool)


def check_cache(cached: Features, wanted: dict, path: str) -> None:
  """Refuses a cache written by another encoder, or for other data or another transform."""
  for key in ("encoder", "data", "transform"):
    have = cached.meta.get(key)
    if have != wanted[key]:
      what = {"encoder": "another encoder", "data": "other data",
              "transform": "another image transform"}[key]
      raise VisionInputError(
          f"this feature cache was written by {what} ({_describe(key, have)}; now "
          f"{_describe(key, wanted[key])}); delete it, choose another cache, or overwrite",
          file=path, field=key)


def _describe(key: str, value) -> str:
  if not isinstance(value, dict):
    return "unknown"
  if key == "encoder":
    s = value.get("settings", {})
    return (f"{value.get('module')}-{s.get('depth')} x{s.get('width_multiplier')} at "
            f"{value.get('image_size')} px, weights {str(value.get('variables'))[:12]}")
  return ", ".join(f"{k}={v}" for k, v in value.items())
