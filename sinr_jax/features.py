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
  """Maps normalised (lon, lat) to model inputs. A pytree: the raster travels as a jit argument."""
  raster: jax.Array | None
  kind: str = flax.struct.field(pytree_node=False, default="coords")

  @property
  def input_dim(self) -> int:
    n_env = 0 if self.raster is None else self.raster.shape[-1]
    return {"coords": 4, "env": n_env, "env_coords": 4 + n_env}[self.kind]

  def __call__(self, norm_lonlat: jax.Array) -> jax.Array:
    if self.kind == "coords":
      return coords.sincos(norm_lonlat)
    env_feats = env.bilinear(self.raster, norm_lonlat)
    if self.kind == "env":
      return env_feats
    return jnp.concatenate([coords.sincos(norm_lonlat), env_feats], axis=-1)


def make_encoder(kind: str, raster=None) -> InputEncoder:
  kind = canonical_kind(kind)
  if kind != "coords" and raster is None:
    raise ConfigError(f"input encoding '{kind}' needs an environmental raster (data.env_raster)",
                      field="data.env_raster")
  return InputEncoder(raster=None if kind == "coords" else jnp.asarray(raster), kind=kind)
