"""Training batches as a grain pipeline whose position is just the next step.

`StepBatches` is a random-access source: item t is this process's part of step t's global
batch, read by `read(rows, step)` from the rows an EpochSampler assigns to step t. Because a
batch is a pure function of its step, `BatchIterator`'s state is {"step"} plus the sampler's
identity: a resumed run continues exactly, for any number of threads or worker processes
(grain reads ahead in threads, or in processes with worker_count > 0).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

import grain
import numpy as np

from ecorep.errors import InputError
from ecorep.sampler import EpochSampler

_log = logging.getLogger(__name__)
# read(rows, step) -> dict of numpy arrays; rows may hold -1 (padding) with remainder="pad".
ReadFn = Callable[[np.ndarray, int], dict]
_UNBOUNDED = 1 << 40


@dataclasses.dataclass
class StepBatches:
  sampler: EpochSampler
  read: ReadFn
  num_steps: int | None = None     # None: unbounded
  process_index: int = 0
  process_count: int = 1

  @property
  def steps_per_epoch(self) -> int:
    return self.sampler.steps_per_epoch

  @property
  def local_batch_size(self) -> int:
    return self.sampler.batch_size // self.process_count

  def __len__(self) -> int:
    return _UNBOUNDED if self.num_steps is None else self.num_steps

  def __getitem__(self, step: int) -> dict:
    step = int(step)
    return self.read(self.sampler.local_rows(step, self.process_index, self.process_count), step)


class BatchIterator:
  """Batches of a StepBatches from `step` on; `get_state()`/`set_state()` give exact resume."""

  def __init__(self, batches: StepBatches, *, worker_count: int = 0, num_threads: int = 2,
               prefetch: int = 2):
    self.batches = batches
    self.worker_count, self.num_threads, self.prefetch = worker_count, num_threads, prefetch
    self.step = 0
    self._it = None

  @property
  def steps_per_epoch(self) -> int:
    return self.batches.steps_per_epoch

  def _start(self):
    dataset = grain.MapDataset.source(self.batches)[self.step:].to_iter_dataset(
        grain.ReadOptions(num_threads=self.num_threads, prefetch_buffer_size=self.prefetch))
    if self.worker_count > 0:
      _mark_absl_flags_parsed()
      dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
          num_workers=self.worker_count, per_worker_buffer_size=self.prefetch))
    self._it = iter(dataset)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    if self._it is None:
      self._start()
    batch = next(self._it)
    self.step += 1
    return batch

  def get_state(self) -> dict:
    return {"step": self.step, **self.batches.sampler.identity}

  def set_state(self, state: dict) -> None:
    """Continues from a saved position. A position saved by another data setup (batch size,
    seed, data size, cap) is refused, unless the state carries "adapt": True (a run resumed
    with an allowed config change); it is then carried over by the fraction of epochs done."""
    identity = self.batches.sampler.identity
    differs = {k: (state[k], v) for k, v in identity.items() if k in state and int(state[k]) != v}
    self.close()
    if not differs:
      self.step = int(state["step"])
      return
    key, (old, new) = next(iter(differs.items()))
    if not state.get("adapt"):
      raise InputError(f"the checkpoint's data position has {key}={old} but this pipeline has "
                       f"{new}: it belongs to another data setup", field=key)
    old_spe = max(1, int(state["num_items"]) // int(state["global_batch_size"]))
    epochs_done = int(state["step"]) / old_spe
    self.step = int(round(epochs_done * self.steps_per_epoch))
    _log.info("data position carried over from another setup (%s): step %d of the old setup "
              "is epoch %.3f, step %d of this one", ", ".join(differs), int(state["step"]),
              epochs_done, self.step)

  def close(self) -> None:
    if self._it is not None and hasattr(self._it, "close"):
      self._it.close()
      # grain 0.2.18 shuts its read pool down without waiting, so a read already running could
      # still open files after close() returns (e.g. after the caller deleted the folder).
      executor = getattr(self._it, "_executor", None)
      if executor is not None:
        executor.shutdown(wait=True)
    self._it = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _mark_absl_flags_parsed() -> None:
  # grain 0.2.18's mp_prefetch reads absl flags; outside absl.app they are unparsed and it
  # raises UnparsedFlagAccessError (grain issue #1355).
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def batch_iterator(sampler: EpochSampler, read: ReadFn, *, state: dict | None = None,
                   num_steps: int | None = None, worker_count: int = 0, num_threads: int = 2,
                   prefetch: int = 2, process_index: int | None = None,
                   process_count: int | None = None) -> BatchIterator:
  """The checkpointable iterator over `read(sampler rows of step t, t)`; `state` resumes."""
  if process_index is None or process_count is None:
    import jax
    process_index, process_count = jax.process_index(), jax.process_count()
  iterator = BatchIterator(StepBatches(sampler, read, num_steps, process_index, process_count),
                           worker_count=worker_count, num_threads=num_threads, prefetch=prefetch)
  if state:
    iterator.set_state(state)
  return iterator


def gather_rows(arrays: dict[str, np.ndarray]) -> ReadFn:
  """A `read` for in-memory arrays (rows never padded): {name: array[rows]}."""
  return _Gather(arrays)


@dataclasses.dataclass(frozen=True)
class _Gather:
  arrays: dict[str, Any]

  def __call__(self, rows: np.ndarray, step: int) -> dict:
    del step
    return {k: v[rows] for k, v in self.arrays.items()}
