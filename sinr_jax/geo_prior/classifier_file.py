"""An image classifier's outputs for the geo prior: probabilities, true classes, where and when.

  <preds>.npz   model_to_taxa (C,) taxon id of every classifier class (unique)
                labels (N,) true class index
                probs  (N, C) dense probabilities (rows sum to 1), or
                probs + inds (N, k): top-k probabilities and their class indices (the published
                       geo_prior_model_preds.npz layout; rows sum to at most 1)
                features (N, F), optional: the classifier's features (the Tang et al. baseline)
  <meta>.csv    one row per image, in order: latitude, longitude (empty/NaN: no location),
                observed_on (optional; empty: no date), any `subset_<name>` 0/1 columns (results
                are also reported on those images), other columns ignored
Problems raise SinrInputError naming file, row and field: a missing array, NaN or negative
probabilities, rows that do not sum to 1 (dense) or exceed 1 (top-k), duplicate taxa, class
indices out of range, non-numeric or out-of-range coordinates, a row count that differs from
the predictions. Bad dates (missing, unparseable, future) leave the image without a date (it
gets the uniform prior from a date-aware model) and are counted, or raise with
bad_dates="error". The npz is read with allow_pickle=False.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import zipfile

import numpy as np
import pandas as pd

from sinr_jax.errors import SinrInputError
from sinr_jax.geo_prior import dates as date_rules

SUM_TOLERANCE = 1e-3
SUBSET_PREFIX = "subset_"


@dataclasses.dataclass(frozen=True, eq=False)
class ClassifierOutputs:
  log_probs: np.ndarray       # (N, k) float64 log P(y|I) of the candidates (−inf where 0)
  inds: np.ndarray            # (N, k) int64 candidate class indices (k = C when dense)
  labels: np.ndarray          # (N,) int64
  model_to_taxa: np.ndarray   # (C,) int64
  lonlat: np.ndarray          # (N, 2) float64, NaN where the image has no location
  day: np.ndarray             # (N,) float64 day-of-year fraction, NaN where no (usable) date
  features: np.ndarray | None
  subsets: dict[str, np.ndarray]
  dense: bool
  bad_dates: dict
  path: str

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, rows: np.ndarray) -> "ClassifierOutputs":
    """The outputs of images `rows` (e.g. a validation split)."""
    return dataclasses.replace(
        self, log_probs=self.log_probs[rows], inds=self.inds[rows], labels=self.labels[rows],
        lonlat=self.lonlat[rows], day=self.day[rows],
        features=None if self.features is None else self.features[rows],
        subsets={k: v[rows] for k, v in self.subsets.items()})

  def dense_log_probs(self, floor: float = 1e-6) -> np.ndarray:
    """(N, C) log P(y|I), classes outside a row's top-k at log(floor)."""
    out = np.full((len(self), len(self.model_to_taxa)), np.log(floor))
    np.put_along_axis(out, self.inds, np.maximum(self.log_probs, np.log(floor)), axis=1)
    return out


def _fail(msg, path, field=None, row=None):
  raise SinrInputError(msg, file=path, field=field, row=row)


def _first_bad_row(bad: np.ndarray) -> int:
  return int(np.argmax(bad.reshape(len(bad), -1).any(1)))


def _read_npz(path: str) -> dict:
  if not os.path.isfile(path):
    _fail("classifier predictions file not found", path)
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except ValueError as e:
    if "pickle" in str(e):
      _fail("an array is a Python pickle (object dtype); refusing to read it", path)
    _fail(f"cannot read npz ({e})", path)
  except (OSError, EOFError, zipfile.BadZipFile) as e:
    _fail(f"cannot read npz ({e})", path)


def _check_probs(probs, inds, num_classes, n, path):
  if probs.ndim != 2 or probs.shape[0] != n or probs.dtype.kind != "f" or probs.shape[1] < 1:
    _fail(f"expected float (N={n}, k or C), got {probs.dtype}{probs.shape}", path, "probs")
  nan = ~np.isfinite(probs)
  if nan.any():
    _fail("probabilities must be finite (NaN or inf found; row = 0-based image index)", path,
          "probs", _first_bad_row(nan))
  for bad, what in ((probs < 0, "negative"), (probs > 1 + SUM_TOLERANCE, "above 1")):
    if bad.any():
      _fail(f"probability {what} (row = 0-based image index)", path, "probs", _first_bad_row(bad))
  sums = probs.sum(1, dtype=np.float64)
  if inds is None:
    if probs.shape[1] != num_classes:
      _fail(f"dense probabilities need one column per class of model_to_taxa ({num_classes}), "
            f"got {probs.shape[1]} (top-k files also hold 'inds')", path, "probs")
    bad = np.abs(sums - 1) > SUM_TOLERANCE
    if bad.any():
      i = int(np.argmax(bad))
      _fail(f"probabilities sum to {sums[i]:.6f}, not 1 (row = 0-based image index)", path,
            "probs", i)
    return
  if inds.shape != probs.shape or inds.dtype.kind not in "iu":
    _fail(f"expected integer {probs.shape}, got {inds.dtype}{inds.shape}", path, "inds")
  bad = (inds < 0) | (inds >= num_classes)
  if bad.any():
    _fail(f"class index outside 0..{num_classes - 1} (row = 0-based image index)", path, "inds",
          _first_bad_row(bad))
  srt = np.sort(inds, axis=1)
  dup = (np.diff(srt, axis=1) == 0).any(1)
  if dup.any():
    _fail("a class appears twice among an image's top-k (row = 0-based image index)", path,
          "inds", int(np.argmax(dup)))
  bad = sums > 1 + SUM_TOLERANCE
  if bad.any():
    i = int(np.argmax(bad))
    _fail(f"top-k probabilities sum to {sums[i]:.6f} > 1 (row = 0-based image index)", path,
          "probs", i)


def _read_meta(path: str, n: int, bad_dates: str, max_date):
  if not os.path.isfile(path):
    _fail("image metadata file not found", path)
  try:
    meta = pd.read_csv(path, dtype=str, keep_default_na=False)
  except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
    _fail(f"cannot parse CSV ({e})", path)
  if len(meta) != n:
    _fail(f"{len(meta)} rows but the predictions have {n} images", path)
  lonlat = np.full((n, 2), np.nan)
  for j, col in enumerate(("longitude", "latitude")):
    if col not in meta.columns:
      _fail("missing column", path, col)
    text = meta[col].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
    empty = text.str.lower().isin(["", "nan", "na", "null", "none"]).to_numpy()
    bad = np.isnan(values) & ~empty
    if bad.any():
      i = int(np.argmax(bad))
      _fail(f"not a number: {text.iloc[i]!r}", path, col, i + 2)
    limit = 180 if col == "longitude" else 90
    out = np.abs(values) > limit
    if out.any():
      i = int(np.argmax(out))
      _fail(f"{values[i]} outside [-{limit}, {limit}]", path, col, i + 2)
    lonlat[:, j] = values
  lonlat[np.isnan(lonlat).any(1)] = np.nan  # a half-known location is no location
  day, counts = np.full(n, np.nan), {}
  if "observed_on" in meta.columns:
    values = meta["observed_on"].to_numpy(object)
    day, reason = date_rules.parse_dates(values, max_date=max_date)
    counts = date_rules.apply_policy(reason, bad_dates, values, file=path,
                                     rows=np.arange(2, n + 2))
  subsets = {}
  for col in meta.columns:
    if col.startswith(SUBSET_PREFIX):
      v = pd.to_numeric(meta[col], errors="coerce").to_numpy()
      bad = ~np.isin(v, (0, 1))
      if bad.any():
        i = int(np.argmax(bad))
        _fail(f"subset flags must be 0 or 1, got {meta[col].iloc[i]!r}", path, col, i + 2)
      subsets[col[len(SUBSET_PREFIX):]] = v.astype(bool)
  return lonlat, day, counts, subsets


def read_classifier(preds_path, meta_path, *, bad_dates: str = "drop",
                    max_date: datetime.date | None = None) -> ClassifierOutputs:
  path = os.fspath(preds_path)
  z = _read_npz(path)
  for key in ("probs", "labels", "model_to_taxa"):
    if key not in z:
      _fail("missing array", path, key)
  m2t = np.asarray(z["model_to_taxa"])
  if m2t.ndim != 1 or len(m2t) == 0 or m2t.dtype.kind not in "iu":
    _fail(f"expected a non-empty 1-d integer array, got {m2t.dtype}{m2t.shape}", path,
          "model_to_taxa")
  uniq, first, counts = np.unique(m2t, return_index=True, return_counts=True)
  if (counts > 1).any():
    t = uniq[np.argmax(counts > 1)]
    _fail(f"taxon {t} names two classes (indices {np.flatnonzero(m2t == t)[:2].tolist()}): the "
          "class list must be unique", path, "model_to_taxa")
  labels = np.asarray(z["labels"])
  if labels.ndim != 1 or labels.dtype.kind not in "iu":
    _fail(f"expected a 1-d integer array, got {labels.dtype}{labels.shape}", path, "labels")
  bad = (labels < 0) | (labels >= len(m2t))
  if bad.any():
    _fail(f"class index outside 0..{len(m2t) - 1} (row = 0-based image index)", path, "labels",
          int(np.argmax(bad)))
  n = len(labels)
  probs, inds = np.asarray(z["probs"]), z.get("inds")
  _check_probs(probs, inds, len(m2t), n, path)
  features = z.get("features")
  if features is not None:
    if features.ndim != 2 or features.shape[0] != n or not np.isfinite(features).all():
      _fail(f"expected finite (N={n}, F) features, got {features.dtype}{features.shape}", path,
            "features")
    features = features.astype(np.float32)
  dense = inds is None
  if dense:
    inds = np.broadcast_to(np.arange(len(m2t)), probs.shape)
  lonlat, day, counts, subsets = _read_meta(os.fspath(meta_path), n, bad_dates, max_date)
  with np.errstate(divide="ignore"):
    log_probs = np.log(probs.astype(np.float64))
  return ClassifierOutputs(log_probs=log_probs, inds=np.ascontiguousarray(inds, np.int64),
                           labels=labels.astype(np.int64), model_to_taxa=m2t.astype(np.int64),
                           lonlat=lonlat, day=day, features=features, subsets=subsets,
                           dense=dense, bad_dates=counts, path=path)
