"""Which rows each training step reads: one shuffled (optionally capped) index set per epoch.

Epoch e is a permutation drawn from (seed, e); with a per-class cap it is a fresh draw of at most
`cap` rows of every class, also from (seed, e), then shuffled. Step t reads rows
[b·B, (b+1)·B) of epoch t // steps_per_epoch's index set (b = t mod steps_per_epoch), so any
step's batch is a pure function of (seed, t): a resumed run reads exactly the batches it would
have read, whatever the number of loader threads or worker processes. Process p of P takes
the p-th slice of every global batch (multi-host data parallelism).

The rows left over at the end of an epoch (fewer than one batch) are either skipped in that
epoch only ("drop", for training) or padded with -1 ("pad": every row is read once per epoch,
the caller masks the padding).
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np

from ecorep.errors import ConfigError, InputError

REMAINDERS = ("drop", "pad")


@dataclasses.dataclass
class EpochSampler:
  num_items: int
  batch_size: int                   # global
  seed: int
  labels: np.ndarray | None = None  # (num_items,) class of each row, needed by `cap`
  cap: int = -1                     # at most this many rows per class per epoch; -1 = all
  remainder: str = "drop"

  def __post_init__(self):
    if self.batch_size <= 0:
      raise ConfigError(f"batch size must be positive, got {self.batch_size}",
                        field="train.batch_size")
    if self.remainder not in REMAINDERS:
      raise ValueError(f"remainder must be one of {REMAINDERS}, got {self.remainder!r}")
    if self.cap == 0 or self.cap < -1:
      raise ConfigError(f"per-class cap must be positive or -1 (all), got {self.cap}",
                        field="cap")
    if self.cap > 0:
      if self.labels is None or len(self.labels) != self.num_items:
        raise ValueError("a per-class cap needs one label per row")
      _, counts = np.unique(self.labels, return_counts=True)
      self.epoch_size = int(np.minimum(counts, self.cap).sum())
      self._members = _members_by_class(np.asarray(self.labels))
    else:
      self.epoch_size = int(self.num_items)
    if self.remainder == "drop":
      if self.epoch_size < self.batch_size:
        raise InputError(f"{self.epoch_size} training rows per epoch are fewer than one batch "
                         f"of {self.batch_size}; lower train.batch_size or add data",
                         field="train.batch_size")
      self.steps_per_epoch = self.epoch_size // self.batch_size
    else:
      if self.epoch_size == 0:
        raise InputError("no training rows", field="data")
      self.steps_per_epoch = -(-self.epoch_size // self.batch_size)
    self._lock = threading.Lock()
    self._epochs: dict[int, np.ndarray] = {}

  def __getstate__(self):  # worker processes rebuild the lock and the cache
    state = dict(self.__dict__)
    state.pop("_lock"), state.pop("_epochs")
    return state

  def __setstate__(self, state):
    self.__dict__.update(state, _lock=threading.Lock(), _epochs={})

  @property
  def identity(self) -> dict:
    """What an iterator position is only valid for (checked when a run resumes)."""
    return {"seed": int(self.seed), "global_batch_size": int(self.batch_size),
            "num_items": int(self.num_items), "cap": int(self.cap)}

  def epoch_rows(self, epoch: int) -> np.ndarray:
    """The shuffled rows of one epoch (cached; prefetching straddles at most one boundary)."""
    with self._lock:
      if epoch not in self._epochs:
        if len(self._epochs) >= 2:
          del self._epochs[min(self._epochs)]
        rng = np.random.default_rng([self.seed, epoch])
        if self.cap > 0:
          picked = np.concatenate([m if len(m) <= self.cap else rng.choice(m, self.cap, False)
                                   for m in self._members])
          rows = rng.permutation(picked)
        else:
          rows = rng.permutation(self.num_items)
        self._epochs[epoch] = rows
      return self._epochs[epoch]

  def global_rows(self, step: int) -> np.ndarray:
    """(batch_size,) rows of step `step`'s global batch; -1 marks padding ("pad" only)."""
    epoch, b = divmod(int(step), self.steps_per_epoch)
    rows = self.epoch_rows(epoch)[b * self.batch_size:(b + 1) * self.batch_size]
    if len(rows) < self.batch_size:
      rows = np.concatenate([rows, np.full(self.batch_size - len(rows), -1, rows.dtype)])
    return rows

  def local_rows(self, step: int, process_index: int = 0, process_count: int = 1) -> np.ndarray:
    """This process's slice of step `step`'s global batch."""
    if self.batch_size % process_count:
      raise ConfigError(f"batch size {self.batch_size} does not split over {process_count} "
                        "processes", field="train.batch_size")
    n = self.batch_size // process_count
    return self.global_rows(step)[process_index * n:(process_index + 1) * n]


def _members_by_class(labels: np.ndarray) -> list[np.ndarray]:
  order = np.argsort(labels, kind="stable")
  bounds = np.flatnonzero(np.diff(labels[order])) + 1
  return np.split(order, bounds)


def run_length(*, num_epochs: float, steps_per_epoch: int, max_steps: int = -1) -> int:
  """Steps of a run: num_epochs epochs, or max_steps when that is positive and smaller."""
  if num_epochs <= 0:
    raise ConfigError(f"train.num_epochs must be positive, got {num_epochs}",
                      field="train.num_epochs")
  if max_steps == 0 or max_steps < -1:
    raise ConfigError(f"train.max_steps must be positive or -1 (no limit), got {max_steps}",
                      field="train.max_steps")
  total = max(1, int(round(num_epochs * steps_per_epoch)))
  return min(total, max_steps) if max_steps > 0 else total
