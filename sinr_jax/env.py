"""Environmental rasters: loading, validation and bilinear lookup.

A raster is an (H, W, C) float array in plate carrée covering the whole globe, row 0 = north,
W = 2H, NaN over the ocean (the layout of the published `bioclim_elevation_scaled.npy`).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from sinr_jax.errors import SinrInputError


def validate_raster(raster, *, source: str = "<array>", channels: int | None = None) -> np.ndarray:
  """Checks shape and values; returns float32 with NaN (ocean) replaced by 0, the layer mean."""
  raster = np.asarray(raster)
  if raster.ndim != 3:
    raise SinrInputError(f"raster must have shape (H, W, C), got {raster.shape}", file=source,
                         field="shape")
  h, w, c = raster.shape
  if h < 2 or w != 2 * h:
    raise SinrInputError(
        f"raster shape {raster.shape} is not a global plate-carrée grid (expected W = 2H)",
        file=source, field="shape")
  if channels is not None and c != channels:
    raise SinrInputError(f"raster has {c} channels, the model expects {channels}", file=source,
                         field="shape")
  if not np.issubdtype(raster.dtype, np.floating):
    raise SinrInputError(f"raster dtype {raster.dtype} is not floating point", file=source,
                         field="dtype")
  raster = raster.astype(np.float32)
  if np.isinf(raster).any():
    raise SinrInputError("raster contains inf values", file=source, field="values")
  if np.isnan(raster).all():
    raise SinrInputError("raster is entirely NaN", file=source, field="values")
  return np.nan_to_num(raster, nan=0.0)


def load_raster(path: str | os.PathLike, *, channels: int | None = None) -> np.ndarray:
  """Reads an .npy raster (never unpickling) and validates it."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise SinrInputError("raster file not found", file=path)
  try:
    raster = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise SinrInputError(f"cannot read raster ({e})", file=path) from e
  return validate_raster(raster, source=path, channels=channels)


def bilinear(raster: jax.Array, norm_lonlat: jax.Array) -> jax.Array:
  """Bilinear lookup of (N,2) normalised (lon, lat) in an (H, W, C) raster → (N, C).

  Pixel (0, 0) sits at (−180°, 90°) and pixel (H−1, W−1) at (180°, −90°), as in the reference.
  """
  h, w = raster.shape[0], raster.shape[1]
  x = (norm_lonlat[:, 0] + 1.0) * 0.5 * (w - 1)
  y = (1.0 - (norm_lonlat[:, 1] + 1.0) * 0.5) * (h - 1)
  x0f, y0f = jnp.floor(x), jnp.floor(y)
  dx, dy = (x - x0f)[:, None], (y - y0f)[:, None]
  x0 = jnp.clip(x0f.astype(jnp.int32), 0, w - 1)
  y0 = jnp.clip(y0f.astype(jnp.int32), 0, h - 1)
  x1 = jnp.minimum(x0 + 1, w - 1)
  y1 = jnp.minimum(y0 + 1, h - 1)
  return (raster[y0, x0] * (1 - dx) * (1 - dy) + raster[y0, x1] * dx * (1 - dy)
          + raster[y1, x0] * (1 - dx) * dy + raster[y1, x1] * dx * dy)
