"""Training batches as a grain pipeline with exact resume.

Each epoch is one permutation of the observations, drawn from (seed, epoch); step t reads rows
[b·B, (b+1)·B) of epoch t // steps_per_epoch's permutation, so any step's batch can be rebuilt
without replaying the ones before it, and a resumed run sees exactly the batches it would have
seen. Each process reads only its slice of every global batch (multi-host data parallelism); the
leftover rows of an epoch (fewer than one batch) are skipped in that epoch only.
"""
from __future__ import annotations

import dataclasses
import threading

import grain
import numpy as np


@dataclasses.dataclass
class EpochBatches:
  """Random-access source: item t is this process's part of the global batch of step t."""
  lonlat: np.ndarray        # (N, 2) float32 degrees
  labels: np.ndarray        # (N,) int32 class indices
  global_batch_size: int
  seed: int
  num_steps: int
  process_index: int = 0
  process_count: int = 1

  def __post_init__(self):
    n = len(self.labels)
    if n < self.global_batch_size:
      raise ValueError(f"{n} observations are fewer than one batch of {self.global_batch_size}")
    self.steps_per_epoch = n // self.global_batch_size
    self.local_batch_size = self.global_batch_size // self.process_count
    self._lock = threading.Lock()
    self._perms: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return self.num_steps

  def permutation(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._perms:
        if len(self._perms) >= 2:  # prefetch threads may straddle one epoch boundary
          del self._perms[min(self._perms)]
        rng = np.random.default_rng([self.seed, epoch])
        self._perms[epoch] = rng.permutation(len(self.labels))
      return self._perms[epoch]

  def __getitem__(self, step: int) -> dict[str, np.ndarray]:
    epoch, b = divmod(int(step), self.steps_per_epoch)
    start = b * self.global_batch_size + self.process_index * self.local_batch_size
    rows = self.permutation(epoch)[start:start + self.local_batch_size]
    return {"lonlat": self.lonlat[rows], "label": self.labels[rows]}


def batch_iterator(source: EpochBatches, state: dict | None = None,
                   prefetch: int = 4) -> grain.DatasetIterator:
  """A checkpointable iterator over `source`; `state` is a previous iterator's `get_state()`."""
  dataset = grain.MapDataset.source(source).to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=prefetch))
  iterator = iter(dataset)
  if state:
    iterator.set_state(state)
  return iterator
