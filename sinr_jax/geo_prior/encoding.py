"""The geo prior's input x = (longitude, latitude, day of year) and its random background points.

With wrap (the default) the input is [sin πλ, sin πφ, cos πλ, cos πφ, sin πt, cos πt] for
λ = lon/180, φ = lat/90 and t = 2d − 1 (d the day-of-year fraction): the SINR coordinate order
(sinr_jax.coords.sincos) followed by the date, as the reference concatenates them. "No wrap"
feeds [λ, φ, t]; "no date" drops the date terms. Background points are uniform over the sphere's
area (oceans included) with dates uniform in [0, 1).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sinr_jax import coords
from sinr_jax.geo_prior.dates import wrap_day


def input_dim(use_date: bool, wrap: bool) -> int:
  return (4 if wrap else 2) + (2 if wrap else 1) * bool(use_date)


def encode(norm_lonlat: jax.Array, day: jax.Array | None, *, use_date: bool,
           wrap: bool) -> jax.Array:
  """(N, input_dim) model inputs from normalised (λ, φ) (N, 2) and day fractions (N,)."""
  loc = coords.sincos(norm_lonlat) if wrap else norm_lonlat
  if not use_date:
    return loc
  t = wrap_day(day)[:, None].astype(loc.dtype)
  date = jnp.concatenate([jnp.sin(math.pi * t), jnp.cos(math.pi * t)], axis=-1) if wrap else t
  return jnp.concatenate([loc, date], axis=-1)


def background(key: jax.Array, n: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """`n` random (normalised lon/lat, day fraction) points: uniform on the sphere and the year."""
  k_loc, k_day = jax.random.split(key)
  return coords.sample_sphere(k_loc, n, dtype), jax.random.uniform(k_day, (n,), dtype)
