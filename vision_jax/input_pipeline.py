"""Host-side input pipelines (grain): pretraining views and evaluation batches.

Pretraining: each epoch is one permutation of the source drawn from (seed, epoch); step t reads
rows [b·G, (b+1)·G) of that permutation (G the global batch, b = t mod steps per epoch; the
leftover rows of an epoch are skipped in that epoch only), and process p takes rows
[p·G/P, (p+1)·G/P) of them. Every item's crops come from a generator seeded with (seed, step,
row), so a batch is a pure function of its step: the iterator's state is just the next step,
which resumes exactly and does not depend on the number of workers. Decoding and cropping run
on the host (threads, or worker processes with worker_count > 0); flips, colour and blur run
on the device (vision_jax.augment).

Evaluation: every example exactly once, in order; the last batch is padded and carries a mask.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable

import grain
import numpy as np
from PIL import Image

from vision_jax.errors import VisionInputError

CropFn = Callable[[np.random.Generator, np.ndarray, int], np.ndarray]
EVAL_CROP_FRACTION = 224 / 256  # resize the short side to size/0.875, then centre-crop size
_UNBOUNDED_EPOCHS = 1 << 30


@dataclasses.dataclass
class PretrainBatches:
  """Random access: item t is this process's part of step t's global batch of views."""
  source: Any
  global_batch_size: int
  image_size: int
  seed: int
  crop_fn: CropFn
  num_views: int = 2
  num_epochs: int | None = None
  process_index: int = 0
  process_count: int = 1

  def __post_init__(self):
    if self.global_batch_size % self.process_count:
      raise VisionInputError(f"global batch {self.global_batch_size} does not split over "
                             f"{self.process_count} processes", field="global_batch_size")
    if len(self.source) < self.global_batch_size:
      raise VisionInputError(f"the source holds {len(self.source)} images, fewer than one "
                             f"global batch of {self.global_batch_size}",
                             field="global_batch_size")
    self.steps_per_epoch = len(self.source) // self.global_batch_size
    self.local_batch_size = self.global_batch_size // self.process_count
    self._lock = threading.Lock()
    self._perms: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return self.steps_per_epoch * (self.num_epochs or _UNBOUNDED_EPOCHS)

  def __getstate__(self):  # worker processes rebuild the lock and the permutation cache
    state = dict(self.__dict__)
    state.pop("_lock"), state.pop("_perms")
    return state

  def __setstate__(self, state):
    self.__dict__.update(state, _lock=threading.Lock(), _perms={})

  def permutation(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._perms:
        if len(self._perms) >= 2:  # prefetch threads straddle at most one epoch boundary
          del self._perms[min(self._perms)]
        self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(
            len(self.source))
      return self._perms[epoch]

  def __getitem__(self, step: int) -> dict[str, np.ndarray]:
    epoch, b = divmod(int(step), self.steps_per_epoch)
    first = self.process_index * self.local_batch_size
    rows = range(first, first + self.local_batch_size)
    perm = self.permutation(epoch)[b * self.global_batch_size:]
    views = np.empty((self.local_batch_size, self.num_views, self.image_size, self.image_size, 3),
                     np.uint8)
    labels = np.empty((self.local_batch_size,), np.int32)
    for k, row in enumerate(rows):
      item = self.source[int(perm[row])]
      rng = np.random.default_rng([self.seed, int(step), row])
      for v in range(self.num_views):
        views[k, v] = self.crop_fn(rng, item["image"], self.image_size)
      labels[k] = item["label"]
    return {"views": views, "label": labels}


class PretrainIterator:
  """Batches of views; `get_state()` / `set_state()` give exact resume (JSON-able state)."""

  def __init__(self, batches: PretrainBatches, *, worker_count: int = 0, num_threads: int = 2,
               prefetch: int = 2):
    self.batches = batches
    self.worker_count, self.num_threads, self.prefetch = worker_count, num_threads, prefetch
    self.step = 0
    self._it = None

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

  def __next__(self) -> dict[str, np.ndarray]:
    if self._it is None:
      self._start()
    batch = next(self._it)
    self.step += 1
    return batch

  def get_state(self) -> dict[str, int]:
    b = self.batches
    return {"step": self.step, "seed": b.seed, "global_batch_size": b.global_batch_size,
            "num_items": len(b.source)}

  def set_state(self, state: dict[str, int]) -> None:
    b = self.batches
    expected = {"seed": b.seed, "global_batch_size": b.global_batch_size,
                "num_items": len(b.source)}
    for key, value in expected.items():
      if key in state and int(state[key]) != value:
        raise VisionInputError(f"iterator state has {key}={state[key]} but this pipeline has "
                               f"{value}: it belongs to another data setup", field=key)
    self.close()
    self.step = int(state["step"])

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


def _default_crop() -> CropFn:
  try:
    from vision_jax.augment import host_random_resized_crop
  except ImportError as e:
    raise VisionInputError("vision_jax.augment.host_random_resized_crop is not available; "
                           "pass crop_fn", field="crop_fn") from e
  return host_random_resized_crop


def pretrain_iterator(source, *, global_batch_size: int, image_size: int, seed: int,
                      num_views: int = 2, state: dict | None = None, worker_count: int = 0,
                      num_threads: int = 2, num_epochs: int | None = None,
                      crop_fn: CropFn | None = None, num_devices: int | None = None,
                      process_index: int | None = None,
                      process_count: int | None = None) -> PretrainIterator:
  """Yields {'views': uint8 (B_local, V, S, S, 3), 'label': int32 (B_local,)} per step.

  The global batch must split over the devices (default: all of them) and processes. With
  num_epochs=None the iterator never ends. crop_fn(rng, image, size) defaults to
  vision_jax.augment.host_random_resized_crop; with worker_count > 0 it and the source must
  pickle (a module-level function; call from under `if __name__ == "__main__"`).
  """
  import jax
  num_devices = jax.device_count() if num_devices is None else num_devices
  if global_batch_size <= 0 or global_batch_size % num_devices:
    raise VisionInputError(
        f"global batch size {global_batch_size} is not divisible by the {num_devices} devices; "
        f"use a multiple of {num_devices}", field="global_batch_size")
  batches = PretrainBatches(
      source, global_batch_size, image_size, seed, crop_fn or _default_crop(), num_views,
      num_epochs, jax.process_index() if process_index is None else process_index,
      jax.process_count() if process_count is None else process_count)
  iterator = PretrainIterator(batches, worker_count=worker_count, num_threads=num_threads)
  if state:
    iterator.set_state(state)
  return iterator


def eval_preprocess(image: np.ndarray, image_size: int, small_image: bool) -> np.ndarray:
  """uint8 (H, W, 3) -> (S, S, 3). Large images: bicubic resize of the short side to S/0.875,
  centre crop S (256 -> 224). Small images: bicubic resize of the whole image to S x S."""
  pil = Image.fromarray(image)
  if small_image:
    if image.shape[:2] == (image_size, image_size):
      return image
    return np.asarray(pil.resize((image_size, image_size), Image.Resampling.BICUBIC))
  h, w = image.shape[:2]
  short = int(round(image_size / EVAL_CROP_FRACTION))
  scale = short / min(h, w)
  new_w, new_h = max(short, int(round(w * scale))), max(short, int(round(h * scale)))
  resized = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BICUBIC))
  top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
  return resized[top:top + image_size, left:left + image_size]


@dataclasses.dataclass
class EvalBatches:
  """Random access: item t is this process's part of eval batch t, padded past the end."""
  source: Any
  batch_size: int
  image_size: int
  small_image: bool
  process_index: int = 0
  process_count: int = 1

  def __post_init__(self):
    if self.batch_size % self.process_count:
      raise VisionInputError(f"eval batch {self.batch_size} does not split over "
                             f"{self.process_count} processes", field="batch_size")
    self.local_batch_size = self.batch_size // self.process_count

  def __len__(self) -> int:
    return -(-len(self.source) // self.batch_size)

  def __getitem__(self, t: int) -> dict[str, np.ndarray]:
    s, n = self.image_size, self.local_batch_size
    out = {"image": np.zeros((n, s, s, 3), np.uint8), "label": np.zeros((n,), np.int32),
           "mask": np.zeros((n,), bool), "index": np.full((n,), -1, np.int64)}
    first = int(t) * self.batch_size + self.process_index * n
    for k, i in enumerate(range(first, min(first + n, len(self.source)))):
      item = self.source[i]
      out["image"][k] = eval_preprocess(item["image"], s, self.small_image)
      out["label"][k], out["mask"][k], out["index"][k] = item["label"], True, i
    return out


def eval_iterator(source, *, batch_size: int, image_size: int, small_image: bool,
                  num_threads: int = 2, process_index: int | None = None,
                  process_count: int | None = None):
  """Yields {'image': uint8 (B, S, S, 3), 'label', 'mask': bool, 'index': int64 (-1 = pad)}.

  Every example appears exactly once across batches (and processes); nothing is dropped.
  """
  if batch_size <= 0:
    raise VisionInputError(f"batch size must be positive, got {batch_size}", field="batch_size")
  if process_index is None or process_count is None:
    import jax
    process_index, process_count = jax.process_index(), jax.process_count()
  batches = EvalBatches(source, batch_size, image_size, small_image, process_index,
                        process_count)
  return iter(grain.MapDataset.source(batches).to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2, num_threads))))


def measure_pipeline_throughput(source, image_size: int, batch_size: int, worker_count: int,
                                seconds: float, *, num_views: int = 2, num_threads: int = 2,
                                crop_fn: CropFn | None = None) -> float:
  """Source images per second (each decoded once and cropped into num_views views) that
  `pretrain_iterator` delivers after its first batch (worker start-up excluded)."""
  iterator = pretrain_iterator(source, global_batch_size=batch_size, image_size=image_size,
                               seed=0, num_views=num_views, worker_count=worker_count,
                               num_threads=num_threads, crop_fn=crop_fn, num_devices=1,
                               process_index=0, process_count=1)
  with iterator:
    next(iterator)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
      images += len(next(iterator)["label"])
    return images / (time.perf_counter() - start)
