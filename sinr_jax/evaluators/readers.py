"""Readers for the published SINR evaluation files (DESIGN §4), each validated at the boundary.

Layout of a data directory (the reference's unzipped `data/`; a flat directory also works):
  eval/snt/snt_res_5.npy              pickled dict (read only with allow_pickle=True)
  eval/iucn/iucn_res_5.json           {"locs": [[lon, lat], ...], "taxa_presence": {id: [cell idx]}}
  eval/geo_prior/geo_prior_model_preds.npz, eval/geo_prior/geo_prior_model_meta.csv
  eval/geo_feature/<LAYER>.tif        GeoTIFF rasters (layers.json, if present, lists them)
  masks/USA_MASK.tif                  1 inside the contiguous US
Every problem raises SinrInputError naming the file and the field (and the 0-based index of the
offending entry, or the 1-based CSV line).
"""
from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from sinr_jax.errors import SinrInputError
from sinr_jax.evaluators.pickled_npy import load_pickled_npy

SNT_FILE = "snt_res_5.npy"
IUCN_FILE = "iucn_res_5.json"
GEO_PRIOR_PREDS = "geo_prior_model_preds.npz"
GEO_PRIOR_META = "geo_prior_model_meta.csv"
USA_MASK = "USA_MASK.tif"
LAYERS_MANIFEST = "layers.json"  # ours: lets a directory name its own layers (simulated data)
# The reference's file names, misspellings included.
GEO_FEATURE_LAYERS = ("ABOVE_GROUND_CARBON", "ELEVATION", "LEAF_AREA_INDEX", "NON_TREE_VEGITATED",
                      "NOT_VEGITATED", "POPULATION_DENSITY", "SNOW_COVER", "SOIL_MOISTURE",
                      "TREE_COVER")
LOG1P_LAYERS = ("POPULATION_DENSITY",)


def locate(data_dir: str | os.PathLike, task: str, name: str) -> Path:
  """`data_dir/eval/<task>/<name>`, `data_dir/<task>/<name>` or `data_dir/<name>`, first found."""
  d = Path(data_dir)
  if not d.is_dir():
    raise SinrInputError("evaluation data directory not found", file=d)
  tries = [d / "eval" / task / name, d / task / name, d / name]
  for p in tries:
    if p.exists():
      return p
  raise SinrInputError(f"{name} not found (looked for {', '.join(str(p) for p in tries)})",
                       file=d, field=task)


def locate_mask(data_dir: str | os.PathLike) -> Path:
  d = Path(data_dir)
  for p in (d / "masks" / USA_MASK, d / "eval" / "geo_feature" / USA_MASK, d / USA_MASK):
    if p.exists():
      return p
  raise SinrInputError(f"{USA_MASK} not found (expected under masks/)", file=d, field="geo_feature")


def _int_array(x, path, field) -> np.ndarray:
  a = np.asarray(x)
  if a.ndim != 1 or not (a.size == 0 or np.issubdtype(a.dtype, np.integer)):
    raise SinrInputError(f"expected a 1-d integer array, got {a.dtype}{a.shape}", file=path,
                         field=field)
  return a.astype(np.int64)


def _lonlat(x, path, field) -> np.ndarray:
  try:
    a = np.asarray(x, np.float64)
  except (TypeError, ValueError) as e:
    raise SinrInputError(f"expected numbers ({e})", file=path, field=field) from e
  if a.ndim != 2 or a.shape[1] != 2:
    raise SinrInputError(f"expected an (N, 2) array of (lon, lat), got shape {a.shape}",
                         file=path, field=field)
  bad = ~np.isfinite(a).all(1) | (np.abs(a[:, 0]) > 180) | (np.abs(a[:, 1]) > 90)
  if bad.any():
    i = int(np.argmax(bad))
    raise SinrInputError(f"location index {i} = {a[i].tolist()} is not a valid (lon, lat)",
                         file=path, field=field)
  return a.astype(np.float32)


def _unique_taxa(taxa: np.ndarray, path, field) -> np.ndarray:
  u, counts = np.unique(taxa, return_counts=True)
  if (counts > 1).any():
    raise SinrInputError(f"taxon {int(u[np.argmax(counts > 1)])} is listed twice", file=path,
                         field=field)
  return taxa


@dataclasses.dataclass(frozen=True, eq=False)
class SnTData:
  taxa: np.ndarray                 # (S,) int64
  obs_locs: np.ndarray             # (N, 2) float32 lon, lat
  loc_indices: list[np.ndarray]    # per species: int64 indices into obs_locs
  labels: list[np.ndarray]         # per species: bool presence (label > 0), as loc_indices
  path: str


def read_snt(path: str | os.PathLike, *, allow_pickle: bool = False) -> SnTData:
  """The S&T file: a pickled dict, so `allow_pickle=True` is required (see pickled_npy)."""
  d = load_pickled_npy(path, allow_pickle=allow_pickle, what="the S&T file")
  path = os.fspath(path)
  if not isinstance(d, dict):
    raise SinrInputError(f"expected a pickled dict, got {type(d).__name__}", file=path)
  for key in ("taxa", "obs_locs", "loc_indices_per_species", "labels_per_species"):
    if key not in d:
      raise SinrInputError("missing key", file=path, field=key)
  taxa = _unique_taxa(_int_array(d["taxa"], path, "taxa"), path, "taxa")
  locs = _lonlat(d["obs_locs"], path, "obs_locs")
  idx_all, lab_all = d["loc_indices_per_species"], d["labels_per_species"]
  for key, v in (("loc_indices_per_species", idx_all), ("labels_per_species", lab_all)):
    if isinstance(v, (str, bytes, dict)) or not hasattr(v, "__len__") or len(v) != len(taxa):
      raise SinrInputError(f"expected one entry per taxon ({len(taxa)})", file=path, field=key)
  indices, labels = [], []
  for i in range(len(taxa)):
    idx = _int_array(idx_all[i], path, f"loc_indices_per_species[{i}]")
    if idx.size and (idx.min() < 0 or idx.max() >= len(locs)):
      raise SinrInputError(f"location index out of range 0..{len(locs) - 1}", file=path,
                           field=f"loc_indices_per_species[{i}]")
    lab = np.asarray(lab_all[i])
    numeric = lab.size == 0 or (lab.dtype.kind in "biuf" and np.isfinite(lab).all()
                                and lab.min() >= 0)
    if lab.shape != idx.shape or not numeric:
      raise SinrInputError(f"expected {idx.shape[0]} labels (0 absent, > 0 present), got "
                           f"{lab.dtype}{lab.shape}", file=path, field=f"labels_per_species[{i}]")
    indices.append(idx)
    labels.append(lab > 0)  # the reference's reading: any positive value is a presence
  return SnTData(taxa=taxa, obs_locs=locs, loc_indices=indices, labels=labels, path=path)


@dataclasses.dataclass(frozen=True, eq=False)
class IUCNData:
  taxa: np.ndarray                 # (S,) int64 in file order
  locs: np.ndarray                 # (N, 2) float32 lon, lat of the cells
  presence: list[np.ndarray]       # per species: int64 indices of cells inside the range
  path: str


def read_iucn(path: str | os.PathLike) -> IUCNData:
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise SinrInputError("the IUCN file not found", file=path)
  try:
    with open(path, encoding="utf-8") as f:
      d = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise SinrInputError(f"not valid JSON ({e})", file=path) from e
  if not isinstance(d, dict):
    raise SinrInputError("expected a JSON object", file=path)
  for key in ("locs", "taxa_presence"):
    if key not in d:
      raise SinrInputError("missing key", file=path, field=key)
  locs = _lonlat(d["locs"], path, "locs")
  tp = d["taxa_presence"]
  if not isinstance(tp, dict):
    raise SinrInputError("expected an object {taxon_id: [cell indices]}", file=path,
                         field="taxa_presence")
  taxa, presence = [], []
  for key, cells in tp.items():
    field = f"taxa_presence[{key}]"
    try:
      taxa.append(int(key))
    except ValueError:
      raise SinrInputError("taxon id is not an integer", file=path, field=field) from None
    idx = np.asarray(cells) if isinstance(cells, list) else np.zeros((0, 0))
    if idx.ndim != 1 or not (idx.size == 0 or idx.dtype.kind in "iu"):
      raise SinrInputError("expected a list of integer cell indices", file=path, field=field)
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(locs)):
      raise SinrInputError(f"cell index out of range 0..{len(locs) - 1}", file=path, field=field)
    presence.append(np.unique(idx))
  taxa = _unique_taxa(np.asarray(taxa, np.int64), path, "taxa_presence")
  return IUCNData(taxa=taxa, locs=locs, presence=presence, path=path)


@dataclasses.dataclass(frozen=True, eq=False)
class GeoPriorData:
  probs: np.ndarray          # (N, k) float32 classifier top-k probabilities, top-1 last
  inds: np.ndarray           # (N, k) int64 class indices of those probabilities
  labels: np.ndarray         # (N,) int64 true class index
  model_to_taxa: np.ndarray  # (C,) int64 taxon id of every classifier class
  lonlat: np.ndarray         # (N, 2) float64 image location, NaN where unknown
  path: str


def read_geo_prior(preds_path: str | os.PathLike, meta_path: str | os.PathLike) -> GeoPriorData:
  p = os.fspath(preds_path)
  if not os.path.isfile(p):
    raise SinrInputError("the geo-prior predictions file not found", file=p)
  keys = ("probs", "inds", "labels", "model_to_taxa")
  try:
    with np.load(p, allow_pickle=False) as z:
      arrays = {k: z[k] for k in keys if k in z.files}
  except ValueError as e:
    if "pickle" in str(e):
      raise SinrInputError("an array is a Python pickle (object dtype); refusing to read it",
                           file=p) from e
    raise SinrInputError(f"cannot read npz ({e})", file=p) from e
  except (OSError, EOFError, zipfile.BadZipFile) as e:
    raise SinrInputError(f"cannot read npz ({e})", file=p) from e
  missing = [k for k in keys if k not in arrays]
  if missing:
    raise SinrInputError("missing array", file=p, field=missing[0])
  probs, inds, labels, m2t = (arrays[k] for k in keys)
  m2t = _int_array(m2t, p, "model_to_taxa")
  labels = _int_array(labels, p, "labels")
  n, c = len(labels), len(m2t)
  if probs.ndim != 2 or probs.shape[0] != n or probs.shape[1] < 1 or probs.dtype.kind != "f":
    raise SinrInputError(f"expected float ({n}, k), got {probs.dtype}{probs.shape}", file=p,
                         field="probs")
  if inds.shape != probs.shape or inds.dtype.kind not in "iu":
    raise SinrInputError(f"expected integer {probs.shape}, got {inds.dtype}{inds.shape}", file=p,
                         field="inds")
  if not (np.isfinite(probs).all() and probs.min(initial=0) >= 0 and probs.max(initial=0) <= 1):
    raise SinrInputError("probabilities must be finite and in [0, 1]", file=p, field="probs")
  for name, a in (("inds", inds), ("labels", labels)):
    bad = (a < 0) | (a >= c)
    if bad.any():
      raise SinrInputError(f"class index out of range 0..{c - 1} at row "
                           f"{int(np.argmax(bad.reshape(n, -1).any(1)))}", file=p, field=name)
  lonlat = _read_meta(meta_path, n)
  return GeoPriorData(probs=probs.astype(np.float32), inds=inds.astype(np.int64), labels=labels,
                      model_to_taxa=m2t, lonlat=lonlat, path=p)


def _read_meta(meta_path, n: int) -> np.ndarray:
  m = os.fspath(meta_path)
  if not os.path.isfile(m):
    raise SinrInputError("the geo-prior image metadata file not found", file=m)
  try:
    meta = pd.read_csv(m, usecols=lambda c: c in ("latitude", "longitude"))
  except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
    raise SinrInputError(f"cannot parse CSV ({e})", file=m) from e
  for col in ("latitude", "longitude"):
    if col not in meta.columns:
      raise SinrInputError("missing column", file=m, field=col)
    values = pd.to_numeric(meta[col], errors="coerce")
    bad = values.isna() & meta[col].notna()
    if bad.any():
      raise SinrInputError(f"not a number: {meta[col][bad].iloc[0]!r}", file=m, field=col,
                           row=int(np.argmax(bad.to_numpy())) + 2)
    meta[col] = values
  if len(meta) != n:
    raise SinrInputError(f"{len(meta)} rows but the predictions have {n} images", file=m)
  lonlat = meta[["longitude", "latitude"]].to_numpy(np.float64)
  lonlat[~np.isfinite(lonlat).all(1)] = np.nan  # unknown location: the image stays vision-only
  out = (np.abs(lonlat[:, 0]) > 180) | (np.abs(lonlat[:, 1]) > 90)
  if out.any():
    i = int(np.argmax(out))
    raise SinrInputError(f"location {lonlat[i].tolist()} outside lon [-180, 180] / lat [-90, 90]",
                         file=m, field="latitude/longitude", row=i + 2)
  return lonlat


@dataclasses.dataclass(frozen=True, eq=False)
class GeoFeatureData:
  mask: np.ndarray                # (H, W) bool, True inside the country
  layers: dict[str, np.ndarray]   # name -> (H, W) float32 raster (NaN = no data)
  log1p: tuple[str, ...]          # layers to log-transform before scaling
  layer_dir: str


def _read_tif(path: Path, field: str) -> np.ndarray:
  import tifffile  # optional dependency, needed only for this task
  if not path.is_file():
    raise SinrInputError("raster file not found", file=path, field=field)
  try:
    a = tifffile.imread(path)
  except KeyError as e:  # tifffile's way of saying a codec is missing
    raise SinrInputError(f"cannot decode raster ({e}); `pip install imagecodecs` adds the codec",
                         file=path, field=field) from e
  except (OSError, ValueError, tifffile.TiffFileError) as e:
    raise SinrInputError(f"cannot read raster ({e})", file=path, field=field) from e
  a = np.squeeze(a)
  if a.ndim != 2:
    raise SinrInputError(f"expected a single-band 2-d raster, got shape {a.shape}", file=path,
                         field=field)
  return a


def read_geo_feature(layer_dir: str | os.PathLike, mask_path: str | os.PathLike,
                     layers: tuple[str, ...] | None = None) -> GeoFeatureData:
  """The mask and every layer; default layers: `layers.json` if present, else the published nine."""
  layer_dir, mask_path = Path(layer_dir), Path(mask_path)
  log1p = LOG1P_LAYERS
  manifest = layer_dir / LAYERS_MANIFEST
  if layers is None and manifest.is_file():
    try:
      spec = json.loads(manifest.read_text())
      layers, log1p = tuple(spec["layers"]), tuple(spec.get("log1p", ()))
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise SinrInputError(f"expected {{\"layers\": [...], \"log1p\": [...]}} ({e!r})",
                           file=manifest) from e
    if not layers or not all(isinstance(x, str) and x for x in layers):
      raise SinrInputError("expected a non-empty list of layer names", file=manifest,
                           field="layers")
  layers = tuple(layers or GEO_FEATURE_LAYERS)
  mask = _read_tif(mask_path, "mask") == 1
  if not mask.any():
    raise SinrInputError("mask has no pixel equal to 1", file=mask_path, field="mask")
  out = {}
  for name in layers:
    path = layer_dir / f"{name}.tif"
    r = _read_tif(path, name)
    if r.shape != mask.shape:
      raise SinrInputError(f"raster shape {r.shape} does not match the mask's {mask.shape}",
                           file=path, field="shape")
    if not np.issubdtype(r.dtype, np.number):
      raise SinrInputError(f"raster dtype {r.dtype} is not numeric", file=path, field="dtype")
    out[name] = r.astype(np.float32)
  return GeoFeatureData(mask=mask, layers=out, log1p=tuple(x for x in log1p if x in out),
                        layer_dir=str(layer_dir))
