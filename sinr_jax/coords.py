"""Coordinates: normalisation, the sin/cos wrap, and random locations.

Normalised coordinates are (λ, φ) = (lon/180, lat/90) in [-1, 1]². The wrapped input orders its
4 features as [sin πλ, sin πφ, cos πλ, cos πφ], as the reference SINR code does, so weights trained
there load here.
"""
from __future__ import annotations

import math

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
