"""Inference from a run directory, independent of the training config.

  model = sinr_jax.load("runs/demo")
  probs = model.predict(lon, lat, taxa=[12345, 67890])   # (N, 2) presence probabilities
  feats = model.embed(lon, lat)                           # (N, 256) location embeddings
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from ecorep.checkpoint import Checkpointer
from sinr_jax import coords, rundir
from sinr_jax.env import load_raster, validate_raster
from sinr_jax.errors import CheckpointMismatchError, SinrInputError
from sinr_jax.features import InputEncoder, make_encoder
from sinr_jax.models import RangeModel
from sinr_jax.observations import ClassIndex


class RangePredictor:
  """A trained range model: location embeddings and per-species presence probabilities."""

  def __init__(self, model: RangeModel, params, encoder: InputEncoder, class_index: ClassIndex,
               run_dir: str | None = None, step: int | None = None):
    self.model, self.params, self.encoder = model, params, encoder
    self.class_index, self.run_dir, self.step = class_index, run_dir, step

  @property
  def taxa(self) -> np.ndarray:
    """Taxon id of every output column, in column order."""
    return self.class_index.taxa

  @property
  def embed_dim(self) -> int:
    return self.model.embed_dim

  def columns(self, taxa=None) -> np.ndarray:
    """Output columns of `taxa` (all when None); an unknown taxon raises SinrInputError."""
    if taxa is None:
      return np.arange(len(self.class_index))
    return self.class_index.encode(np.asarray(taxa, np.int64), source="taxa argument")

  def embed(self, lon, lat, *, batch_size: int = 65536) -> np.ndarray:
    """f_θ at (lon, lat) in degrees → (N, embed_dim)."""
    return self._map(_embed, lon, lat, batch_size)

  def predict(self, lon, lat, taxa=None, *, batch_size: int = 16384) -> np.ndarray:
    """P(presence) of each requested taxon at (lon, lat) in degrees → (N, len(taxa))."""
    return scipy.special.expit(self.logits(lon, lat, taxa, batch_size=batch_size))

  def logits(self, lon, lat, taxa=None, *, batch_size: int = 16384) -> np.ndarray:
    """Species logits h_φ(f_θ(x)) → (N, len(taxa)). Ranking by logits avoids the ties float32
    sigmoids create above |z| ≈ 17."""
    cols = jnp.asarray(self.columns(taxa))
    return self._map(functools.partial(_logits, cols=cols), lon, lat, batch_size)

  def _map(self, fn, lon, lat, batch_size):
    lonlat = _lonlat(lon, lat)
    out = []
    for start in range(0, len(lonlat), batch_size):
      chunk = lonlat[start:start + batch_size]
      n = len(chunk)
      padded = np.pad(chunk, ((0, batch_size - n), (0, 0))) if len(lonlat) > batch_size else chunk
      out.append(np.asarray(fn(self.model, self.params, self.encoder, jnp.asarray(padded)))[:n])
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _embed(model, params, encoder, lonlat):
  x = encoder(coords.normalize(lonlat))
  return model.apply({"params": params}, x, method=RangeModel.embed)


@functools.partial(jax.jit, static_argnums=0)
def _logits(model, params, encoder, lonlat, cols):
  emb = _embed(model, params, encoder, lonlat)
  return emb @ params["species_embedding"][cols].T


def _lonlat(lon, lat) -> np.ndarray:
  lon = np.atleast_1d(np.asarray(lon, np.float32))
  lat = np.atleast_1d(np.asarray(lat, np.float32))
  if lon.shape != lat.shape or lon.ndim != 1:
    raise SinrInputError(f"lon and lat must be 1-d and of equal length, got {lon.shape} and "
                         f"{lat.shape}", field="lon/lat")
  if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
    raise SinrInputError("lon/lat contain NaN or inf", field="lon/lat")
  if np.abs(lat).max(initial=0) > 90 or np.abs(lon).max(initial=0) > 180:
    raise SinrInputError("coordinates outside lon [-180, 180] / lat [-90, 90]", field="lon/lat")
  return np.stack([lon, lat], axis=1)


def load(run_dir: str | os.PathLike, *, step: int | None = None,
         env_raster: str | np.ndarray | None = None) -> RangePredictor:
  """Loads the newest (or `step`'s) checkpoint of a run. `env_raster` overrides the raster path
  recorded in model.json (e.g. after moving the data)."""
  run_dir = os.path.abspath(os.fspath(run_dir))
  spec = rundir.read_model_spec(run_dir)
  class_index = ClassIndex.load(os.path.join(run_dir, rundir.TAXA_FILE))
  m = spec["model"]
  if m["num_species"] != len(class_index):
    raise CheckpointMismatchError(
        f"model.json has {m['num_species']} species but taxa.json {len(class_index)}",
        file=os.path.join(run_dir, rundir.TAXA_FILE), field="taxa")
  kind = spec["input"]["kind"]
  raster = None
  if kind != "coords":
    n_channels = spec["input"]["env_shape"][-1]
    if isinstance(env_raster, np.ndarray):
      raster = validate_raster(env_raster, source="env_raster argument", channels=n_channels)
    else:
      raster = load_raster(env_raster or spec["input"]["env_raster"], channels=n_channels)
  encoder = make_encoder(kind, raster)
  model = RangeModel(num_species=m["num_species"], input_dim=m["input_dim"], encoder=m["encoder"],
                     width=m["width"], depth=m["depth"], dropout=m["dropout"])
  ckpt = Checkpointer(os.path.join(run_dir, rundir.CHECKPOINT_DIR), async_save=False)
  try:
    if ckpt.latest_step() is None:
      raise SinrInputError("run has no complete checkpoint yet",
                           file=os.path.join(run_dir, rundir.CHECKPOINT_DIR))
    state, _ = ckpt.restore_as_saved(step)
  finally:
    ckpt.close()
  params = jax.tree.map(jnp.asarray, state["params"])
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                               jnp.zeros((1, m["input_dim"])))["params"])
  if jax.tree.map(lambda a: a.shape, params) != jax.tree.map(lambda a: a.shape, expected):
    raise CheckpointMismatchError("checkpoint parameters do not match model.json",
                                  file=os.path.join(run_dir, rundir.CHECKPOINT_DIR))
  return RangePredictor(model, params, encoder, class_index, run_dir,
                        int(state["step"]))
