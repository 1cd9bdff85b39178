"""Data: the real yeast file, the protocol's splits, the published SPML formats, the composite
digit images, and bad-input errors."""
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vision_jax.errors import VisionInputError
from vision_jax.spml import composite, data


def test_yeast_file_is_the_mulan_set():
  x, y, names = data.read_yeast()
  assert x.shape == (2417, 103) and y.shape == (2417, 14) and len(names) == 14
  assert y.sum(1).min() >= 1
  assert y.sum(1).mean() == pytest.approx(4.237, abs=1e-3)  # MULAN's label cardinality


def test_yeast_protocol_splits():
  d = data.load_yeast()
  assert (len(d.train), len(d.val), len(d.test)) == (1200, 300, 917)
  assert d.num_classes == 14 and d.skipped == 0
  np.testing.assert_array_equal(d.train.observed.sum(1), 1)
  assert (d.train.labels[d.train.observed == 1] == 1).all()
  np.testing.assert_allclose(d.train.x.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(d.train.x.std(0), 1, atol=1e-4)
  assert d.val.observed is None and d.test.observed is None
  assert 3.5 < d.k_from_data() < 5.0
  again = data.load_yeast()
  np.testing.assert_array_equal(again.train.observed, d.train.observed)


def test_yeast_reader_rejects_bad_files(tmp_path):
  x, y, names = data.read_yeast()
  frame = pd.DataFrame(np.c_[y[:5], x[:5]], columns=names + [f"x{i + 1}" for i in range(103)])
  frame.loc[2, "label3"] = 2
  path = tmp_path / "bad.csv"
  frame.to_csv(path, index=False)
  with pytest.raises(VisionInputError, match="only 0 and 1"):
    data.read_yeast(str(path))
  frame.loc[2, "label3"] = 1
  frame.loc[1, "x7"] = np.nan
  frame.to_csv(path, index=False)
  with pytest.raises(VisionInputError, match="non-finite") as e:
    data.read_yeast(str(path))
  assert e.value.row == 3 and e.value.field == "x7"


def test_mismatched_feature_and_label_counts():
  y = np.eye(4, dtype=np.uint8)
  with pytest.raises(VisionInputError, match="5 rows of features but 4 rows of labels"):
    data.make_splits("x", np.zeros((5, 3)), y, np.zeros((4, 3)), y)
  with pytest.raises(VisionInputError, match="classes"):
    data.make_splits("x", np.zeros((4, 3)), y, np.zeros((4, 3)), y[:, :3])


def _write_published(root, rng, n_train=50, n_val=20, l=6, d=8, obs=True, images=False):
  for phase, n in (("train", n_train), ("val", n_val)):
    y = (rng.random((n, l)) < 0.3).astype(np.float64)
    y[np.arange(n), rng.integers(0, l, n)] = 1
    np.save(root / f"formatted_{phase}_labels.npy", y)
    np.save(root / f"{phase}_features_imagenet_resnet50.npy", rng.normal(size=(n, d)))
    names = np.array([f"{phase}_{i:03d}.png" for i in range(n)])
    np.save(root / f"formatted_{phase}_images.npy", names)
    if images:
      for name in names:
        Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(root / name)
    if obs and phase == "train":
      o = np.zeros_like(y)
      for i in range(n):
        o[i, rng.choice(np.flatnonzero(y[i]))] = 1
      np.save(root / "formatted_train_labels_obs.npy", o)


def test_published_format_features_and_observed(tmp_path):
  _write_published(tmp_path, np.random.default_rng(0))
  d = data.load_published(str(tmp_path))
  assert (len(d.train), len(d.val), len(d.test)) == (40, 10, 20)
  assert d.train.x.shape == (40, 8) and d.train.x.dtype == np.float32
  full = np.load(tmp_path / "formatted_train_labels.npy")
  obs = np.load(tmp_path / "formatted_train_labels_obs.npy")
  # The published observed labels are used as given (rows keep their pairing with labels).
  rows = [np.flatnonzero((full == d.train.labels[i]).all(1) & (obs == d.train.observed[i]).all(1))
          for i in range(len(d.train))]
  assert all(len(r) >= 1 for r in rows)


def test_published_format_images_and_errors(tmp_path):
  rng = np.random.default_rng(1)
  _write_published(tmp_path, rng, obs=False, images=True)
  d = data.load_published(str(tmp_path), features=None, image_size=16)
  batch = d.train.x.batch(np.array([0, 3]))
  assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.uint8
  np.testing.assert_array_equal(d.train.observed.sum(1), 1)
  os.remove(tmp_path / d.train.x.names[3])
  with pytest.raises(VisionInputError, match="cannot decode image"):
    d.train.x.batch(np.array([3]))
  np.save(tmp_path / "val_features_imagenet_resnet50.npy", rng.normal(size=(19, 8)))
  with pytest.raises(VisionInputError, match="19 rows of features but 20 rows of labels"):
    data.load_published(str(tmp_path))
  labels = np.load(tmp_path / "formatted_val_labels.npy")
  labels[0, 0] = 3
  np.save(tmp_path / "formatted_val_labels.npy", labels)
  with pytest.raises(VisionInputError, match="only 0 and 1"):
    data.load_published(str(tmp_path))


def test_composite_labels_are_the_digits_drawn():
  digits = np.stack([np.full((4, 4), 10 * (c + 1), np.uint8) for c in range(10)])
  classes = np.arange(10)
  images, labels = composite.compose(digits, classes, num_images=200, seed=0)
  assert images.shape == (200, 8, 8, 1)
  for img, lab in zip(images, labels):
    cells = img[:, :, 0].reshape(2, 4, 2, 4).transpose(0, 2, 1, 3).reshape(4, 16)
    present = {int(c[0]) // 10 - 1 for c in cells if c[0] > 0}
    assert set(np.flatnonzero(lab)) == present
    assert 2 <= (cells[:, 0] > 0).sum() <= 4


def test_digit_set_from_real_mnist():
  d = composite.load_digits(num_train=100, num_test=30, cell=12)
  assert (len(d.train), len(d.val), len(d.test)) == (80, 20, 30)
  assert d.train.x.shape == (24, 24, 3) and d.num_classes == 10
  assert d.train.x.batch(np.arange(4)).max() > 200  # real ink, not blank canvases
  assert 1.5 < d.train.labels.sum(1).mean() < 3.5
  iu = composite.load_digits(num_train=100, num_test=30, cell=12, num_neg=1)
  np.testing.assert_array_equal((iu.train.observed == -1).sum(1), 1)
  np.testing.assert_array_equal(iu.train.observed == 1, d.train.observed == 1)
