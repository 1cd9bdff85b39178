"""Label matrices: validation, observed-label drawing, splits and the expected count k.

Full labels are (N, L) {0, 1}; observed labels use the reference's {−1, 0, +1}. Observed labels
are drawn once per data set from a seed, uniformly among each row's true positives (and, for IU,
negatives), so every run and every loss sees the same single positives.

Rows with no positive cannot give a single positive. `draw_observed(empty="error")` (the default)
raises naming them; `empty="skip"` leaves them out and reports how many (`Observed.skipped`), so
a data set that has a few unlabelled images can still be used on purpose.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vision_jax.errors import VisionInputError

_CHUNK = 8192  # rows per block when drawing, so N×L random keys never sit in memory at once


def check_binary(labels, *, file=None, field: str = "labels") -> np.ndarray:
  """Returns `labels` as an (N, L) uint8 {0, 1} matrix; raises naming the first bad entry."""
  a = np.asarray(labels)
  if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
    raise VisionInputError(f"label matrix must be 2-d (N, L) with N, L ≥ 1, got shape {a.shape}",
                           file=file, field=field)
  if a.dtype == bool:
    return a.astype(np.uint8)
  if not np.issubdtype(a.dtype, np.number):
    raise VisionInputError(f"label matrix has non-numeric dtype {a.dtype}", file=file, field=field)
  bad = ~((a == 0) | (a == 1))
  if bad.any():
    r, c = np.argwhere(bad)[0]
    raise VisionInputError(
        f"label matrix must hold only 0 and 1; {int(bad.sum())} entries do not, first at row "
        f"{r} (0-based), column {c}: {a[r, c]!r}"
        + (" (looks like observed labels {-1, 0, 1}: pass the full 0/1 labels)"
           if np.isin(a, (-1, 0, 1)).all() else ""), file=file, row=int(r), field=field)
  return a.astype(np.uint8)


def check_observed(observed, *, num_classes: int | None = None, file=None,
                   field: str = "observed") -> np.ndarray:
  """Returns `observed` as an (N, L) int8 {−1, 0, 1} matrix; raises naming the first bad entry."""
  a = np.asarray(observed)
  if a.ndim != 2 or (num_classes is not None and a.shape[1] != num_classes):
    raise VisionInputError(f"observed labels must be (N, {num_classes or 'L'}), got {a.shape}",
                           file=file, field=field)
  bad = ~np.isin(a, (-1, 0, 1))
  if bad.any():
    r, c = np.argwhere(bad)[0]
    raise VisionInputError(f"observed labels must be −1, 0 or 1; row {r} (0-based), column {c} "
                           f"holds {a[r, c]!r}", file=file, row=int(r), field=field)
  return a.astype(np.int8)


def rows_without_positives(labels: np.ndarray) -> np.ndarray:
  return np.flatnonzero(np.asarray(labels).sum(axis=1) == 0)


@dataclasses.dataclass
class Observed:
  observed: np.ndarray   # (N_kept, L) int8 in {−1, 0, 1}
  kept: np.ndarray       # (N_kept,) indices of the input rows that were kept
  skipped: int           # rows left out for having no positive (empty="skip")


def draw_observed(labels, *, seed: int, num_pos: int = 1, num_neg: int = 0,
                  empty: str = "error", file=None) -> Observed:
  """Observes `num_pos` positives (−1: all) and `num_neg` negatives per row, uniformly at random.

  Rows with fewer true positives than `num_pos` keep all of theirs; rows with none raise
  (`empty="error"`) or are dropped and counted (`empty="skip"`).
  """
  y = check_binary(labels, file=file)
  if empty not in ("error", "skip"):
    raise VisionInputError(f"empty must be 'error' or 'skip', got '{empty}'", field="empty")
  if num_pos == 0 or num_pos < -1 or num_neg < -1:
    raise VisionInputError(f"need num_pos ≥ 1 (or −1) and num_neg ≥ 0 (or −1), got "
                           f"{num_pos}, {num_neg}", field="num_pos")
  empty_rows = rows_without_positives(y)
  if len(empty_rows) and empty == "error":
    shown = ", ".join(str(int(r)) for r in empty_rows[:10])
    raise VisionInputError(
        f"{len(empty_rows)} row(s) have no positive label, so no single positive can be drawn: "
        f"rows {shown}{', ...' if len(empty_rows) > 10 else ''} (0-based); remove them or pass "
        "empty='skip' (config data.empty_rows=skip) to leave them out and count them",
        file=file, row=int(empty_rows[0]), field="labels")
  kept = np.setdiff1d(np.arange(len(y)), empty_rows)
  y = y[kept]
  # Separate streams: the positives drawn with a seed do not depend on num_neg.
  rng_pos, rng_neg = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
  obs = np.zeros(y.shape, np.int8)
  for start in range(0, len(y), _CHUNK):
    block = y[start:start + _CHUNK]
    obs[start:start + _CHUNK] += _choose(block == 1, num_pos, rng_pos)
    if num_neg:
      obs[start:start + _CHUNK] -= _choose(block == 0, num_neg, rng_neg)
  return Observed(observed=obs, kept=kept, skipped=len(empty_rows))


def _choose(candidates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
  """A 0/1 int8 matrix marking `count` entries per row chosen uniformly among `candidates`."""
  if count == -1:
    return candidates.astype(np.int8)
  keys = np.where(candidates, rng.random(candidates.shape), -1.0)
  # The `count` largest keys among candidates are a uniform random subset of them.
  top = np.argsort(-keys, axis=1, kind="stable")[:, :count]
  out = np.zeros(candidates.shape, np.int8)
  rows = np.arange(len(candidates))[:, None]
  out[rows, top] = 1
  return out * candidates


def expected_positives(labels) -> float:
  """Mean number of positives per row (the k of EPR/ROLE estimated from fully labelled rows)."""
  y = check_binary(labels)
  return float(y.sum(axis=1).mean())


def check_k(k: float, num_classes: int) -> float:
  """k is an expected count of positives per row: it must lie in (0, L]."""
  k = float(k)
  if not np.isfinite(k) or k <= 0 or k > num_classes:
    raise VisionInputError(f"expected number of positives k = {k} is outside (0, L] with "
                           f"L = {num_classes}", field="train.k")
  return k


def train_val_split(num: int, val_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Sorted (train, val) index sets with round(val_frac·num) in val (the reference's split)."""
  if not 0.0 < val_frac < 1.0:
    raise VisionInputError(f"val_frac must be in (0, 1), got {val_frac}", field="data.val_frac")
  n_val = int(np.round(val_frac * num))
  if n_val == 0 or n_val == num:
    raise VisionInputError(f"cannot hold out {val_frac:.0%} of {num} rows", field="data.val_frac")
  perm = np.random.default_rng(seed).permutation(num)
  return np.sort(perm[:num - n_val]), np.sort(perm[num - n_val:])
