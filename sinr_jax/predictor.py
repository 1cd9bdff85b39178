"""Inference from a run directory, independent of the training config.

  model = sinr_jax.load("runs/demo")
  probs = model.predict(lon, lat, taxa=[12345, 67890])   # (N, 2) presence probabilities
  feats = model.embed(lon, lat)                           # (N, 256) location embeddings
  rm = model.range_map(12345, res=4)                      # one species on the land H3 cells
  model.save_range_map(12345, "12345.geojson")            # or .png, .csv, .parquet

Taxon ids must be integers. Floats are accepted only when integral (1406.0, as ids read through
pandas or numpy come out when a column has gaps) and refused otherwise (1406.7): truncating them
would silently answer for another species.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from ecorep.trainer import read_checkpoint
from sinr_jax import coords, rundir
from sinr_jax.env import load_raster, validate_raster
from sinr_jax.errors import CheckpointMismatchError, SinrInputError
from sinr_jax.features import InputEncoder, make_encoder
from sinr_jax.models import RangeModel
from sinr_jax.observations import ClassIndex


class TaxonColumns:
  """The taxon ↔ output-column accessors of a trained model with a `class_index` and a `model`
  that has `embed_dim` (range models and the geo prior)."""

  @property
  def taxa(self) -> np.ndarray:
    """Taxon id of every output column, in column order."""
    return self.class_index.taxa

  @property
  def embed_dim(self) -> int:
    return self.model.embed_dim

  def columns(self, taxa=None) -> np.ndarray:
    """Output columns of `taxa` (all when None); an unknown or non-integral taxon raises
    SinrInputError."""
    if taxa is None:
      return np.arange(len(self.class_index))
    return self.class_index.encode(taxon_ids(taxa), source="taxa argument")


class RangePredictor(TaxonColumns):
  """A trained range model: location embeddings and per-species presence probabilities."""

  def __init__(self, model: RangeModel, params, encoder: InputEncoder, class_index: ClassIndex,
               run_dir: str | None = None, step: int | None = None, covariate_spec=None):
    self.model, self.params, self.encoder = model, params, encoder
    self.class_index, self.run_dir, self.step = class_index, run_dir, step
    # Point covariates (sinr_jax.covariates.CovariateSpec): column values come with the points
    # (`covariates=`), GeoTIFF bands are sampled at them.
    self.covariate_spec = covariate_spec

  def embed(self, lon, lat, *, covariates=None, batch_size: int = 65536) -> np.ndarray:
    """f_θ at (lon, lat) in degrees → (N, embed_dim)."""
    return self._map(_embed, lon, lat, batch_size, self.embed_dim, covariates)

  def predict(self, lon, lat, taxa=None, *, covariates=None,
              batch_size: int = 16384) -> np.ndarray:
    """P(presence) of each requested taxon at (lon, lat) in degrees → (N, len(taxa)).
    `covariates`: (N, C) values of the covariate columns a model trained on them reads."""
    return scipy.special.expit(self.logits(lon, lat, taxa, covariates=covariates,
                                           batch_size=batch_size))

  def logits(self, lon, lat, taxa=None, *, covariates=None,
             batch_size: int = 16384) -> np.ndarray:
    """Species logits h_φ(f_θ(x)) → (N, len(taxa)). Ranking by logits avoids the ties float32
    sigmoids create above |z| ≈ 17."""
    cols = self.columns(taxa)
    return self._map(functools.partial(_logits, cols=jnp.asarray(cols)), lon, lat, batch_size,
                     len(cols), covariates)

  def range_map(self, taxon, *, res: int = 5, threshold: float = 0.5, labels=None):
    """One species' range over the land H3 cells at `res`: a `sinr_jax.export.RangeMap` with
    per-cell `probability`, the `threshold` (`threshold`, or the F1-maximising one when `labels`,
    indices into its `cells` of a known range, are given) and the binary `in_range`."""
    from sinr_jax.export import range_map
    return range_map(self, taxon, h3_res=res, threshold=threshold, labels=labels)

  def save_range_map(self, taxon, path, *, res: int = 5, threshold: float = 0.5,
                     labels=None) -> str:
    """Writes one species' range as `path`, by its suffix: .png (map with the threshold
    contour), .geojson (MultiPolygon of the range cells), .csv / .parquet (taxon_id, h3,
    probability of the range cells), as `python -m sinr_jax.export` does."""
    from sinr_jax.export import save_range_map
    return save_range_map(self, taxon, path, h3_res=res, threshold=threshold, labels=labels)

  def _map(self, fn, lon, lat, batch_size, width, covariates=None):
    lonlat = _lonlat(lon, lat)
    cov = None
    if self.encoder.reads_covariates:
      cov = self.covariate_spec.at(lonlat, covariates)
    elif covariates is not None:
      raise SinrInputError("this model reads no point covariates; leave covariates= out",
                           field="covariates")
    out = []
    for start in range(0, len(lonlat), batch_size):
      chunk = lonlat[start:start + batch_size]
      n = len(chunk)
      pad = ((0, batch_size - n if len(lonlat) > batch_size else 0), (0, 0))
      c = None if cov is None else jnp.asarray(np.pad(cov[start:start + batch_size], pad))
      out.append(np.asarray(fn(self.model, self.params, self.encoder,
                               jnp.asarray(np.pad(chunk, pad)), c))[:n])
    return np.concatenate(out, axis=0) if out else np.zeros((0, width), np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _embed(model, params, encoder, lonlat, covariates=None):
  x = encoder(coords.normalize(lonlat), covariates)
  return model.apply({"params": params}, x, method=RangeModel.embed)


@functools.partial(jax.jit, static_argnums=0)
def _logits(model, params, encoder, lonlat, covariates, cols):
  emb = _embed(model, params, encoder, lonlat, covariates)
  return emb @ params["species_embedding"][cols].T


def taxon_ids(taxa) -> np.ndarray:
  """1-D int64 taxon ids; integral floats (1406.0) pass, other floats, bools and strings raise."""
  ids = np.atleast_1d(np.asarray(taxa))
  if ids.ndim != 1:
    raise SinrInputError(f"taxa must be a 1-d list of taxon ids, got shape {ids.shape}",
                         field="taxa")
  if ids.dtype.kind == "O":  # e.g. a mix of ints and floats, or None
    try:
      ids = np.asarray(ids.tolist(), np.float64)
    except (TypeError, ValueError):
      raise SinrInputError(f"taxa must be integer taxon ids, got {ids[:5].tolist()}",
                           field="taxa") from None
  if ids.dtype.kind == "f":
    exact = 2.0 ** (np.finfo(ids.dtype).nmant + 1)  # above this a float may hold a rounded id
    bad = ~(np.isfinite(ids) & (ids == np.round(ids)) & (np.abs(ids) <= exact))
    if bad.any():
      i = int(np.argmax(bad))
      raise SinrInputError(f"taxon ids must be integers, got {float(ids[i])!r} at index {i} "
                           f"({int(bad.sum())} not exact integers); float ids are accepted only "
                           "when integral, never rounded to another species", field="taxa")
  elif ids.dtype.kind not in "iu":
    raise SinrInputError(f"taxa must be integer taxon ids, got {type(ids.flat[0]).__name__} "
                         f"values {ids[:5].tolist()}", field="taxa")
  return ids.astype(np.int64)


def _lonlat(lon, lat) -> np.ndarray:
  lon = np.atleast_1d(np.asarray(lon, np.float32))
  lat = np.atleast_1d(np.asarray(lat, np.float32))
  if lon.shape != lat.shape or lon.ndim != 1:
    raise SinrInputError(f"lon and lat must be 1-d and of equal length, got {lon.shape} and "
                         f"{lat.shape}", field="lon/lat")
  for name, values, limit in (("lon", lon, 180), ("lat", lat, 90)):
    bad = ~(np.abs(values) <= limit)  # NaN compares False: caught here too
    if bad.any():
      i = int(np.argmax(bad))
      what = f"outside [-{limit}, {limit}]" if np.isfinite(values[i]) else "not finite"
      raise SinrInputError(f"{name}[{i}] = {values[i]} is {what} ({int(bad.sum())} of "
                           f"{len(values)} {name} values are NaN, inf or out of range; row = "
                           "0-based index)", field=name, row=i)
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
  cov_spec = None
  if spec["input"].get("covariates"):
    from sinr_jax.covariates import CovariateSpec
    cov_spec = CovariateSpec.from_json(spec["input"]["covariates"])
    encoder = make_encoder(kind, covariate_stats=(cov_spec.mean, cov_spec.scale))
  elif kind != "coords":
    n_channels = spec["input"]["env_shape"][-1]
    if isinstance(env_raster, np.ndarray):
      raster = validate_raster(env_raster, source="env_raster argument", channels=n_channels)
    else:
      raster = load_raster(env_raster or spec["input"]["env_raster"], channels=n_channels)
  if cov_spec is None:
    encoder = make_encoder(kind, raster)
  model = RangeModel(num_species=m["num_species"], input_dim=m["input_dim"], encoder=m["encoder"],
                     width=m["width"], depth=m["depth"], dropout=m["dropout"])
  state, step = read_checkpoint(os.path.join(run_dir, rundir.CHECKPOINT_DIR), step,
                                error=SinrInputError)
  params = jax.tree.map(jnp.asarray, state["params"])
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                               jnp.zeros((1, m["input_dim"])))["params"])
  if jax.tree.map(lambda a: a.shape, params) != jax.tree.map(lambda a: a.shape, expected):
    raise CheckpointMismatchError("checkpoint parameters do not match model.json",
                                  file=os.path.join(run_dir, rundir.CHECKPOINT_DIR))
  return RangePredictor(model, params, encoder, class_index, run_dir, step, cov_spec)
