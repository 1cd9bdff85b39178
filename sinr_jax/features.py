"""Input encodings: what the location encoder sees at a location."""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from ecorep.errors import ConfigError
from sinr_jax import coords, env

# Reference names ('sin_cos', 'env', 'sin_cos_env') are accepted as aliases.
INPUT_KINDS = ("coords", "env", "env_coords")
_ALIASES = {"sin_cos": "coords", "sin_cos_env": "env_coords"}


def canonical_kind(kind: str) -> str:
  kind = _ALIASES.get(kind, kind)
  if kind not in INPUT_KINDS:
    raise ConfigError(f"unknown input encoding '{kind}'; choose one of {', '.join(INPUT_KINDS)}",
                      field="model.input")
  return kind


@flax.struct.dataclass
class InputEncoder:
  """Maps normalised (lon, lat) to model inputs. A pytree: the raster travels as a jit argument.

  Env features come from the global raster (bilinear lookup), or, for point covariates
  (sinr_jax.covariates), from the raw values given with each point, standardised here with the
  run's saved mean and scale.
  """
  raster: jax.Array | None
  kind: str = flax.struct.field(pytree_node=False, default="coords")
  cov_mean: jax.Array | None = None    # (C,) point covariates' mean and scale
  cov_scale: jax.Array | None = None

  @property
  def input_dim(self) -> int:
    if self.raster is not None:
      n_env = self.raster.shape[-1]
    else:
      n_env = 0 if self.cov_mean is None else self.cov_mean.shape[0]
    return {"coords": 4, "env": n_env, "env_coords": 4 + n_env}[self.kind]

  @property
  def reads_covariates(self) -> bool:
    """Whether each point's covariates must be passed in."""
    return self.kind != "coords" and self.raster is None

  def __call__(self, norm_lonlat: jax.Array, covariates: jax.Array | None = None) -> jax.Array:
    if self.kind == "coords":
      return coords.sincos(norm_lonlat)
    if self.raster is not None:
      env_feats = env.bilinear(self.raster, norm_lonlat)
    else:
      if covariates is None:
        raise ValueError("this encoder standardises point covariates: pass them with the points")
      env_feats = (covariates - self.cov_mean) / self.cov_scale
    if self.kind == "env":
      return env_feats
    return jnp.concatenate([coords.sincos(norm_lonlat), env_feats], axis=-1)


def make_encoder(kind: str, raster=None, covariate_stats=None) -> InputEncoder:
  """`covariate_stats` = (mean, scale) of point covariates, in place of a raster."""
  kind = canonical_kind(kind)
  if kind == "coords":
    return InputEncoder(raster=None, kind=kind)
  if covariate_stats is not None:
    mean, scale = (jnp.asarray(v, jnp.float32) for v in covariate_stats)
    return InputEncoder(raster=None, kind=kind, cov_mean=mean, cov_scale=scale)
  if raster is None:
    raise ConfigError(f"input encoding '{kind}' needs an environmental raster (data.env_raster) "
                      "or point covariates (data.covariates / data.covariate_rasters)",
                      field="data.env_raster")
  return InputEncoder(raster=jnp.asarray(raster), kind=kind)
