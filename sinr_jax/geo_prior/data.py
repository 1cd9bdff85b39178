"""Everything a geo-prior run reads: observations with location, day of year and photographer.

Sources (data.format):
  csv   data.train_file in the SINR/iNaturalist CSV (or Parquet) layout with `observed_on` and
        `user_id` columns; empty: the simulated world (generated once into data.world_dir,
        default <workdir>/world, with the seasonal species and photographer preferences the
        config's data.world asks for)
  inat  data.train_file = an iNat2017/2018 `*_locations.json`, data.annotations_file = the
        split's annotations JSON (inat.py)
Rows with bad coordinates are dropped and counted (data.strict raises); rows with a missing,
unparseable or future date follow data.bad_dates ("drop" and count, or "error") when the model
uses dates; rows without a user id go to the "other" photographer. Classes are the sorted unique
taxon ids of the rows kept. The per-class cap (data.cap) is not applied here: EpochSampler draws
a fresh subset of at most data.cap rows per class every epoch (train.py).
"""
from __future__ import annotations

import dataclasses
import logging
import os

import ml_collections
import numpy as np

from sinr_jax.data import world_directory
from sinr_jax.errors import SinrInputError
from sinr_jax.geo_prior import dates as date_rules
from sinr_jax.geo_prior.inat import parse_inat_dates, read_inat_locations
from sinr_jax.geo_prior.photographers import PhotographerIndex
from sinr_jax.observations import ClassIndex, read_observations

_log = logging.getLogger(__name__)
FORMATS = ("csv", "inat")
DATE_COLUMN, USER_COLUMN = "observed_on", "user_id"


@dataclasses.dataclass
class GeoPriorData:
  lonlat: np.ndarray            # (N, 2) float32 degrees
  day: np.ndarray               # (N,) float32 day-of-year fraction (0 when dates are unused)
  labels: np.ndarray            # (N,) int32 class index
  users: np.ndarray             # (N,) int32 photographer index (0 when photographers are unused)
  class_index: ClassIndex
  photographers: PhotographerIndex | None
  source: str
  dropped: dict
  world_dir: str | None = None


def _read_rows(cfg, workdir):
  """(lonlat, taxon ids, date values, user values, rows, source, dropped, world_dir)."""
  d, m = cfg.data, cfg.model
  if d.format == "inat":
    if not d.train_file or not d.annotations_file:
      raise SinrInputError("data.format=inat needs data.train_file (a *_locations.json) and "
                           "data.annotations_file (the split's annotations JSON)",
                           field="data.annotations_file")
    g = read_inat_locations(d.train_file, d.annotations_file, strict=d.strict)
    return g.lonlat, g.taxon_ids, g.dates, g.users, g.rows, g.source, dict(g.dropped), None
  world_dir, path = None, d.train_file
  if not path:
    world_dir = world_directory(cfg, workdir)
    path = os.path.join(world_dir, "train.csv")
  extra = ([DATE_COLUMN] if m.use_date else []) + ([USER_COLUMN] if m.photographers else [])
  obs = read_observations(path, strict=d.strict, extra_columns=extra)
  n = len(obs)
  dates = obs.extra.get(DATE_COLUMN, np.full(n, None, object))
  users = obs.extra.get(USER_COLUMN, np.full(n, None, object))
  return (obs.lonlat, obs.taxon_ids, dates, users, obs.rows, obs.source, dict(obs.dropped),
          world_dir)


def load_geo_prior_data(cfg: ml_collections.ConfigDict, workdir: str) -> GeoPriorData:
  d, m = cfg.data, cfg.model
  if d.format not in FORMATS:
    raise SinrInputError(f"unknown data.format {d.format!r}; choose one of {', '.join(FORMATS)}",
                         field="data.format")
  lonlat, taxa, dates, users, rows, source, dropped, world_dir = _read_rows(cfg, workdir)
  keep = np.ones(len(taxa), bool)
  day = np.zeros(len(taxa))
  if m.use_date:
    parse = parse_inat_dates if d.format == "inat" else date_rules.parse_dates
    day, reason = parse(dates, max_date=date_rules.parse_max_date(d.max_date))
    counts = date_rules.apply_policy(reason, d.bad_dates, dates, file=source, rows=rows,
                                     field="date" if d.format == "inat" else DATE_COLUMN)
    keep = reason == 0
    if counts:
      _log.warning("%s: dropped %d rows with bad dates: %s", source, int((~keep).sum()), counts)
      dropped.update(counts)
    if not keep.any():
      raise SinrInputError(f"no row has a usable date (dropped: {counts})", file=source,
                           field=DATE_COLUMN)
  wanted = None
  if d.taxa_file:
    wanted = ClassIndex.load(d.taxa_file).taxa
    other = keep & ~np.isin(taxa, wanted)
    if other.any():
      dropped["other_taxon"] = dropped.get("other_taxon", 0) + int(other.sum())
      keep &= ~other
  if wanted is not None and not np.isin(wanted, taxa[keep]).all():
    missing = wanted[~np.isin(wanted, taxa[keep])]
    raise SinrInputError(f"{len(missing)} taxa of data.taxa_file have no usable observations, so "
                         f"their classes cannot be trained: {missing[:10].tolist()}", file=source,
                         field="taxon_id")
  class_index = ClassIndex.from_taxa(taxa[keep]) if wanted is None else ClassIndex(wanted)
  labels = class_index.encode(taxa[keep], source=source, rows=rows[keep])
  photographers, user_idx = None, np.zeros(int(keep.sum()), np.int32)
  if m.photographers:
    photographers = PhotographerIndex.from_users(users[keep], d.min_photographer_obs)
    user_idx = photographers.encode(users[keep])
  return GeoPriorData(lonlat=np.ascontiguousarray(lonlat[keep], np.float32),
                      day=day[keep].astype(np.float32), labels=labels.astype(np.int32),
                      users=user_idx, class_index=class_index, photographers=photographers,
                      source=os.fspath(source), dropped=dropped, world_dir=world_dir)
