"""Coordinates: normalisation, the sin/cos wrap, and random locations (pseudo-absences).

Normalised coordinates are (λ, φ) = (lon/180, lat/90) in [-1, 1]². The wrapped input orders its
4 features as [sin πλ, sin πφ, cos πλ, cos πφ], as the reference SINR code does, so weights trained
there load here.
"""
from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


def normalize(lonlat):
  """(N,2) degrees (lon, lat) → [-1, 1]²; works on numpy and JAX arrays."""
  xp = jnp if isinstance(lonlat, jax.Array) else np
  return lonlat / xp.asarray([180.0, 90.0], dtype=lonlat.dtype)


def to_degrees(norm_lonlat):
  xp = jnp if isinstance(norm_lonlat, jax.Array) else np
  return norm_lonlat * xp.asarray([180.0, 90.0], dtype=norm_lonlat.dtype)


def sincos(norm_lonlat: jax.Array) -> jax.Array:
  """[sin πλ, sin πφ, cos πλ, cos πφ]: longitude wraps at ±180°, latitude is continuous at the poles."""
  scaled = math.pi * norm_lonlat
  return jnp.concatenate([jnp.sin(scaled), jnp.cos(scaled)], axis=-1)


def sample_sphere(key: jax.Array, n: int, dtype=jnp.float32) -> jax.Array:
  """`n` normalised locations uniform over the sphere's area (oceans included).

  Longitude is uniform; colatitude θ = arccos(2u − 1) makes latitude's density ∝ cos(lat).
  """
  u = jax.random.uniform(key, (n, 2), dtype=dtype)
  lon = 2.0 * u[:, 0] - 1.0
  lat = 1.0 - 2.0 * jnp.arccos(2.0 * u[:, 1] - 1.0) / math.pi
  return jnp.stack([lon, lat], axis=-1)


def sample_box(key: jax.Array, n: int, dtype=jnp.float32) -> jax.Array:
  """`n` normalised locations uniform in the lon/lat rectangle (over-samples the poles)."""
  return jax.random.uniform(key, (n, 2), dtype=dtype, minval=-1.0, maxval=1.0)


SAMPLERS = {"sphere": sample_sphere, "box": sample_box}
# train.random_locations: the two global samplers above, or a pool drawn once on the host from the
# study region (sinr_jax.region) or read from the user's background-point file.
RANDOM_LOCATIONS = (*SAMPLERS, "region", "background")


@flax.struct.dataclass
class RandomLocations:
  """Where a step's random locations come from: a global sampler, or rows of a fixed pool drawn
  uniformly with replacement. A pytree (the pool travels to the step as a jit argument); pool
  points carry their raw covariates when the model reads covariates at points."""
  lonlat: jax.Array | None = None       # (P, 2) normalised pool
  covariates: jax.Array | None = None   # (P, C) raw covariates of the pool, or None
  kind: str = flax.struct.field(pytree_node=False, default="sphere")

  def __call__(self, key: jax.Array, n: int):
    """(n, 2) normalised locations and their (n, C) covariates (None without covariates)."""
    if self.lonlat is None:
      return SAMPLERS[self.kind](key, n), None
    rows = jax.random.randint(key, (n,), 0, self.lonlat.shape[0])
    return self.lonlat[rows], None if self.covariates is None else self.covariates[rows]


def random_locations(kind: str, pool_lonlat=None, pool_covariates=None) -> RandomLocations:
  """A global sampler ('sphere', 'box') or a pool of (P, 2) lon/lat degrees."""
  if pool_lonlat is None:
    if kind not in SAMPLERS:
      raise ValueError(f"random locations '{kind}' need a pool of points")
    return RandomLocations(kind=kind)
  pool = normalize(np.asarray(pool_lonlat, np.float32))
  cov = None if pool_covariates is None else jnp.asarray(pool_covariates, jnp.float32)
  return RandomLocations(lonlat=jnp.asarray(pool), covariates=cov, kind=kind)
