"""Training classes: the taxon id <-> class index map, and the per-class cap on training points.

The cap is a fixed subset drawn once with a seed: the same rows as the reference's
`get_idx_subsample_observations` (walk `default_rng(seed).permutation(n)` and keep a row while its
class has fewer than `cap` kept rows), without the Python loop: within each class the kept rows are
the `cap` that come first in the permutation, found with one sort.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from sinr_jax.errors import SinrInputError

__all__ = ["ClassIndex", "cap_per_class"]


def cap_per_class(labels: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
  """Sorted int64 row indices keeping at most `cap` rows per class; cap None, -1 or 0 keeps all."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise SinrInputError(f"labels must be 1-D, got shape {labels.shape}", field="labels")
  n = len(labels)
  if cap is None or cap in (-1, 0):
    return np.arange(n, dtype=np.int64)
  if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 0:
    raise SinrInputError(f"cap must be a positive integer, or None/-1/0 for no cap; got {cap!r}",
                         field="cap")
  codes, counts = _class_codes(labels)
  over = counts > cap
  if not over.any():  # nothing to drop: the permutation could not change the result
    return np.arange(n, dtype=np.int64)

  perm = np.random.default_rng(seed).permutation(n)
  keep = ~over[codes]  # classes within the cap keep every row, whatever the order
  # Positions in `perm` of rows from classes over the cap, and those classes renumbered 0..K-1.
  perm_codes = codes[perm]
  pos = np.flatnonzero(over[perm_codes])
  over_rank = np.cumsum(over) - 1
  cls = over_rank[perm_codes[pos]]
  del perm_codes
  # One sort of the unique keys (class, position) = a stable sort by class: rows of a class in
  # permutation order. The first `cap` of each class are the ones the reference loop keeps.
  key = cls * np.int64(n) + pos
  key.sort()
  cls = key // n
  pos = key - cls * n
  sizes = counts[over]
  starts = np.cumsum(sizes) - sizes
  rank = np.arange(len(key), dtype=np.int64) - starts[cls]
  keep[perm[pos[rank < cap]]] = True
  return np.flatnonzero(keep).astype(np.int64, copy=False)


def _class_codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Non-negative integer codes per row and the row count per code."""
  n = len(labels)
  if n == 0:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  # Small non-negative ints (class indices, taxon ids) serve as codes directly: no extra sort.
  if labels.dtype.kind in "iu" and labels.min() >= 0 and labels.max() < max(4 * n, 1 << 24):
    codes = labels.astype(np.int64, copy=False) if labels.dtype.kind == "u" else labels
    return codes, np.bincount(codes)
  _, codes = np.unique(labels, return_inverse=True)
  codes = codes.reshape(-1)
  return codes, np.bincount(codes)


class ClassIndex:
  """Taxon id <-> class index 0..S-1; the classes are the sorted unique taxon ids, as in the
  reference. Saved with the model so that predictions decode to the taxa it was trained on."""

  FORMAT = "sinr_jax.ClassIndex"

  def __init__(self, taxa, *, source=None):
    taxa = np.asarray(taxa)
    if taxa.ndim != 1 or len(taxa) == 0 or taxa.dtype.kind not in "iu":
      raise SinrInputError(f"taxa must be a non-empty 1-D integer array, got {taxa.dtype} "
                           f"{taxa.shape}", file=source, field="taxa")
    taxa = taxa.astype(np.int64)
    step = np.flatnonzero(np.diff(taxa) <= 0)
    if len(step):
      i = int(step[0]) + 1
      what = "duplicate" if taxa[i] == taxa[i - 1] else "not sorted:"
      raise SinrInputError(f"{what} taxon {taxa[i]} at entry {i} after {taxa[i - 1]} (entries are "
                           "0-based)", file=source, field="taxa")
    taxa.setflags(write=False)
    self.taxa = taxa

  @classmethod
  def from_taxa(cls, taxon_ids) -> ClassIndex:
    """The index of the distinct ids in `taxon_ids` (e.g. `Observations.taxon_ids`)."""
    return cls(np.unique(np.asarray(taxon_ids)))

  def __len__(self) -> int:
    return len(self.taxa)

  def __eq__(self, other) -> bool:
    return isinstance(other, ClassIndex) and np.array_equal(self.taxa, other.taxa)

  __hash__ = None

  def __repr__(self) -> str:
    return f"ClassIndex({len(self)} taxa)"

  def encode(self, taxon_ids, *, source=None, rows=None) -> np.ndarray:
    """int32 class indices. `source`/`rows` (the file and its row numbers) name unknown taxa."""
    ids = np.asarray(taxon_ids)
    idx = np.minimum(np.searchsorted(self.taxa, ids), len(self.taxa) - 1)
    unknown = self.taxa[idx] != ids
    if unknown.any():
      i = int(np.argmax(unknown))
      where = "" if rows is not None else " (row = 0-based index into taxon_ids)"
      raise SinrInputError(
          f"taxon {ids.reshape(-1)[i]} is not in the class index of {len(self)} taxa "
          f"({int(unknown.sum())} rows, {len(np.unique(ids[unknown]))} unknown taxa){where}",
          file=source, row=int(np.asarray(rows).reshape(-1)[i]) if rows is not None else i,
          field="taxon_id")
    return idx.astype(np.int32)

  def decode(self, class_idx) -> np.ndarray:
    """Taxon ids of class indices."""
    idx = np.asarray(class_idx)
    if idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= len(self))):
      raise SinrInputError(f"class indices must be integers in [0, {len(self)})",
                           field="class_idx")
    return self.taxa[idx]

  def save(self, path) -> None:
    """Writes JSON atomically (temp file + os.replace): a crash never leaves half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
      with os.fdopen(fd, "w") as f:
        json.dump({"format": self.FORMAT, "version": 1, "taxa": self.taxa.tolist()}, f)
        f.flush()
        os.fsync(f.fileno())
      os.chmod(tmp, 0o644)
      os.replace(tmp, path)
    except BaseException:
      Path(tmp).unlink(missing_ok=True)
      raise

  @classmethod
  def load(cls, path) -> ClassIndex:
    """Reads `save`'s JSON (or a bare JSON list of ids, like the reference's class_to_taxa)."""
    path = Path(path)
    try:
      data = json.loads(path.read_text())
    except FileNotFoundError:
      raise SinrInputError(f"class index file not found: {path}", file=path) from None
    except json.JSONDecodeError as e:
      raise SinrInputError(f"not valid JSON: {e.msg}", file=path, row=e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
      raise SinrInputError(f"cannot read the class index ({e})", file=path) from None
    if isinstance(data, dict):
      if data.get("format", cls.FORMAT) != cls.FORMAT or "taxa" not in data:
        raise SinrInputError(f"not a class index: expected format {cls.FORMAT!r} with 'taxa'",
                             file=path, field="format")
      data = data["taxa"]
    if not isinstance(data, list):
      raise SinrInputError("'taxa' must be a list of taxon ids", file=path, field="taxa")
    for i, t in enumerate(data):
      if isinstance(t, bool) or not isinstance(t, int):
        raise SinrInputError(f"entry {i} (0-based) is {t!r}, not an integer taxon id", file=path,
                             field="taxa")
    try:
      return cls(np.array(data, dtype=np.int64), source=path)
    except OverflowError:
      raise SinrInputError("a taxon id does not fit in int64", file=path, field="taxa") from None
