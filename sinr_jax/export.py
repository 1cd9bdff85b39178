"""Range maps of a trained model as files: H3 cell lists, GeoJSON polygons, PNG maps.

  python -m sinr_jax.export --run=runs/X (--taxa=1,2,3 | --all) --out=DIR [--overwrite]
      [--format=csv,parquet,geojson,png] [--h3_res=5] [--threshold=0.5] [--labels=iucn_res_5.json]

A species' range is the land H3 cells (at --h3_res, 0..6) where P(presence) >= its threshold:
the F1-maximising threshold for taxa with expert labels (--labels, the IUCN file format: `locs`
and `taxa_presence`), else --threshold. DIR must be new or empty; --overwrite replaces its content
as a whole once the export has succeeded (a failed export leaves the old one). Every argument is
checked before scoring starts. Taxa unknown to the model are listed and skipped; if none is
known the export stops (status 2). Writes into DIR:
  ranges.csv / ranges.parquet   taxon_id, h3 (cell index as hex string), probability
  geojson/<taxon>.geojson       a Feature: the range as one MultiPolygon (see geojson.py)
  png/<taxon>.png               P(presence) with coastlines and the threshold contour (maps.py)
  summary.csv                   per requested taxon: threshold and its source, range cells/km², AP
  export.json                   settings and counts (taxa unknown to the model are skipped, counted)
Species stream through in blocks: memory is the cell embeddings plus one block of logits.
One species from Python: `model.range_map(taxon)` / `model.save_range_map(taxon, path)`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ecorep import io
from ecorep.cli import parse_flags, run_cli
from ecorep.progress import progress_bar
from sinr_jax import geojson, grid
from sinr_jax.errors import SinrInputError
from sinr_jax.scoring import CellScorer, cell_areas_km2, score_species

_log = logging.getLogger("sinr_jax.export")
FORMATS = ("csv", "parquet", "geojson", "png")
# One species' file, by suffix (save_range_map).
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".geojson": "geojson", ".json": "geojson",
            ".png": "png"}
SCHEMA = pa.schema([("taxon_id", pa.int64()), ("h3", pa.string()), ("probability", pa.float32())])
# Land cells are enumerated from every cell at the resolution: 14M at res 6, 98M at res 7.
MAX_H3_RES = 6
FLAGS = ("run", "taxa", "all", "out", "overwrite", "format", "h3_res", "threshold", "labels")
_SHOW = 5  # taxa listed in a message


def parse_taxa(text: str) -> np.ndarray:
  try:
    taxa = np.array([int(t) for t in text.split(",") if t.strip()], np.int64)
  except ValueError as e:
    raise SinrInputError(f"--taxa must be comma-separated integer taxon ids ({e})",
                         field="taxa") from None
  if not len(taxa):
    raise SinrInputError("--taxa names no taxon id (give --taxa=1,2,3 or --all)", field="taxa")
  return taxa


def check_formats(formats) -> tuple[str, ...]:
  formats = tuple(dict.fromkeys(f.strip() for f in formats if f.strip()))
  bad = [f for f in formats if f not in FORMATS]
  if bad or not formats:
    raise SinrInputError(f"unknown format(s) {bad}; choose from {', '.join(FORMATS)}",
                         field="format")
  return formats


def check_h3_res(h3_res) -> int:
  if isinstance(h3_res, bool) or not isinstance(h3_res, (int, np.integer)) or not (
      0 <= h3_res <= MAX_H3_RES):
    raise SinrInputError(f"H3 resolution must be an integer in 0..{MAX_H3_RES}, got {h3_res!r} "
                         "(land cells are enumerated from all cells: 14M at res 6)",
                         field="h3_res")
  return int(h3_res)


def check_threshold(threshold) -> float:
  if not 0.0 < threshold < 1.0:
    raise SinrInputError(f"the threshold is a probability in (0, 1), got {threshold}",
                         field="threshold")
  return float(threshold)


def check_out_dir(out_dir: str, *, overwrite: bool = False, run_dir: str | None = None) -> str:
  """The absolute output folder, after checking it can be written: new or empty (any folder
  with --overwrite, except one holding the run itself) with a writable parent."""
  out = os.path.abspath(os.fspath(out_dir))
  if os.path.exists(out) and not os.path.isdir(out):
    raise SinrInputError("exists and is not a directory; --out names the folder to write",
                         file=out, field="out")
  if run_dir and os.path.commonpath([out, os.path.abspath(run_dir)]) == out:
    raise SinrInputError("is (or contains) the run directory; write the export elsewhere",
                         file=out, field="out")
  if os.path.isdir(out):
    entries = sorted(os.listdir(out))
    if entries and not overwrite:
      shown = ", ".join(entries[:_SHOW]) + (", ..." if len(entries) > _SHOW else "")
      raise SinrInputError(f"is not empty ({len(entries)} entries: {shown}); pass --overwrite "
                           "to replace its content, or choose a new folder", file=out,
                           field="out")
  parent = os.path.dirname(out)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
    raise SinrInputError(f"cannot create it: {parent} is not a writable directory", file=out,
                         field="out")
  return out


def known_taxa(predictor, taxa: np.ndarray, *, warn: bool = True) -> np.ndarray:
  """Which of `taxa` the model has; none raises, some unknown are named in a warning."""
  known = np.isin(taxa, predictor.taxa)
  unknown = taxa[~known]
  listed = ", ".join(str(t) for t in unknown[:_SHOW]) + (", ..." if len(unknown) > _SHOW else "")
  if not known.any():
    raise SinrInputError(f"none of the {len(taxa)} requested taxa is known to the model "
                         f"({listed}); its {len(predictor.taxa)} taxa are in the run's taxa.json",
                         field="taxa")
  if len(unknown) and warn:
    _log.warning("%d of %d requested taxa are unknown to the model and are skipped: %s",
                 len(unknown), len(taxa), listed)
  return known


def labels_from_iucn(path: str, cells: np.ndarray, h3_res: int) -> tuple[dict, int]:
  """{taxon: indices into `cells`} from an IUCN-format file, and how many of its locations fall
  outside `cells` (dropped)."""
  from sinr_jax.evaluators.readers import read_iucn
  data = read_iucn(path)
  loc_cells = grid.lonlat_to_cells(data.locs, h3_res)
  at = np.minimum(np.searchsorted(cells, loc_cells), len(cells) - 1)
  on_land = cells[at] == loc_cells
  out = {int(t): np.unique(at[p][on_land[p]]) for t, p in zip(data.taxa, data.presence)}
  return out, int((~on_land).sum())


def _cell_names(cells: np.ndarray) -> pa.Array:
  return pa.array([format(int(c), "x") for c in cells], pa.string())


def _cell_table(taxon: int, names: pa.Array, idx: np.ndarray, logits: np.ndarray) -> pa.Table:
  """The rows of ranges.csv for one taxon: its range cells `idx` and their probabilities."""
  prob = _sigmoid(logits[idx])
  return pa.table({"taxon_id": pa.array(np.full(len(idx), taxon, np.int64)),
                   "h3": names.take(pa.array(idx)), "probability": prob}, schema=SCHEMA)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
  return (1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))).astype(np.float32)


def _properties(taxon: int, threshold: float, f1: bool, num_cells: int, area_km2: float,
                h3_res: int) -> dict:
  return {"taxon_id": int(taxon), "threshold": float(threshold),
          "threshold_source": "f1" if f1 else "default", "num_cells": int(num_cells),
          "area_km2": float(area_km2), "h3_res": int(h3_res)}


class _Writers:
  """The streamed cell-list files (CSV and/or Parquet), one record batch per species."""

  def __init__(self, out_dir: str, formats):
    self.csv = (pa_csv.CSVWriter(os.path.join(out_dir, "ranges.csv"), SCHEMA)
                if "csv" in formats else None)
    self.parquet = (pq.ParquetWriter(os.path.join(out_dir, "ranges.parquet"), SCHEMA)
                    if "parquet" in formats else None)

  def write(self, table: pa.Table):
    for w in (self.csv, self.parquet):
      if w is not None:
        w.write_table(table)

  def close(self):
    for w in (self.csv, self.parquet):
      if w is not None:
        w.close()


def export_ranges(predictor, out_dir: str, *, taxa=None, formats=("csv",), h3_res: int = 5,
                  default_threshold: float = 0.5, labels=None, block: int = 32,
                  progress: bool = False, notes: dict | None = None,
                  overwrite: bool = False) -> dict:
  """Writes the range maps of `taxa` (default: all the model's) into `out_dir` (new or empty;
  with `overwrite` its content is replaced, all at once, when the export succeeds); returns the
  manifest. `labels`: {taxon: indices into the land cells at h3_res} for F1 thresholds."""
  from sinr_jax.maps import save_range_maps
  formats = check_formats(formats)
  h3_res = check_h3_res(h3_res)
  default_threshold = check_threshold(default_threshold)
  out_dir = check_out_dir(out_dir, overwrite=overwrite,
                          run_dir=getattr(predictor, "run_dir", None))
  if taxa is None:
    taxa = np.asarray(predictor.taxa, np.int64)
  else:
    from sinr_jax.predictor import taxon_ids
    taxa = taxon_ids(taxa)
    taxa = taxa[np.sort(np.unique(taxa, return_index=True)[1])]  # first occurrences, in order
  known_taxa(predictor, taxa)
  cells, lonlat = grid.land_cells(h3_res)
  scorer = CellScorer.from_predictor(predictor, lonlat, cell_areas_km2(cells))
  scores = score_species(predictor, scorer=scorer, taxa=taxa, labels=labels,
                         default_threshold=default_threshold, max_block=block, progress=progress)
  names = _cell_names(cells)
  head = np.asarray(predictor.params["species_embedding"], np.float32)
  known = np.flatnonzero(scores.known)
  rows_written = 0
  bar = progress_bar(len(known), desc="export", unit="species") if progress else None
  with io.atomic_directory(out_dir) as tmp:
    scores.to_frame().to_csv(os.path.join(tmp, "summary.csv"), index=False)
    for sub in ("geojson", "png"):
      if sub in formats:
        os.makedirs(os.path.join(tmp, sub))
    writers = _Writers(tmp, formats)
    try:
      for start in range(0, len(known), block):
        sel = known[start:start + block]
        logits = scorer.logits(head[predictor.columns(taxa[sel])])
        for j, i in enumerate(sel):
          taxon = int(taxa[i])
          idx = np.flatnonzero(logits[j] >= scores.threshold_logit[i])
          writers.write(_cell_table(taxon, names, idx, logits[j]))
          rows_written += len(idx)
          if "geojson" in formats:
            props = _properties(taxon, scores.threshold[i], scores.f1_threshold[i], len(idx),
                                scores.range_km2[i], h3_res)
            io.write_json(os.path.join(tmp, "geojson", f"{taxon}.geojson"),
                          geojson.feature(cells[idx], props))
        if "png" in formats:
          block_taxa = [int(t) for t in taxa[sel]]
          save_range_maps(predictor, block_taxa, os.path.join(tmp, "png"),
                          threshold=dict(zip(block_taxa, scores.threshold[sel].tolist())))
        if bar is not None:
          bar.update(len(sel))
    finally:
      writers.close()
      if bar is not None:
        bar.close()
    manifest = {
        "run": getattr(predictor, "run_dir", None), "step": getattr(predictor, "step", None),
        "h3_res": int(h3_res), "num_land_cells": int(len(cells)), "formats": list(formats),
        "default_threshold": float(default_threshold),
        "num_taxa_requested": int(len(taxa)), "num_taxa_exported": int(len(known)),
        "num_taxa_unknown_to_model": int((~scores.known).sum()),
        "skipped_taxa": [int(t) for t in taxa[~scores.known][:100]],
        "num_f1_thresholds": int(scores.f1_threshold.sum()), "num_rows": int(rows_written),
        **(notes or {}),
    }
    io.write_json(os.path.join(tmp, "export.json"), manifest)
  return manifest


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class RangeMap:
  """One species' range over the land H3 cells at `h3_res` (RangePredictor.range_map)."""
  taxon: int
  h3_res: int
  cells: np.ndarray        # (M,) uint64 land cells, sorted
  lonlat: np.ndarray       # (M, 2) their centres, degrees
  logits: np.ndarray       # (M,) float32
  threshold: float         # probability threshold
  threshold_source: str    # "f1" (from labels) or "default"
  in_range: np.ndarray     # (M,) bool: P(presence) >= threshold (compared as logits, as export)
  area_km2: float          # area of the range cells
  ap: float                # against the labels; NaN without
  best_f1: float           # NaN without labels

  @property
  def probability(self) -> np.ndarray:
    """(M,) float32 P(presence)."""
    return _sigmoid(self.logits)

  @property
  def range_cells(self) -> np.ndarray:
    return self.cells[self.in_range]

  def table(self) -> pa.Table:
    """The range cells as rows of ranges.csv: taxon_id, h3 (hex), probability."""
    idx = np.flatnonzero(self.in_range)
    return _cell_table(self.taxon, _cell_names(self.cells[idx]), np.arange(len(idx)),
                       self.logits[idx])

  def feature(self) -> dict:
    """The range as a GeoJSON Feature (one MultiPolygon), as geojson/<taxon>.geojson."""
    props = _properties(self.taxon, self.threshold, self.threshold_source == "f1",
                        int(self.in_range.sum()), self.area_km2, self.h3_res)
    return geojson.feature(self.range_cells, props)


def range_map(predictor, taxon, *, h3_res: int = 5, threshold: float = 0.5,
              labels=None) -> RangeMap:
  """Scores one taxon over the land cells at `h3_res` as the export does. `labels`: indices into
  those cells (`grid.land_cells(h3_res)[0]`) of a known range, for the F1 threshold."""
  from sinr_jax.predictor import taxon_ids
  ids = taxon_ids(taxon)
  if len(ids) != 1:
    raise SinrInputError(f"range_map takes one taxon id, got {len(ids)}", field="taxon")
  cols = predictor.columns(ids)  # an unknown taxon raises here, naming it
  h3_res = check_h3_res(h3_res)
  threshold = check_threshold(threshold)
  cells, lonlat = grid.land_cells(h3_res)
  scorer = CellScorer.from_predictor(predictor, lonlat, cell_areas_km2(cells))
  scores = score_species(predictor, scorer=scorer, taxa=ids,
                         labels=None if labels is None else [np.asarray(labels)],
                         default_threshold=threshold, max_block=1)
  logits = scorer.logits(np.asarray(predictor.params["species_embedding"], np.float32)[cols])[0]
  return RangeMap(
      taxon=int(ids[0]), h3_res=h3_res, cells=cells, lonlat=lonlat, logits=logits,
      threshold=float(scores.threshold[0]),
      threshold_source="f1" if scores.f1_threshold[0] else "default",
      in_range=logits >= scores.threshold_logit[0], area_km2=float(scores.range_km2[0]),
      ap=float(scores.ap[0]), best_f1=float(scores.best_f1[0]))


def save_range_map(predictor, taxon, path, *, h3_res: int = 5, threshold: float = 0.5,
                   labels=None) -> str:
  """Writes one taxon's range as `path`, in the format its suffix names (SUFFIXES): the PNG of
  export's png/, the Feature of its geojson/, or its rows of ranges.csv / ranges.parquet."""
  path = os.fspath(path)
  kind = SUFFIXES.get(os.path.splitext(path)[1].lower())
  if kind is None:
    raise SinrInputError(f"unknown file type; name it {', '.join(SUFFIXES)}", file=path,
                         field="path")
  if os.path.isdir(path):
    raise SinrInputError("is a directory; give a file name", file=path, field="path")
  if kind == "png" and labels is None:  # the picture needs no H3 cells: skip scoring them
    from sinr_jax.maps import save_range_map as save_png
    from sinr_jax.predictor import taxon_ids
    ids = taxon_ids(taxon)
    if len(ids) != 1:
      raise SinrInputError(f"save_range_map takes one taxon id, got {len(ids)}", field="taxon")
    predictor.columns(ids)
    return save_png(predictor, int(ids[0]), path, threshold=check_threshold(threshold))
  rm = range_map(predictor, taxon, h3_res=h3_res, threshold=threshold, labels=labels)
  if kind == "png":
    from sinr_jax.maps import save_range_map as save_png
    return save_png(predictor, rm.taxon, path, threshold=rm.threshold)
  if kind == "geojson":
    io.write_json(path, rm.feature())
  elif kind == "csv":
    io.atomic_write(path, lambda tmp: pa_csv.write_csv(rm.table(), tmp))
  else:
    io.atomic_write(path, lambda tmp: pq.write_table(rm.table(), tmp))
  return path


def _parse(flags: dict) -> dict:
  """Every CLI argument checked (no file read yet beyond existence), before loading or scoring."""
  if "run" not in flags or "out" not in flags:
    raise SinrInputError(f"--run and --out are required\n{USAGE}")
  if ("taxa" in flags) == ("all" in flags):
    raise SinrInputError("give exactly one of --taxa=1,2,3 and --all", field="taxa")
  if not os.path.isdir(flags["run"]):
    raise SinrInputError("--run: not a directory (a training run's --workdir)", file=flags["run"],
                         field="run")
  try:
    h3_res = int(flags.get("h3_res", 5))
  except ValueError:
    raise SinrInputError(f"--h3_res={flags['h3_res']} is not an integer", field="h3_res") from None
  try:
    threshold = float(flags.get("threshold", 0.5))
  except ValueError:
    raise SinrInputError(f"--threshold={flags['threshold']} is not a number",
                         field="threshold") from None
  labels = flags.get("labels") or None
  if labels is not None and not os.path.isfile(labels):
    raise SinrInputError("--labels: file not found", file=labels, field="labels")
  overwrite = flags.get("overwrite", "false").lower() in ("1", "true", "yes")
  return {
      "run": flags["run"], "out": check_out_dir(flags["out"], overwrite=overwrite,
                                                run_dir=flags["run"]),
      "overwrite": overwrite, "taxa": parse_taxa(flags["taxa"]) if "taxa" in flags else None,
      "formats": check_formats(flags.get("format", "csv").split(",")),
      "h3_res": check_h3_res(h3_res), "threshold": check_threshold(threshold), "labels": labels}


USAGE = __doc__.split("\n\n")[1]


def main(argv: list[str]) -> int:
  def body(argv):
    args = _parse(parse_flags(argv, FLAGS))
    from sinr_jax.predictor import load
    predictor = load(args["run"])
    taxa = args["taxa"]
    if taxa is not None:
      known_taxa(predictor, taxa, warn=False)  # before reading labels; export_ranges warns
    labels, dropped = None, 0
    if args["labels"]:
      labels, dropped = labels_from_iucn(args["labels"], grid.land_cells(args["h3_res"])[0],
                                         args["h3_res"])
    _log.info("exporting %d taxa at H3 res %d into %s",
              len(predictor.taxa if taxa is None else taxa), args["h3_res"], args["out"])
    manifest = export_ranges(
        predictor, args["out"], taxa=taxa, h3_res=args["h3_res"], formats=args["formats"],
        default_threshold=args["threshold"], labels=labels, progress=True,
        overwrite=args["overwrite"],
        notes={"label_locations_not_on_land_cells": dropped} if labels else None)
    print(json.dumps(manifest, indent=1))
    if manifest["num_taxa_unknown_to_model"]:
      print(f"note: {manifest['num_taxa_unknown_to_model']} requested taxa are unknown to the "
            "model and were skipped (export.json: skipped_taxa)", file=sys.stderr)

  return run_cli(argv, body, __doc__, flags=FLAGS)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
