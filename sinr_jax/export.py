"""Range maps of a trained model as files: H3 cell lists, GeoJSON polygons, PNG maps.

  python -m sinr_jax.export --run=runs/X (--taxa=1,2,3 | --all) --out=DIR
      [--format=csv,parquet,geojson,png] [--h3_res=5] [--threshold=0.5] [--labels=iucn_res_5.json]

A species' range is the land H3 cells (at --h3_res) where P(presence) >= its threshold: the
F1-maximising threshold for taxa with expert labels (--labels, the IUCN file format: `locs` and
`taxa_presence`), else --threshold. Writes into DIR:
  ranges.csv / ranges.parquet   taxon_id, h3 (cell index as hex string), probability
  geojson/<taxon>.geojson       a Feature: the range as one MultiPolygon (see geojson.py)
  png/<taxon>.png               P(presence) with coastlines and the threshold contour (maps.py)
  summary.csv                   per requested taxon: threshold and its source, range cells/km², AP
  export.json                   settings and counts (taxa unknown to the model are skipped, counted)
Species stream through in blocks: memory is the cell embeddings plus one block of logits.
"""
from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ecorep import io
from ecorep.progress import progress_bar
from sinr_jax import geojson, grid
from sinr_jax.cell_scorer import CellScorer
from sinr_jax.errors import SinrInputError
from sinr_jax.scoring import cell_areas_km2, score_species

_log = logging.getLogger("sinr_jax.export")
FORMATS = ("csv", "parquet", "geojson", "png")
SCHEMA = pa.schema([("taxon_id", pa.int64()), ("h3", pa.string()), ("probability", pa.float32())])


def parse_taxa(text: str) -> np.ndarray:
  try:
    return np.array([int(t) for t in text.split(",") if t.strip()], np.int64)
  except ValueError as e:
    raise SinrInputError(f"--taxa must be comma-separated integer taxon ids ({e})",
                         field="taxa") from None


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
                  progress: bool = False, notes: dict | None = None) -> dict:
  """Writes the range maps of `taxa` (default: all the model's) into `out_dir`; returns the
  manifest. `labels`: {taxon: indices into the land cells at h3_res} for F1 thresholds."""
  formats = tuple(formats)
  bad = set(formats) - set(FORMATS)
  if bad or not formats:
    raise SinrInputError(f"unknown format(s) {sorted(bad)}; choose from {', '.join(FORMATS)}",
                         field="format")
  cells, lonlat = grid.land_cells(h3_res)
  scorer = CellScorer.from_predictor(predictor, lonlat, cell_areas_km2(cells))
  taxa = np.asarray(predictor.taxa if taxa is None else taxa, np.int64)
  scores = score_species(predictor, scorer=scorer, taxa=taxa, labels=labels,
                         default_threshold=default_threshold, max_block=block, progress=progress)
  os.makedirs(out_dir, exist_ok=True)
  frame = scores.to_frame()
  frame.to_csv(os.path.join(out_dir, "summary.csv"), index=False)
  for sub in ("geojson", "png"):
    if sub in formats:
      os.makedirs(os.path.join(out_dir, sub), exist_ok=True)

  cell_names = pa.array([format(int(c), "x") for c in cells], pa.string())
  head = np.asarray(predictor.params["species_embedding"], np.float32)
  known = np.flatnonzero(scores.known)
  writers = _Writers(out_dir, formats)
  rows_written = 0
  bar = progress_bar(len(known), desc="export", unit="species") if progress else None
  try:
    for start in range(0, len(known), block):
      sel = known[start:start + block]
      logits = scorer.logits(head[predictor.columns(taxa[sel])])
      for j, i in enumerate(sel):
        taxon, thr = int(taxa[i]), scores.threshold_logit[i]
        idx = np.flatnonzero(logits[j] >= thr)
        prob = (1.0 / (1.0 + np.exp(-logits[j, idx].astype(np.float64)))).astype(np.float32)
        writers.write(pa.table({"taxon_id": pa.array(np.full(len(idx), taxon, np.int64)),
                                "h3": cell_names.take(pa.array(idx)), "probability": prob},
                               schema=SCHEMA))
        rows_written += len(idx)
        props = {"taxon_id": taxon, "threshold": float(scores.threshold[i]),
                 "threshold_source": "f1" if scores.f1_threshold[i] else "default",
                 "num_cells": int(len(idx)), "area_km2": float(scores.range_km2[i]),
                 "h3_res": int(h3_res)}
        if "geojson" in formats:
          io.write_json(os.path.join(out_dir, "geojson", f"{taxon}.geojson"),
                        geojson.feature(cells[idx], props))
        if "png" in formats:
          from sinr_jax.maps import save_range_maps
          save_range_maps(predictor, [taxon], os.path.join(out_dir, "png"),
                          threshold=float(scores.threshold[i]))
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
  io.write_json(os.path.join(out_dir, "export.json"), manifest)
  return manifest


USAGE = __doc__.split("\n\n")[1]


def main(argv: list[str]) -> int:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
  if any(a in ("-h", "--help") for a in argv):
    print(USAGE)
    return 0
  try:
    flags = {}
    for a in argv:
      if not a.startswith("--"):
        raise SinrInputError(f"unexpected argument {a!r}\n{USAGE}")
      k, _, v = a[2:].partition("=")
      flags[k] = v if _ else "true"
    unknown = set(flags) - {"run", "taxa", "all", "out", "format", "h3_res", "threshold", "labels"}
    if unknown:
      raise SinrInputError(f"unknown flag(s) {sorted(unknown)}\n{USAGE}")
    if "run" not in flags or "out" not in flags:
      raise SinrInputError(f"--run and --out are required\n{USAGE}")
    if ("taxa" in flags) == ("all" in flags):
      raise SinrInputError("give exactly one of --taxa=1,2,3 and --all", field="taxa")
    try:
      h3_res = int(flags.get("h3_res", 5))
      threshold = float(flags.get("threshold", 0.5))
    except ValueError as e:
      raise SinrInputError(f"bad --h3_res or --threshold ({e})") from None
    from sinr_jax.predictor import load
    predictor = load(flags["run"])
    labels, dropped = None, 0
    if flags.get("labels"):
      labels, dropped = labels_from_iucn(flags["labels"], grid.land_cells(h3_res)[0], h3_res)
    taxa = parse_taxa(flags["taxa"]) if "taxa" in flags else None
    manifest = export_ranges(predictor, flags["out"], taxa=taxa, h3_res=h3_res,
                             formats=[f for f in flags.get("format", "csv").split(",") if f],
                             default_threshold=threshold, labels=labels, progress=True,
                             notes={"label_locations_not_on_land_cells": dropped} if labels else None)
  except SinrInputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(manifest, indent=1))
  if manifest["num_taxa_unknown_to_model"]:
    print(f"note: {manifest['num_taxa_unknown_to_model']} requested taxa are unknown to the model "
          "and were skipped", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
