"""Reader of the iNat2017/iNat2018 geo-prior files, as released with the public geo prior code.

Two JSON files per split (the user downloads them; nothing is fetched):
  <split>20NN.json            the competition's COCO-style annotations: "images" [{"id", ...}],
                              "annotations" [{"image_id", "category_id", ...}], "categories"
  <split>20NN_locations.json  a list with one entry per image: {"id" (the image id), "lat", "lon",
                              "loc_uncert", "date", "date_c", "user_id"}; lat/lon/date/user_id
                              are null where unknown
The class of an image is its `category_id` (the taxon id of this reader's output). Dates: the
"date" text (e.g. "2012-06-16 17:09:47+00:00") by the rules of dates.py; where it is null but
"date_c" (the release's date as a fraction of the year) is a number in [0, 1], that is used.

Images without a location entry or with a null/invalid latitude or longitude are dropped and
counted (they cannot train a location prior); `strict` raises on the first invalid coordinate
instead. Entries are named by their 0-based index in the locations list and their image id.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os

import numpy as np

from sinr_jax.errors import SinrInputError
from sinr_jax.geo_prior import dates as date_rules

DROP_REASONS = ("no_location_entry", "no_location", "bad_coordinate")


@dataclasses.dataclass(frozen=True, eq=False)
class InatGeoData:
  image_ids: np.ndarray   # (N,) int64
  taxon_ids: np.ndarray   # (N,) int64 category ids
  lonlat: np.ndarray      # (N, 2) float64
  dates: np.ndarray       # (N,) object: date text, a date_c float, or None
  users: np.ndarray       # (N,) object: user ids (None where unknown)
  rows: np.ndarray        # (N,) int64 0-based entry index in the locations file
  source: str
  dropped: dict


def _load_json(path, what: str):
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise SinrInputError(f"{what} not found", file=path)
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise SinrInputError(f"cannot read {what} as JSON ({e})", file=path) from e


def _labels(ann, path) -> dict[int, int]:
  if not isinstance(ann, dict) or "annotations" not in ann:
    raise SinrInputError("expected a COCO-style object with 'annotations' (a test split has no "
                         "labels and cannot train a prior)", file=path, field="annotations")
  out = {}
  for i, a in enumerate(ann["annotations"]):
    try:
      out[int(a["image_id"])] = int(a["category_id"])
    except (KeyError, TypeError, ValueError) as e:
      raise SinrInputError(f"annotation {i} (0-based) lacks an integer image_id/category_id "
                           f"({e!r})", file=path, field="annotations") from e
  return out


def read_inat_locations(locations_path, annotations_path, *, strict: bool = False) -> InatGeoData:
  """The labelled images of one split that have a usable location (see the module docstring)."""
  locs = _load_json(locations_path, "geo-prior locations file")
  labels = _labels(_load_json(annotations_path, "annotations file"), annotations_path)
  path = os.fspath(locations_path)
  if not isinstance(locs, list):
    raise SinrInputError("expected a JSON list of {id, lat, lon, date, user_id} entries",
                         file=path)
  by_id = {}
  for i, e in enumerate(locs):
    if not isinstance(e, dict) or "id" not in e:
      raise SinrInputError(f"entry {i} (0-based) is not an object with an 'id'", file=path,
                           row=i, field="id")
    by_id[int(e["id"])] = i
  dropped = dict.fromkeys(DROP_REASONS, 0)
  keep = []
  for image_id in sorted(labels):
    i = by_id.get(image_id)
    if i is None:
      dropped["no_location_entry"] += 1
      continue
    e = locs[i]
    lat, lon = e.get("lat"), e.get("lon")
    if lat is None or lon is None:
      dropped["no_location"] += 1
      continue
    try:
      lat, lon = float(lat), float(lon)
      ok = abs(lat) <= 90 and abs(lon) <= 180  # False for NaN
    except (TypeError, ValueError):
      ok = False
    if not ok:
      if strict:
        raise SinrInputError(f"image {image_id}: invalid latitude/longitude {e.get('lat')!r}, "
                             f"{e.get('lon')!r} (strict=False drops and counts such entries)",
                             file=path, row=i, field="lat/lon")
      dropped["bad_coordinate"] += 1
      continue
    date = e.get("date")
    if date is None and isinstance(e.get("date_c"), (int, float)) and 0 <= e["date_c"] <= 1:
      date = float(e["date_c"])
    keep.append((image_id, labels[image_id], lon, lat, date, e.get("user_id"), i))
  if not keep:
    raise SinrInputError(f"no labelled image with a usable location (dropped: {dropped})",
                         file=path)
  ids, taxa, lon, lat, when, users, rows = zip(*keep)
  return InatGeoData(image_ids=np.asarray(ids, np.int64), taxon_ids=np.asarray(taxa, np.int64),
                     lonlat=np.stack([lon, lat], 1).astype(np.float64),
                     dates=np.asarray(when, dtype=object), users=np.asarray(users, dtype=object),
                     rows=np.asarray(rows, np.int64), source=path,
                     dropped={k: v for k, v in dropped.items() if v})


def parse_inat_dates(values, *, max_date: datetime.date | None = None):
  """dates.parse_dates, with date_c fractions (floats) taken as they are."""
  values = np.asarray(values, dtype=object)
  is_frac = np.array([isinstance(v, float) for v in values.tolist()], bool)
  day, reason = date_rules.parse_dates(np.where(is_frac, None, values), max_date=max_date)
  day[is_frac] = np.asarray(values[is_frac], np.float64)
  reason[is_frac] = 0
  return day, reason
