"""Streaming all-species scorer: exact AP, the F1-maximising threshold and range size per species.

  cells, lonlat = sinr_jax.grid.land_cells(5)
  scores = score_species(model, lonlat, labels=presence_csr, taxa=taxa,
                         cell_area_km2=cell_areas_km2(cells))
  scores.summary()      # {'map': ..., 'num_species_evaluated': ..., ...}
  scores.to_frame()     # one row per taxon: ap, best_f1, threshold, range_cells, range_km2, ...

The cells are encoded once; species go through in blocks (cells.py), so memory is the
embeddings plus one block of B × M logits, whatever the number of species. Species are grouped by
their number of positives so that each block pads its positive lists to one power of two.

Per species (scores are logits; AP and thresholds are the same on probabilities, which rank alike):
  ap           exact average precision (scikit-learn's, ties included) against the labels
  best_f1      the highest F1 over thresholds "logit >= t" (t ranges over the positives' logits)
  threshold    the probability threshold reaching it (the highest such); without labels, the fixed
               `default_threshold`. Binarised range = cells with P(presence) >= threshold.
  range_cells, range_km2   size of that range (km² from `cell_area_km2`, NaN without it)
Taxa the model does not know are skipped and counted; species with labels but no positive cell
have no AP (excluded from the MAP and counted).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import h3
import numpy as np
import pandas as pd
import scipy.sparse

from ecorep import ranking
from ecorep.progress import progress_bar
from sinr_jax.errors import SinrInputError
from sinr_jax.scoring.cells import MIN_K, CellScorer, has_linear_head

BLOCK_ELEMENTS = 1 << 20  # species × padded positives per block (the (B, K) count arrays)
MAX_BLOCK = 64  # species per block by default


@dataclasses.dataclass
class SpeciesScores:
  """Per-taxon outputs, aligned with `taxa` (the requested taxa, known to the model or not)."""
  taxa: np.ndarray            # (S,) int64
  known: np.ndarray           # (S,) bool: the model has this taxon
  num_positives: np.ndarray   # (S,) int64, 0 without labels
  ap: np.ndarray              # (S,) float64, NaN if unknown or without a positive
  best_f1: np.ndarray         # (S,) float64, NaN if unknown or without a positive
  threshold_logit: np.ndarray  # (S,) float32, NaN if unknown
  f1_threshold: np.ndarray    # (S,) bool: threshold chosen by F1 (else the default)
  range_cells: np.ndarray     # (S,) int64, -1 if unknown
  range_km2: np.ndarray       # (S,) float64
  num_cells: int
  has_labels: bool

  @property
  def threshold(self) -> np.ndarray:
    """Probability thresholds σ(threshold_logit), float64."""
    return 1.0 / (1.0 + np.exp(-self.threshold_logit.astype(np.float64)))

  def summary(self) -> dict:
    result = ranking.MAPResult.from_per_class(self.ap)
    return {
        "map": result.map,
        "num_species": int(len(self.taxa)),
        "num_species_evaluated": int(len(self.taxa) - result.num_excluded),
        "num_species_unknown_to_model": int((~self.known).sum()),
        "num_species_without_positives": int((self.known & (self.num_positives == 0)).sum()
                                             if self.has_labels else 0),
        "num_cells": int(self.num_cells),
    }

  def to_frame(self) -> pd.DataFrame:
    return pd.DataFrame({
        "taxon_id": self.taxa, "known": self.known, "num_positives": self.num_positives,
        "ap": self.ap, "best_f1": self.best_f1, "threshold": self.threshold,
        "threshold_logit": self.threshold_logit,
        "threshold_source": np.where(~self.known, "", np.where(self.f1_threshold, "f1", "default")),
        "range_cells": self.range_cells, "range_km2": self.range_km2})


def cell_areas_km2(cells) -> np.ndarray:
  """(M,) float64 areas of uint64 H3 cells in km² (a second or so for 572k cells)."""
  api = h3.api.basic_int
  cells = np.asarray(cells, np.uint64).tolist()
  bad = next((i for i, c in enumerate(cells) if not api.is_valid_cell(c)), None)
  if bad is not None:
    raise SinrInputError(f"invalid H3 cell id {cells[bad]}", field="cells", row=bad)
  return np.fromiter((api.cell_area(c, "km^2") for c in cells), np.float64, count=len(cells))


def positive_lists(labels, taxa: np.ndarray, num_cells: int) -> list[np.ndarray]:
  """Per-taxon sorted unique int32 cell indices from a (taxa × cells) sparse/dense 0-1 matrix, a
  sequence of index arrays (one per taxon) or a {taxon: indices} mapping (missing taxa: none)."""
  if isinstance(labels, Mapping):
    lists = [labels.get(int(t), ()) for t in taxa]
  elif scipy.sparse.issparse(labels) or (isinstance(labels, np.ndarray) and labels.ndim == 2):
    if labels.shape != (len(taxa), num_cells):
      raise SinrInputError(f"labels matrix has shape {labels.shape}, expected (taxa, cells) = "
                           f"({len(taxa)}, {num_cells})", field="labels")
    csr = scipy.sparse.csr_matrix(labels)
    if not csr.has_canonical_format or (csr.data == 0).any():
      csr = csr.copy()  # leave the caller's matrix alone
      csr.sum_duplicates()
      csr.eliminate_zeros()
    ind = csr.indices.astype(np.int32, copy=False)
    return [ind[csr.indptr[i]:csr.indptr[i + 1]] for i in range(len(taxa))]  # views, no copies
  elif isinstance(labels, Sequence) or isinstance(labels, np.ndarray):
    if len(labels) != len(taxa):
      raise SinrInputError(f"{len(labels)} label lists for {len(taxa)} taxa", field="labels")
    lists = list(labels)
  else:
    raise SinrInputError(f"labels must be a sparse matrix, a list of index arrays or a mapping, "
                         f"got {type(labels).__name__}", field="labels")
  out = []
  for i, idx in enumerate(lists):
    idx = np.asarray(idx)
    if idx.size and (idx.dtype.kind not in "iu" or idx.ndim != 1):
      raise SinrInputError(f"label list of taxon {taxa[i]} must be 1-D integer cell indices",
                           field="labels", row=i)
    if idx.size and (idx.min() < 0 or idx.max() >= num_cells):
      raise SinrInputError(f"label list of taxon {taxa[i]} has cell indices outside "
                           f"[0, {num_cells})", field="labels", row=i)
    out.append(np.unique(idx).astype(np.int32))
  return out


def _bucket(n: int) -> int:
  return max(MIN_K, 1 << max(0, int(n) - 1).bit_length())


def plan_blocks(num_pos: np.ndarray, max_block: int,
                block_elements: int = BLOCK_ELEMENTS) -> list[tuple[np.ndarray, int, int]]:
  """[(rows, B, K)]: species in order of their number of positives, B at a time; K is the power of
  two (>= MIN_K) covering the block's largest list, B the largest power of two <= max_block with
  B·K <= block_elements (at least 1). Only the last block is short (and padded to B)."""
  order = np.argsort(num_pos, kind="stable")
  n_sorted = np.asarray(num_pos)[order]
  top = 2 ** int(math.floor(math.log2(max(1, max_block))))
  out, start = [], 0
  while start < len(order):
    b = top
    k = _bucket(n_sorted[min(start + b, len(order)) - 1])
    while b > 1 and b * k > block_elements:
      b //= 2
      k = _bucket(n_sorted[min(start + b, len(order)) - 1])
    out.append((order[start:start + b], b, k))
    start += b
  return out


def score_species(predictor, cell_lonlat=None, *, taxa=None, labels=None, cell_area_km2=None,
                  default_threshold: float = 0.5, scorer: CellScorer | None = None,
                  max_block: int = MAX_BLOCK, mesh=None, impl: str | None = None,
                  ranges: bool = True, progress: bool = False) -> SpeciesScores:
  """Scores `taxa` (default: every taxon of the model) over the cells. See the module docstring.

  Pass `scorer` (a CellScorer of these cells) to reuse encoded cells; else `cell_lonlat` (M, 2).
  labels: positives per taxon (see `positive_lists`), None for thresholds/areas only.
  ranges=False: AP, best F1 and thresholds only, no range sizes (range_cells -1, range_km2 NaN).
  """
  if not has_linear_head(predictor):
    raise SinrInputError("the streaming scorer needs a model with a linear species head "
                         "(params['species_embedding']), e.g. a RangePredictor; score other "
                         "models through their predict()", field="model")
  if scorer is None:
    cell_lonlat = np.asarray(cell_lonlat, np.float64)
    if cell_lonlat.ndim != 2 or cell_lonlat.shape[1] != 2 or not len(cell_lonlat):
      raise SinrInputError(f"cell_lonlat must be a non-empty (M, 2) array, got shape "
                           f"{cell_lonlat.shape}", field="cell_lonlat")
    if cell_area_km2 is not None and np.shape(cell_area_km2) != (len(cell_lonlat),):
      raise SinrInputError(f"cell_area_km2 has shape {np.shape(cell_area_km2)}, expected "
                           f"({len(cell_lonlat)},)", field="cell_area_km2")
    scorer = CellScorer.from_predictor(predictor, cell_lonlat, cell_area_km2, mesh=mesh, impl=impl)
  if not 0.0 < default_threshold < 1.0:
    raise SinrInputError(f"default_threshold must be in (0, 1), got {default_threshold}",
                         field="default_threshold")
  if taxa is None:
    if isinstance(labels, Mapping):
      taxa = np.fromiter(labels.keys(), np.int64, count=len(labels))
    else:
      taxa = np.asarray(predictor.taxa)
  taxa = np.asarray(taxa)
  if taxa.ndim != 1 or (taxa.size and taxa.dtype.kind not in "iu"):
    raise SinrInputError(f"taxa must be a 1-D integer array, got {taxa.dtype} {taxa.shape}",
                         field="taxa")
  taxa = taxa.astype(np.int64)
  m = scorer.num_cells
  pos = positive_lists(labels, taxa, m) if labels is not None else [np.zeros(0, np.int32)] * len(taxa)
  num_pos = np.array([len(p) for p in pos], np.int64)

  known = np.isin(taxa, predictor.taxa)
  rows = np.flatnonzero(known)
  cols = np.asarray(predictor.columns(taxa[rows]))
  head = np.asarray(predictor.params["species_embedding"], np.float32)
  default_logit = math.log(default_threshold / (1.0 - default_threshold))

  s = len(taxa)
  res = SpeciesScores(
      taxa=taxa, known=known, num_positives=num_pos, ap=np.full(s, np.nan),
      best_f1=np.full(s, np.nan), threshold_logit=np.full(s, np.nan, np.float32),
      f1_threshold=np.zeros(s, bool), range_cells=np.full(s, -1, np.int64),
      range_km2=np.full(s, np.nan), num_cells=m, has_labels=labels is not None)

  def write(block_rows, out):
    n = len(block_rows)
    res.ap[block_rows] = out["ap"][:n]
    res.best_f1[block_rows] = out["best_f1"][:n]
    res.threshold_logit[block_rows] = out["threshold_logit"][:n]
    res.f1_threshold[block_rows] = out["num_pos"][:n] > 0
    res.range_cells[block_rows] = out["range_cells"][:n]
    res.range_km2[block_rows] = out["range_km2"][:n] if scorer.has_area else np.nan

  blocks = plan_blocks(num_pos[rows], max_block)
  bar = progress_bar(len(rows), desc="score", unit="species") if progress else None
  pending = None
  for sel, b, k in blocks:
    block_rows = rows[sel]
    w = np.zeros((b, head.shape[1]), np.float32)
    w[:len(sel)] = head[cols[sel]]
    p = np.full((b, k), -1, np.int32)
    n = np.zeros(b, np.int32)
    for j, r in enumerate(block_rows):
      p[j, :num_pos[r]] = pos[r]
      n[j] = num_pos[r]
    # Dispatched asynchronously: the previous block's results are fetched while this one runs.
    out = scorer.score_block(w, p, n, default_logit, ranges=ranges)
    if pending is not None:
      write(pending[0], CellScorer.block_result(pending[1]))
      if bar is not None:
        bar.update(len(pending[0]))
    pending = (block_rows, out)
  if pending is not None:
    write(pending[0], CellScorer.block_result(pending[1]))
    if bar is not None:
      bar.update(len(pending[0]))
      bar.close()
  return res
