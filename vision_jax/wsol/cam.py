"""Class activation maps (Zhou et al. 2016) and CAM-Agg, vectorised over a batch on the device.

CAM of image b for target class c: F_b @ W[:, c] over the last feature map F (B, h, w, C) and
the classifier kernel W (C, K), upsampled to the image (bicubic: jax.image.resize's Keys kernel,
a = −0.5; the reference's OpenCV INTER_CUBIC uses a = −0.75) and min-max normalised per image
(a constant map becomes zeros, as the reference's normalize_scoremap).

CAM-Agg (the seed's chapter 4): the map of a coarser node n is the mean of the CAMs of all
leaves under n. CAMs are linear in the kernel column, so that mean is the CAM of the mean
column: `aggregate_kernel` averages W's columns per node, before upsampling and normalising.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ecorep.taxonomy import Taxonomy


def raw_cams(feature_map: jax.Array, weights: jax.Array) -> jax.Array:
  """(B, h, w, C) features, (B, C) per-image class weights -> (B, h, w) float32."""
  return jnp.einsum("bhwc,bc->bhw", feature_map.astype(jnp.float32),
                    weights.astype(jnp.float32))


def upsample_normalize(maps: jax.Array, size: int, method: str = "cubic") -> jax.Array:
  """(B, h, w) -> (B, S, S) in [0, 1], min-max per map. A map constant before upsampling (to
  float32 rounding: interpolation leaves last-bit ripples that normalising would blow up)
  becomes zeros, as the reference's normalize_scoremap does with a constant map."""
  maps = maps.astype(jnp.float32)
  scale = jnp.abs(maps).max(axis=(1, 2), keepdims=True)
  flat = maps.max(axis=(1, 2), keepdims=True) - maps.min(axis=(1, 2), keepdims=True) <= (
      1e-6 * scale)
  maps = jax.image.resize(maps, (maps.shape[0], size, size), method)
  lo = maps.min(axis=(1, 2), keepdims=True)
  span = maps.max(axis=(1, 2), keepdims=True) - lo
  ok = (span > 0) & ~flat
  return jnp.where(ok, (maps - lo) / jnp.where(ok, span, 1.0), 0.0)


def aggregate_kernel(kernel, taxonomy: Taxonomy, level) -> np.ndarray:
  """(C, L) leaf-level kernel -> (C, nodes at `level`): each node's column is the mean of its
  leaves' columns (CAM-Agg); at the leaf level the kernel itself."""
  kernel = np.asarray(kernel, np.float32)
  members = taxonomy.members(level)
  return np.stack([kernel[:, m].mean(axis=1) for m in members], axis=1)
