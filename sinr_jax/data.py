"""Everything a training run reads: observations (capped), class index, environmental inputs,
and where its random locations (pseudo-absences) come from.

`data.train_file` names a published-format CSV/Parquet; left empty, the run uses the simulated
default world, generated once into `data.world_dir` (default `<workdir>/world`) and reused.
For a user's own species data (sinr_jax/README.md, "Your own presence data"): coordinates in a
named CRS (`data.crs`), a one-species file without a taxon column (`data.taxon_column=""`),
background points (`data.background_file`), covariates from file columns (`data.covariates`) or
regional GeoTIFFs (`data.covariate_rasters`), and a study region (`data.region.*`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from sinr_jax import coords
from sinr_jax import region as region_lib
from sinr_jax.covariates import CovariateSpec, check_finite, column_values, split_names
from sinr_jax.env import load_raster
from sinr_jax.errors import CheckpointMismatchError, SinrInputError
from sinr_jax.features import canonical_kind
from sinr_jax.observations import (TAXON, ClassIndex, Fields, Observations, cap_per_class,
                                   read_observations)

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainingData:
  lonlat: np.ndarray            # (N, 2) float32 degrees, after capping
  labels: np.ndarray            # (N,) int32 class indices
  class_index: ClassIndex
  env_raster: np.ndarray | None
  env_raster_path: str | None
  source: str
  dropped: dict
  world_dir: str | None = None  # the simulated world trained on (None: data.train_file)
  covariates: np.ndarray | None = None        # (N, C) raw covariates of the observations
  covariate_spec: CovariateSpec | None = None
  random_kind: str = "sphere"                 # train.random_locations
  pool_lonlat: np.ndarray | None = None       # (P, 2) degrees: region draws or background points
  pool_covariates: np.ndarray | None = None   # (P, C) their raw covariates
  region: region_lib.Region | None = None
  extra: dict = dataclasses.field(default_factory=dict)   # other columns of the kept rows
  background: Observations | None = None      # data.background_file (inside the region)
  background_covariates: np.ndarray | None = None

  def random_locations(self) -> coords.RandomLocations:
    """The step's random-location source (host arrays; the caller replicates it)."""
    return coords.random_locations(self.random_kind, self.pool_lonlat, self.pool_covariates)

  def columns(self) -> dict[str, np.ndarray]:
    """The per-row arrays a training batch reads."""
    out = {"lonlat": self.lonlat, "label": self.labels}
    if self.covariates is not None:
      out["covariates"] = self.covariates
    return out

  def write_class_index(self, path: str, *, resuming: bool) -> None:
    write_class_index(path, self.class_index, self.source, resuming=resuming)


def write_class_index(path: str, class_index: ClassIndex, source: str, *,
                      resuming: bool) -> None:
  """Saves a run's class index, or checks it against the one a resumed run saved."""
  if resuming and os.path.exists(path):
    saved = ClassIndex.load(path)
    if not np.array_equal(saved.taxa, class_index.taxa):
      raise CheckpointMismatchError(
          f"the run directory was trained on {len(saved)} classes that differ from the "
          f"{len(class_index)} in {source}; use a new --workdir", file=path, field="taxa")
    return
  class_index.save(path)


def world_directory(cfg: ml_collections.ConfigDict, workdir: str) -> str:
  """The simulated world of a run without data.train_file (generated on first use)."""
  world_dir = cfg.data.world_dir or os.path.join(workdir, "world")
  if jax.process_index() == 0:
    ensure_world(world_dir, cfg.data.world.to_dict())
  if jax.process_count() > 1:  # the other processes read what process 0 wrote
    multihost_utils.sync_global_devices("sinr_jax.data.ensure_world")
    ensure_world(world_dir, cfg.data.world.to_dict())
  return world_dir


def ensure_world(world_dir: str, world_cfg: dict) -> str:
  """Generates the simulated world into `world_dir` unless an identical one is already there."""
  from sinr_jax.world import WorldConfig, make_world  # generator only needed for the default data
  try:
    config = WorldConfig(**world_cfg)
  except TypeError as e:
    raise SinrInputError(f"bad data.world settings ({e})", field="data.world") from e
  meta_path = os.path.join(world_dir, "world.json")
  if os.path.exists(meta_path):
    with open(meta_path, encoding="utf-8") as f:
      saved = json.load(f).get("config", {})
    wanted = json.loads(json.dumps(dataclasses.asdict(config)))
    if saved != wanted:
      raise SinrInputError(
          "an existing world was generated with different settings; remove it or set "
          "data.world_dir elsewhere", file=meta_path, field="config")
    return world_dir
  _log.info("generating the simulated world (%d species) into %s", config.num_species, world_dir)
  make_world(config).write(world_dir)
  return world_dir


def load_training_data(cfg: ml_collections.ConfigDict, workdir: str) -> TrainingData:
  d = cfg.data
  raster_path = d.env_raster or None
  world_dir = None
  if d.train_file:
    path = d.train_file
  else:
    world_dir = world_directory(cfg, workdir)
    path = os.path.join(world_dir, "train.csv")
    raster_path = raster_path or os.path.join(world_dir, "env.npy")
  taxa = None
  if d.taxa_file:
    taxa = ClassIndex.load(d.taxa_file).taxa
  spec = covariate_spec(cfg)
  obs = read_observations(path, strict=d.strict, taxa=taxa, fields=fields(d), crs=d.crs,
                          default_taxon=d.taxon_id)
  _check_one_species(obs, d)
  class_index = ClassIndex.from_taxa(obs.taxon_ids if taxa is None else taxa)
  labels = class_index.encode(obs.taxon_ids, source=obs.source, rows=obs.rows)
  keep = cap_per_class(labels, d.cap, d.cap_seed)
  log_capping(labels, keep, d.cap, obs.source)
  check_batch(len(keep), cfg.train.batch_size, obs.source)
  covs = None if spec is None else point_covariates(spec, obs)
  background = read_background(cfg, spec)
  region = region_lib.from_config(d.region, obs.lonlat,
                                  None if background is None else background[0].lonlat)
  if region is not None:
    check_region(region, obs)
    background = restrict_background(background, region)
  kind = cfg.train.random_locations
  pool, pool_cov = random_pool(cfg, kind, region, background, spec)
  if spec is not None:
    spec.fit_scaling(pool_cov if pool_cov is not None else covs[keep])
  uses_env = canonical_kind(cfg.model.input) != "coords"
  raster = load_raster(raster_path) if uses_env and spec is None else None
  return TrainingData(lonlat=np.ascontiguousarray(obs.lonlat[keep], np.float32),
                      labels=labels[keep].astype(np.int32), class_index=class_index,
                      env_raster=raster,
                      env_raster_path=raster_path if uses_env and spec is None else None,
                      source=os.fspath(path), world_dir=world_dir,
                      dropped={**obs.dropped, **({"capped": len(labels) - len(keep)}
                                                 if len(keep) < len(labels) else {})},
                      covariates=None if covs is None else covs[keep],
                      covariate_spec=spec, random_kind=kind, pool_lonlat=pool,
                      pool_covariates=pool_cov, region=region,
                      extra={k: v[keep] for k, v in obs.extra.items()},
                      background=None if background is None else background[0],
                      background_covariates=None if background is None else background[1])


def training_subset(data: TrainingData, cfg, presence_mask, background_mask) -> TrainingData:
  """The rows of `data` a cross-validation fold trains on: its presences, and its background
  as the pseudo-absence pool (or the region, a hull one grown round these presences only), with
  the covariate scaling refitted on that pool."""
  lonlat = data.lonlat[presence_mask]
  check_batch(len(lonlat), cfg.train.batch_size, data.source)
  region = data.region
  if region is not None and cfg.data.region.hull_buffer_km >= 0:
    region = region_lib.from_config(   # grown round the training presences only
        cfg.data.region, lonlat, None if data.background is None else data.background.lonlat)
  background = None
  if data.background is not None:
    bg_cov = None if data.background_covariates is None else data.background_covariates[
        background_mask]
    background = (_subset(data.background, background_mask), bg_cov)
  spec = data.covariate_spec
  if spec is not None:
    spec = dataclasses.replace(spec)
  covs = None if data.covariates is None else data.covariates[presence_mask]
  pool, pool_cov = data.pool_lonlat, data.pool_covariates
  if data.random_kind == "background" or region is not data.region:
    pool, pool_cov = random_pool(cfg, data.random_kind, region, background, spec)
  if spec is not None:
    spec.fit_scaling(pool_cov if pool_cov is not None else covs)
  return dataclasses.replace(
      data, lonlat=lonlat, labels=data.labels[presence_mask], covariates=covs,
      covariate_spec=spec, pool_lonlat=pool, pool_covariates=pool_cov, region=region,
      extra={k: v[presence_mask] for k, v in data.extra.items()},
      background=None if background is None else background[0],
      background_covariates=None if background is None else background[1])


def fields(d) -> Fields:
  return Fields(lon=d.lon_column, lat=d.lat_column, taxon=d.taxon_column or None)


def covariate_spec(cfg) -> CovariateSpec | None:
  """The point covariates the config names (None: env inputs, if any, from the global raster)."""
  d = cfg.data
  columns, rasters = split_names(d.covariates), split_names(d.covariate_rasters)
  if not columns and not rasters:
    return None
  if canonical_kind(cfg.model.input) == "coords":
    raise SinrInputError("covariates are named but model.input is 'coords', which would ignore "
                         "them; use the env or env_coords variant", field="model.input")
  if d.env_raster:
    raise SinrInputError("name either data.env_raster (a global raster) or point covariates "
                         "(data.covariates / data.covariate_rasters), not both",
                         field="data.env_raster")
  return CovariateSpec(columns=columns, rasters=rasters, raster_crs=d.covariate_crs)


def point_covariates(spec: CovariateSpec, obs: Observations, what: str = "") -> np.ndarray:
  """(N, C) raw covariates at the observations: their columns, then the rasters sampled there."""
  cols = column_values(obs, spec.columns)
  rasters = spec.sample_rasters(obs.lonlat)
  check_finite(rasters, spec.names[len(spec.columns):], obs.source, obs.rows,
               f" (the point lies outside a covariate raster or on nodata{what})")
  return np.concatenate([cols, rasters], axis=1)


def _check_one_species(obs: Observations, d) -> None:
  """A file read as one species (no taxon column) must not hold several taxa in taxon_id."""
  if d.taxon_column or TAXON not in obs.extra:
    return
  distinct = {v for v in obs.extra[TAXON].tolist() if v is not None and v == v}  # not NaN
  if len(distinct) > 1:
    raise SinrInputError(f"data.taxon_column is '' (one species per file) but the file's "
                         f"'{TAXON}' column holds {len(distinct)} taxa; set "
                         f"data.taxon_column={TAXON}", file=obs.source, field=TAXON)


def log_capping(labels: np.ndarray, keep: np.ndarray, cap: int, source: str) -> None:
  """Capping never drops rows silently: how many, of how many classes, at which cap."""
  if len(keep) == len(labels):
    return
  counts = np.bincount(labels)
  _log.warning("%s: capped at %d observations per class (data.cap): kept %d of %d (%.1f%%), "
               "%d of %d classes had more; set data.cap=-1 (the capall variant) to keep all",
               source, cap, len(keep), len(labels), 100.0 * len(keep) / len(labels),
               int(np.sum(counts > cap)), int(np.sum(counts > 0)))


def check_batch(n: int, batch_size: int, source: str) -> None:
  if n < batch_size:
    raise SinrInputError(
        f"{n} training observations are fewer than one batch of {batch_size}; lower "
        "train.batch_size (e.g. --config.train.batch_size=64) or use the `small` variant, which "
        "sizes batches for files of a few hundred rows", file=source, field="train.batch_size")


def check_region(region: region_lib.Region, obs: Observations) -> None:
  inside = region.contains(obs.lonlat)
  if not inside.any():
    raise SinrInputError(f"none of the {len(obs)} presences of {obs.source} lies inside the "
                         "region" + (" on land" if region.land_only else "") + "; check the "
                         "polygon's coordinates (lon, lat order) and data.crs", file=region.source,
                         field="data.region")
  _log.info("region %s holds %d of %d presences", region.describe(), int(inside.sum()), len(obs))


def read_background(cfg, spec: CovariateSpec | None) -> tuple | None:
  """(Observations, raw covariates or None) of data.background_file."""
  d = cfg.data
  if not d.background_file:
    return None
  bg = read_observations(d.background_file, strict=d.strict,
                         fields=Fields(d.lon_column, d.lat_column, None), crs=d.crs,
                         extra_columns=None)
  cov = None if spec is None else point_covariates(spec, bg)
  _log.info("%s: %d background points", bg.source, len(bg))
  return bg, cov


def restrict_background(background, region: region_lib.Region):
  """The background points inside the study region (the others are counted in the log)."""
  if background is None:
    return None
  bg, cov = background
  inside = region.contains(bg.lonlat)
  if not inside.any():
    raise SinrInputError("no background point lies inside the region", file=bg.source,
                         field="data.region")
  if not inside.all():
    _log.warning("%s: %d of %d background points lie outside the region and are not used",
                 bg.source, int((~inside).sum()), len(bg))
    bg, cov = _subset(bg, inside), None if cov is None else cov[inside]
  return bg, cov


def _subset(obs: Observations, mask: np.ndarray) -> Observations:
  return dataclasses.replace(obs, lonlat=obs.lonlat[mask], taxon_ids=obs.taxon_ids[mask],
                             rows=obs.rows[mask], extra={k: v[mask] for k, v in obs.extra.items()})


def random_pool(cfg, kind: str, region, background, spec: CovariateSpec | None):
  """(pool lon/lat, pool raw covariates) behind train.random_locations (None, None: global)."""
  if kind in coords.SAMPLERS:
    if spec is not None:
      raise SinrInputError(f"random locations '{kind}' are drawn over the globe, where the point "
                           "covariates are unknown; use train.random_locations=background or "
                           "region", field="train.random_locations")
    return None, None
  if kind == "background":
    if background is None:
      raise SinrInputError("train.random_locations=background needs data.background_file",
                           field="data.background_file")
    bg, cov = background
    return bg.lonlat.astype(np.float32), cov
  if region is None:
    raise SinrInputError("train.random_locations=region needs a region: data.region.polygon, "
                         ".bbox or .hull_buffer_km", field="data.region")
  if spec is not None and spec.columns:
    raise SinrInputError(f"pseudo-absences drawn in the region have no values of the covariate "
                         f"columns {list(spec.columns)}; use train.random_locations=background "
                         "(the background file carries them) or GeoTIFF covariates",
                         field="train.random_locations")
  size = int(cfg.data.region.pool_size)
  pool = region.sample(size, seed=cfg.data.region.seed)
  if spec is None:
    return pool.astype(np.float32), None
  cov = spec.sample_rasters(pool)
  ok = np.isfinite(cov).all(axis=1)
  if ok.sum() < size // 2:
    raise SinrInputError(f"only {int(ok.sum())} of {size} points drawn in the region have values "
                         "in every covariate raster; do the rasters cover the region?",
                         file=spec.rasters[0], field="data.covariate_rasters")
  if not ok.all():
    _log.info("%d of %d region points lie outside the covariate rasters or on nodata; the pool "
              "keeps the other %d", int((~ok).sum()), size, int(ok.sum()))
  return pool[ok].astype(np.float32), cov[ok]
