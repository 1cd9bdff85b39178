"""The viewer's JSON API: every request validated and bounded before any work is done.

  GET /api/info                                   runs, resolutions, limits
  GET /api/search?q=TEXT[&limit=20]               taxa by id prefix or name substring
  GET /api/range?run=a&taxon=ID[&res=4][&threshold=P]   the range cells (hex H3 ids) + P
  GET /api/truth?run=a&taxon=ID                   true/expert range cells, where the run has them
  GET /api/observations?run=a&taxon=ID[&limit=2000]     training observations (lon, lat)
  GET /api/file?run=a&path=plots/x.png            a picture or table inside the run directory
  GET /api/basemap.jpg                            the world picture under the map

Errors are JSON {"error": message} with 400 (malformed or out-of-range parameter, unknown
parameter), 403 (a path outside the run), 404 (unknown taxon, run, file or endpoint), 414 (an
overlong query), 422 (one of the run's own files does not parse). Runs are named "a" (--run) and
"b" (--compare).
"""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
import os
import time
import urllib.parse

import numpy as np

from sinr_jax.errors import SinrInputError
from sinr_jax.predictor import taxon_ids
from sinr_jax.viewer.ranges import RangeService
from sinr_jax.viewer.sources import RunSource

_log = logging.getLogger("sinr_jax.viewer")
MAX_QUERY_CHARS = 2048
MAX_SEARCH_CHARS = 100
MAX_SEARCH_RESULTS = 100
MAX_OBSERVATIONS = 20_000
MAX_RES = 6  # land cells are enumerated from all cells: 14M at res 6
# What /api/file serves from a run directory (its plots, maps, metrics), nothing executable.
FILE_TYPES = {".png": "image/png", ".json": "application/json", ".jsonl": "text/plain",
              ".csv": "text/csv", ".txt": "text/plain", ".geojson": "application/geo+json"}
MAX_FILE_BYTES = 20 << 20
JSON = "application/json"


class ApiError(Exception):
  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status, self.message = status, message


@dataclasses.dataclass(frozen=True)
class Limits:
  default_res: int = 4
  min_res: int = 0
  max_res: int = 5
  max_cells: int = 200_000       # range cells in one response (the most probable ones)
  max_observations: int = 5_000  # default of /api/observations' limit

  def __post_init__(self):
    if not 0 <= self.min_res <= self.default_res <= self.max_res <= MAX_RES:
      raise SinrInputError(f"resolutions must satisfy 0 <= min_res <= res <= max_res <= {MAX_RES}"
                           f", got {self.min_res}, {self.default_res}, {self.max_res}",
                           field="res")
    if self.max_cells < 1:
      raise SinrInputError(f"max_cells must be positive, got {self.max_cells}", field="max_cells")


@dataclasses.dataclass
class Response:
  status: int
  content_type: str
  body: bytes


def _json(payload, status: int = 200) -> Response:
  return Response(status, JSON, json.dumps(payload, separators=(",", ":"),
                                           allow_nan=False).encode())


class Api:
  """Routes GET requests to the runs' RangeServices. Thread-safe (the services lock)."""

  def __init__(self, runs: dict[str, RunSource], limits: Limits = Limits()):
    if not runs:
      raise SinrInputError("the viewer needs at least one run", field="run")
    self.runs, self.limits = runs, limits
    self.services = {name: RangeService(src) for name, src in runs.items()}
    self._routes = {"/api/info": (self.info, ()),
                    "/api/search": (self.search, ("q", "limit")),
                    "/api/range": (self.range, ("run", "taxon", "res", "threshold")),
                    "/api/truth": (self.truth, ("run", "taxon")),
                    "/api/observations": (self.observations, ("run", "taxon", "limit")),
                    "/api/file": (self.file, ("run", "path")),
                    "/api/basemap.jpg": (self.basemap, ())}

  def handle(self, path: str, query: str) -> Response:
    """Answers one GET; never raises for bad input (an error response instead)."""
    try:
      if len(query) > MAX_QUERY_CHARS:
        raise ApiError(414, f"query string longer than {MAX_QUERY_CHARS} characters")
      if path not in self._routes:
        raise ApiError(404, f"no such endpoint {path!r}; see /api/info")
      fn, allowed = self._routes[path]
      try:
        params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=bool(query),
                                       max_num_fields=len(allowed) + 1)
      except ValueError as e:
        raise ApiError(400, f"malformed query string ({e})") from None
      unknown = sorted(set(params) - set(allowed))
      if unknown:
        raise ApiError(400, f"unknown parameter(s) {', '.join(unknown)}; {path} takes "
                            f"{', '.join(allowed) or 'none'}")
      repeated = sorted(k for k, v in params.items() if len(v) > 1)
      if repeated:
        raise ApiError(400, f"parameter(s) given more than once: {', '.join(repeated)}")
      return fn(**{k: v[0] for k, v in params.items()})
    except ApiError as e:
      return _json({"error": e.message}, e.status)
    except SinrInputError as e:  # e.g. a run's side file that does not parse
      _log.warning("%s?%s: %s", path, query, e)
      return _json({"error": str(e)}, 422)

  # ---- parameters ------------------------------------------------------------------------------

  def _run(self, run: str | None) -> str:
    if run is None:
      raise ApiError(400, f"missing parameter run ({' or '.join(self.runs)})")
    if run not in self.runs:
      raise ApiError(404, f"no run {run!r}; this viewer serves {', '.join(self.runs)}")
    return run

  def _taxon(self, run: str, taxon: str | None) -> int:
    if taxon is None or not taxon.strip():
      raise ApiError(400, "missing parameter taxon (an integer taxon id)")
    try:
      value = int(taxon_ids([float(taxon)])[0]) if "." in taxon else int(taxon)
    except (ValueError, SinrInputError):
      raise ApiError(400, f"taxon must be an integer taxon id, got {taxon[:40]!r}") from None
    known = self.runs[run].predictor.taxa
    i = int(np.searchsorted(known, value))
    if i == len(known) or known[i] != value:
      raise ApiError(404, f"taxon {value} is unknown to run {run!r} "
                          f"({os.path.basename(self.runs[run].run_dir)}, {len(known)} taxa; "
                          "search for one with /api/search)")
    return value

  def _int(self, name: str, text: str | None, default: int, lo: int, hi: int) -> int:
    if text is None:
      return default
    try:
      value = int(text)
    except ValueError:
      raise ApiError(400, f"{name} must be an integer, got {text[:40]!r}") from None
    if not lo <= value <= hi:
      raise ApiError(400, f"{name} must be in {lo}..{hi}, got {value}")
    return value

  # ---- endpoints -------------------------------------------------------------------------------

  def info(self) -> Response:
    runs = []
    for name, src in self.runs.items():
      runs.append({"id": name, "name": os.path.basename(src.run_dir), "path": src.run_dir,
                   "step": src.predictor.step, "num_taxa": int(len(src.predictor.taxa)),
                   "has_truth": src.truth is not None,
                   "truth_kind": ("expert (IUCN)" if src.labels_file else "true (simulated)")
                   if src.truth is not None else None,
                   "has_observations": src.train_file is not None,
                   "has_names": bool(src.names)})
    lim = self.limits
    return _json({"runs": runs, "res": {"default": lim.default_res, "min": lim.min_res,
                                        "max": lim.max_res},
                  "max_cells": lim.max_cells, "max_observations": MAX_OBSERVATIONS})

  @functools.cached_property
  def _catalogue(self) -> tuple[np.ndarray, list[str], list[str], list[list[str]]]:
    """Every taxon of the runs: ids, names, lower-case names, which runs know it."""
    taxa = np.unique(np.concatenate([s.predictor.taxa for s in self.runs.values()]))
    names = [next((s.names[int(t)] for s in self.runs.values() if int(t) in s.names), "")
             for t in taxa]
    known = {r: np.isin(taxa, s.predictor.taxa) for r, s in self.runs.items()}
    where = [[r for r in known if known[r][i]] for i in range(len(taxa))]
    return taxa, names, [n.lower() for n in names], where

  def search(self, q: str | None = None, limit: str | None = None) -> Response:
    q = (q or "").strip()
    if len(q) > MAX_SEARCH_CHARS:
      raise ApiError(400, f"q longer than {MAX_SEARCH_CHARS} characters")
    n = self._int("limit", limit, 20, 1, MAX_SEARCH_RESULTS)
    taxa, names, lower, where = self._catalogue
    ids = [str(t) for t in taxa.tolist()]
    if not q:
      hits = list(range(min(n, len(taxa))))
    else:
      ql = q.lower()
      exact = [i for i, s in enumerate(ids) if s == q]
      prefix = [i for i, s in enumerate(ids) if s.startswith(q) and s != q]
      named = [i for i, s in enumerate(lower) if ql in s]
      hits = list(dict.fromkeys(exact + prefix + named))[:n]
    return _json({"query": q, "results": [
        {"taxon_id": int(taxa[i]), "name": names[i], "runs": where[i]} for i in hits]})

  def range(self, run=None, taxon=None, res=None, threshold=None) -> Response:
    run = self._run(run)
    t = self._taxon(run, taxon)
    lim = self.limits
    r = self._int("res", res, lim.default_res, lim.min_res, lim.max_res)
    thr = None
    if threshold is not None:
      try:
        thr = float(threshold)
      except ValueError:
        raise ApiError(400, f"threshold must be a number, got {threshold[:40]!r}") from None
      if not 0.0 < thr < 1.0:
        raise ApiError(400, f"threshold must be a probability in (0, 1), got {threshold[:40]}")
    t0 = time.perf_counter()
    out = self.services[run].species(t, r).view(thr, lim.max_cells)
    out.update(run=run, name=self.runs[run].names.get(t, ""),
               seconds=round(time.perf_counter() - t0, 4))
    return _json(out)

  def truth(self, run=None, taxon=None) -> Response:
    run = self._run(run)
    t = self._taxon(run, taxon)
    truth = self.runs[run].truth
    if truth is None:
      raise ApiError(404, f"run {run!r} has no true or expert ranges (a simulated world, or "
                          "--labels=iucn_res_5.json)")
    res, ranges = truth
    if t not in ranges:
      raise ApiError(404, f"taxon {t} has no true or expert range in run {run!r}'s data")
    cells = ranges[t]
    return _json({"run": run, "taxon_id": t, "res": res, "num_cells": int(len(cells)),
                  "cells": [format(c, "x") for c in cells.tolist()]})

  def observations(self, run=None, taxon=None, limit=None) -> Response:
    run = self._run(run)
    t = self._taxon(run, taxon)
    n = self._int("limit", limit, self.limits.max_observations, 1, MAX_OBSERVATIONS)
    src = self.runs[run]
    if src.train_file is None:
      raise ApiError(404, f"run {run!r}'s training file is not available here")
    lonlat = src.observations_of(t)
    shown = lonlat
    if len(lonlat) > n:  # an even, deterministic subsample
      shown = lonlat[np.linspace(0, len(lonlat) - 1, n).round().astype(np.int64)]
    return _json({"run": run, "taxon_id": t, "total": int(len(lonlat)),
                  "points": np.round(shown.astype(np.float64), 4).tolist()})

  def file(self, run=None, path=None) -> Response:
    run = self._run(run)
    if not path:
      raise ApiError(400, "missing parameter path (relative to the run directory)")
    root = self.runs[run].run_dir
    full = os.path.realpath(os.path.join(root, path))  # symlinks resolved too
    if os.path.isabs(path) or os.path.commonpath([root, full]) != root:
      raise ApiError(403, f"path {path[:200]!r} is outside run {run!r}; only files inside "
                          "the run directory are served")
    kind = FILE_TYPES.get(os.path.splitext(full)[1].lower())
    if kind is None:
      raise ApiError(403, f"only {', '.join(FILE_TYPES)} files are served")
    if not os.path.isfile(full):
      raise ApiError(404, f"no file {path[:200]!r} in run {run!r}")
    if os.path.getsize(full) > MAX_FILE_BYTES:
      raise ApiError(403, f"file larger than {MAX_FILE_BYTES >> 20} MB")
    with open(full, "rb") as f:
      return Response(200, kind, f.read())

  def basemap(self) -> Response:
    return Response(200, "image/jpeg", basemap_jpeg())


@functools.lru_cache(maxsize=1)
def basemap_jpeg() -> bytes:
  """The packaged Blue Marble colour grid (plate carrée, 1/3°), lightened so ranges stand out."""
  from PIL import Image
  from sinr_jax.world.assets import grids, land_mask
  rgb = grids()["rgb"].astype(np.float32)
  land = land_mask()[..., None]
  light = np.where(land, 0.55 * rgb + 0.45 * 235.0, 0.35 * rgb + 0.65 * 205.0)
  buf = io.BytesIO()
  Image.fromarray(light.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=88)
  return buf.getvalue()
