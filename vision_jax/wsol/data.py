"""Localisation data sets in memory: three splits over one label hierarchy.

  D_w  "train"  image-level labels only (the classifier's training set)
  D_f  "val"    fully labelled (boxes, or masks): hyperparameters are picked on it
  D_test "test" fully labelled: the reported numbers

Every split holds leaf labels (indices into the taxonomy's leaves) and an image reader; boxes
are stored at the evaluation size S x S (the reference resizes every test image to S x S and
its boxes with it, `boxes.resize_boxes`). Readers of the published formats (formats.py) and the
real-pixel set (synthetic.py) build these.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ecorep.taxonomy import Taxonomy
from vision_jax.errors import VisionInputError
from vision_jax.sources import decode


@dataclasses.dataclass(frozen=True)
class ArrayImages:
  """Images already at S x S: evaluation reads them as they are, training flips them (unless
  `flip` is off: a mirrored digit is another digit)."""
  images: np.ndarray   # uint8 (N, S, S, 3)
  flip: bool = True

  def __len__(self) -> int:
    return len(self.images)

  def eval(self, rows: np.ndarray) -> np.ndarray:
    return self.images[rows]

  def train(self, rows: np.ndarray, step: int, seed: int) -> np.ndarray:
    out = self.images[rows].copy()
    if self.flip:
      flip = np.random.default_rng([seed, step, 7]).random(len(rows)) < 0.5
      out[flip] = out[flip, :, ::-1]
    return out


@dataclasses.dataclass(frozen=True)
class FileImages:
  """Image files. Evaluation: bilinear resize to S x S (the reference's test transform);
  training: resize to R x R, a random S x S crop and a random flip (the reference's, R = 256
  for S = 224), drawn from (seed, step, row) so that a resumed run reads the same pixels."""
  paths: tuple[str, ...]
  image_size: int
  train_resize: int

  def __len__(self) -> int:
    return len(self.paths)

  def _read(self, i: int, size: int) -> np.ndarray:
    try:
      image = decode(self.paths[i])
    except (OSError, ValueError) as e:
      raise VisionInputError(f"cannot read image ({e})", file=self.paths[i]) from e
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))

  def eval(self, rows: np.ndarray) -> np.ndarray:
    return np.stack([self._read(int(i), self.image_size) for i in rows])

  def train(self, rows: np.ndarray, step: int, seed: int) -> np.ndarray:
    s, r = self.image_size, self.train_resize
    out = np.empty((len(rows), s, s, 3), np.uint8)
    for k, i in enumerate(rows):
      rng = np.random.default_rng([seed, step, int(i)])
      image = self._read(int(i), r)
      top, left = rng.integers(0, r - s + 1, size=2)
      crop = image[top:top + s, left:left + s]
      out[k] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out


@dataclasses.dataclass(frozen=True)
class ArrayMasks:
  """Masks already at S x S: uint8 (N, S, S) with 0 / 1 / 255 (ignored)."""
  masks: np.ndarray

  def __call__(self, rows: np.ndarray) -> np.ndarray:
    return self.masks[np.asarray(rows)]


@dataclasses.dataclass(frozen=True)
class FileMasks:
  """Instance masks and an ignore mask per image (the reference's OpenImages layout), read as
  one (S, S) uint8 map: 1 foreground (any instance), 255 ignored (ignore region outside the
  foreground), 0 background; nearest-neighbour resize, mask pixel > 0.5 as the reference."""
  mask_paths: tuple[tuple[str, ...], ...]
  ignore_paths: tuple[str, ...]     # "" where an image has none
  image_size: int

  def _read(self, path: str) -> np.ndarray:
    try:
      with Image.open(path) as image:
        gray = image.convert("L").resize((self.image_size,) * 2, Image.Resampling.NEAREST)
    except OSError as e:
      raise VisionInputError(f"cannot read mask ({e})", file=path) from e
    return np.asarray(gray, np.float32) > 0.5

  def __call__(self, rows: np.ndarray) -> np.ndarray:
    out = np.zeros((len(rows), self.image_size, self.image_size), np.uint8)
    for k, i in enumerate(rows):
      fg = np.zeros((self.image_size,) * 2, bool)
      for path in self.mask_paths[int(i)]:
        fg |= self._read(path)
      out[k] = fg
      if self.ignore_paths[int(i)]:
        out[k][self._read(self.ignore_paths[int(i)]) & ~fg] = 255
    return out


@dataclasses.dataclass
class LocSplit:
  name: str
  labels: np.ndarray                     # (N,) int32 leaf indices
  images: Any                            # ArrayImages | FileImages
  boxes: list[np.ndarray] | None = None  # per image (k, 4) int at S x S, inclusive corners
  masks: Callable[[np.ndarray], np.ndarray] | None = None   # rows -> (n, S, S) uint8
  ids: tuple[str, ...] = ()

  def __post_init__(self):
    self.labels = np.asarray(self.labels, np.int32)
    if len(self.images) != len(self.labels):
      raise VisionInputError(f"split {self.name}: {len(self.images)} images but "
                             f"{len(self.labels)} labels", field=self.name)
    if self.boxes is not None and len(self.boxes) != len(self.labels):
      raise VisionInputError(f"split {self.name}: {len(self.boxes)} box lists for "
                             f"{len(self.labels)} images", field=self.name)

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def has_boxes(self) -> bool:
    return self.boxes is not None

  def subset(self, rows: Sequence[int]) -> "LocSplit":
    rows = np.asarray(rows, np.int64)
    images = self.images
    if isinstance(images, ArrayImages):
      images = ArrayImages(images.images[rows], images.flip)
    elif isinstance(images, FileImages):
      images = dataclasses.replace(images, paths=tuple(images.paths[i] for i in rows))
    masks = self.masks
    if masks is not None:
      masks = _SubsetMasks(masks, rows)
    return LocSplit(self.name, self.labels[rows], images,
                    None if self.boxes is None else [self.boxes[i] for i in rows], masks,
                    tuple(self.ids[i] for i in rows) if self.ids else ())


@dataclasses.dataclass(frozen=True)
class _SubsetMasks:
  masks: Callable
  rows: np.ndarray

  def __call__(self, rows: np.ndarray) -> np.ndarray:
    return self.masks(self.rows[np.asarray(rows)])


@dataclasses.dataclass
class LocDataset:
  name: str
  image_size: int
  taxonomy: Taxonomy
  train: LocSplit      # D_w
  val: LocSplit        # D_f
  test: LocSplit       # D_test
  info: dict = dataclasses.field(default_factory=dict)  # reader notes (counts, fixed sizes)

  def __post_init__(self):
    for split in (self.train, self.val, self.test):
      if len(split) and split.labels.max() >= self.taxonomy.num_leaves:
        raise VisionInputError(f"split {split.name} has label {int(split.labels.max())} but the "
                               f"hierarchy has {self.taxonomy.num_leaves} leaves",
                               field=split.name)
    for split in (self.val, self.test):
      if split.boxes is None and split.masks is None:
        raise VisionInputError(f"split {split.name} has neither boxes nor masks: it cannot "
                               "score localisation", field=split.name)


def per_class_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Sorted rows with at most `per_class` of every class (all of a smaller class), drawn once
  from `seed` (the data-efficiency runs: 50/100/200 images per category)."""
  labels = np.asarray(labels)
  if per_class < 1:
    raise VisionInputError(f"images per class must be >= 1, got {per_class}",
                           field="data.per_class")
  rng = np.random.default_rng(seed)
  rows = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
  return np.sort(np.concatenate(rows))
