"""Host-side input pipelines (grain): pretraining views and evaluation batches.

Pretraining: the shared step-indexed pipeline (ecorep.sampler + ecorep.pipeline: one shuffled
epoch per (seed, epoch), process p reads its slice of every global batch, the iterator's state
is the next step) with `ViewReader` as its reader: every item's crops come from a generator
seeded with (seed, step, position), so a batch is a pure function of its step and resumes
exactly for any number of workers. Decoding and cropping run on the host (threads, or worker
processes with worker_count > 0); flips, colour and blur run on the device (vision_jax.augment).

Evaluation: every example exactly once, in order; the last batch is padded and carries a mask;
an unreadable image can keep its row, flagged, instead of stopping the pass (on_error="mark").
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import grain
import numpy as np
from PIL import Image

from ecorep.mesh import check_batch_size
from ecorep.pipeline import BatchIterator, batch_iterator
from ecorep.sampler import EpochSampler
from vision_jax.errors import VisionInputError

CropFn = Callable[[np.random.Generator, np.ndarray, int], np.ndarray]
EVAL_CROP_FRACTION = 224 / 256  # resize the short side to size/0.875, then centre-crop size


@dataclasses.dataclass(frozen=True)
class ViewReader:
  """`read(rows, step)` of ecorep.pipeline: decodes each row's image and crops `num_views`
  views with a generator seeded by (seed, step, position in the global batch), so a batch is a
  pure function of its step. Picklable (module-level, frozen) for worker processes."""
  source: Any
  image_size: int
  seed: int
  crop_fn: CropFn
  num_views: int = 2
  process_offset: int = 0   # this process's first position in the global batch

  def __call__(self, rows: np.ndarray, step: int) -> dict[str, np.ndarray]:
    n, s = len(rows), self.image_size
    views = np.empty((n, self.num_views, s, s, 3), np.uint8)
    labels = np.empty((n,), np.int32)
    for k, row in enumerate(rows):
      item = self.source[int(row)]
      rng = np.random.default_rng([self.seed, int(step), self.process_offset + k])
      for v in range(self.num_views):
        views[k, v] = self.crop_fn(rng, item["image"], s)
      labels[k] = item["label"]
    return {"views": views, "label": labels}


def _default_crop() -> CropFn:
  from vision_jax.augment import host_random_resized_crop
  return host_random_resized_crop


def pretrain_iterator(source, *, global_batch_size: int, image_size: int, seed: int,
                      num_views: int = 2, state: dict | None = None, worker_count: int = 0,
                      num_threads: int = 2, num_epochs: int | None = None,
                      crop_fn: CropFn | None = None, num_devices: int | None = None,
                      process_index: int | None = None,
                      process_count: int | None = None) -> BatchIterator:
  """Yields {'views': uint8 (B_local, V, S, S, 3), 'label': int32 (B_local,)} per step.

  The global batch must split over the devices (default: all of them) and processes. With
  num_epochs=None the iterator never ends. crop_fn(rng, image, size) defaults to
  vision_jax.augment.host_random_resized_crop; with worker_count > 0 it and the source must
  pickle (a module-level function; call from under `if __name__ == "__main__"`).
  """
  import jax
  num_devices = jax.device_count() if num_devices is None else num_devices
  check_batch_size(global_batch_size, num_devices)
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  sampler = EpochSampler(len(source), global_batch_size, seed)
  read = ViewReader(source, image_size, seed, crop_fn or _default_crop(), num_views,
                    process_index * (global_batch_size // process_count))
  num_steps = None if num_epochs is None else sampler.steps_per_epoch * num_epochs
  return batch_iterator(sampler, read, state=state, num_steps=num_steps,
                        worker_count=worker_count, num_threads=num_threads,
                        process_index=process_index, process_count=process_count)


def eval_preprocess(image: np.ndarray, image_size: int, small_image: bool,
                    resize_short: int | None = None) -> np.ndarray:
  """uint8 (H, W, 3) -> (S, S, 3). Large images: bicubic resize of the short side to
  `resize_short` (default S/0.875: 256 for S = 224, the seed's transform), centre crop S.
  Small images: bicubic resize of the whole image to S x S."""
  pil = Image.fromarray(image)
  if small_image:
    if image.shape[:2] == (image_size, image_size):
      return image
    return np.asarray(pil.resize((image_size, image_size), Image.Resampling.BICUBIC))
  h, w = image.shape[:2]
  short = int(round(image_size / EVAL_CROP_FRACTION)) if resize_short is None else resize_short
  if short < image_size:
    raise VisionInputError(f"resize_short {short} is smaller than the crop {image_size}",
                           field="resize_short")
  scale = short / min(h, w)
  new_w, new_h = max(short, int(round(w * scale))), max(short, int(round(h * scale)))
  resized = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BICUBIC))
  top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
  return resized[top:top + image_size, left:left + image_size]


ON_ERROR = ("raise", "mark")


@dataclasses.dataclass
class EvalBatches:
  """Random access: item t is this process's part of eval batch t, padded past the end.

  on_error="mark": an item whose read raises is not dropped or replaced: its row keeps its
  place with a zero image, failed=True and the reason in `error` (the caller counts it).
  """
  source: Any
  batch_size: int
  image_size: int
  small_image: bool
  process_index: int = 0
  process_count: int = 1
  resize_short: int | None = None
  on_error: str = "raise"

  def __post_init__(self):
    if self.batch_size % self.process_count:
      raise VisionInputError(f"eval batch {self.batch_size} does not split over "
                             f"{self.process_count} processes", field="batch_size")
    if self.on_error not in ON_ERROR:
      raise VisionInputError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}",
                             field="on_error")
    self.local_batch_size = self.batch_size // self.process_count

  def __len__(self) -> int:
    return -(-len(self.source) // self.batch_size)

  def __getitem__(self, t: int) -> dict[str, Any]:
    s, n = self.image_size, self.local_batch_size
    out = {"image": np.zeros((n, s, s, 3), np.uint8), "label": np.zeros((n,), np.int32),
           "mask": np.zeros((n,), bool), "index": np.full((n,), -1, np.int64),
           "failed": np.zeros((n,), bool), "error": [""] * n}
    first = int(t) * self.batch_size + self.process_index * n
    for k, i in enumerate(range(first, min(first + n, len(self.source)))):
      out["mask"][k], out["index"][k] = True, i
      try:
        item = self.source[i]
        out["image"][k] = eval_preprocess(item["image"], s, self.small_image, self.resize_short)
      except Exception as e:  # any reader or decoder failure of this one item
        if self.on_error == "raise":
          raise
        out["failed"][k], out["error"][k] = True, str(e)
        continue
      out["label"][k] = item["label"]
    return out


def eval_iterator(source, *, batch_size: int, image_size: int, small_image: bool,
                  num_threads: int = 2, process_index: int | None = None,
                  process_count: int | None = None, resize_short: int | None = None,
                  on_error: str = "raise"):
  """Yields {'image': uint8 (B, S, S, 3), 'label', 'mask': bool, 'index': int64 (-1 = pad),
  'failed': bool, 'error': [str]} (see EvalBatches for on_error).

  Every example appears exactly once across batches (and processes); nothing is dropped.
  """
  if batch_size <= 0:
    raise VisionInputError(f"batch size must be positive, got {batch_size}", field="batch_size")
  if process_index is None or process_count is None:
    import jax
    process_index, process_count = jax.process_index(), jax.process_count()
  batches = EvalBatches(source, batch_size, image_size, small_image, process_index,
                        process_count, resize_short, on_error)
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
