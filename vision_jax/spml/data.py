"""SPML data sets: splits with hidden full labels and drawn single positives.

Protocol (as the reference): a pool of fully labelled training rows and a test set; one positive
per pool row is observed (drawn once with a seed, `labels.draw_observed`), then 20% of the pool is
held out as a fully labelled validation split for model selection. Training sees only the
observed labels (except BCE/BCE-LS/IUN, which by definition read the full ones); the hidden full
training labels are kept for the label-recovery metric (training-set MAP).

Sources:
- `load_yeast`: MULAN yeast (`data/yeast/yeast.csv.gz`, 103 features, 14 labels). The file has no
  split: a seeded test split of MULAN's size (917 of 2,417 rows) is drawn; features are
  standardised with the statistics of the training split.
- `load_published`: the reference's formatted files in one folder (VOC12, COCO, NUS-WIDE, CUB):
  `formatted_{train,val}_labels.npy` (N, L) 0/1, optional `formatted_{train,val}_labels_obs.npy`
  (the published observed labels; used when present), `formatted_{train,val}_images.npy` (image
  file names, relative to the image folder) and optional pre-extracted features
  `{train,val}_features_<name>.npy`. The official val split is our test split.
- `vision_jax.spml.composite.load_digits`: multi-digit images built from real MNIST digits.
"""
from __future__ import annotations

import dataclasses
import gzip
import os
from typing import Any

import numpy as np

from vision_jax.errors import VisionInputError
from vision_jax.spml import labels as lab

YEAST_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "data", "yeast", "yeast.csv.gz")
YEAST_TEST_ROWS = 917  # MULAN's yeast-test.arff size


@dataclasses.dataclass
class Split:
  x: Any                         # (N, D) float32 features, or images (see composite/images)
  labels: np.ndarray             # (N, L) uint8 full labels (hidden from training for SPML losses)
  observed: np.ndarray | None    # (N, L) int8 {−1, 0, 1} (training split only)

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass
class SPMLData:
  name: str
  train: Split
  val: Split
  test: Split
  class_names: list[str]
  skipped: int = 0               # pool rows without positives left out (data.empty_rows=skip)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def k_from_data(self) -> float:
    """Mean positives per row of the fully labelled validation split (what a practitioner can
    measure), used as EPR/ROLE's k when the config gives none."""
    return lab.expected_positives(self.val.labels)


def check_counts(x: Any, labels: np.ndarray, *, file=None, what: str = "features") -> None:
  if len(x) != len(labels):
    raise VisionInputError(f"{len(x)} rows of {what} but {len(labels)} rows of labels: they must "
                           "describe the same examples in the same order", file=file, field=what)


def make_splits(name: str, x_pool: Any, y_pool, x_test: Any, y_test, *, class_names=None,
                observed_pool=None, seed: int = 1200, split_seed: int = 1200,
                val_frac: float = 0.2, empty: str = "error", num_neg: int = 0,
                file=None) -> SPMLData:
  """Draws observed labels on the pool (unless given), then splits off validation rows."""
  y_pool = lab.check_binary(y_pool, file=file, field="train labels")
  y_test = lab.check_binary(y_test, file=file, field="test labels")
  check_counts(x_pool, y_pool, file=file)
  check_counts(x_test, y_test, file=file)
  if y_pool.shape[1] != y_test.shape[1]:
    raise VisionInputError(f"train labels have {y_pool.shape[1]} classes, test labels "
                           f"{y_test.shape[1]}", file=file, field="labels")
  if observed_pool is None:
    drawn = lab.draw_observed(y_pool, seed=seed, num_neg=num_neg, empty=empty, file=file)
    observed, kept, skipped = drawn.observed, drawn.kept, drawn.skipped
  else:
    observed = lab.check_observed(observed_pool, num_classes=y_pool.shape[1], file=file)
    if observed.shape[0] != y_pool.shape[0]:
      raise VisionInputError(f"{observed.shape[0]} rows of observed labels but "
                             f"{y_pool.shape[0]} rows of labels", file=file, field="observed")
    kept, skipped = np.arange(len(y_pool)), 0
    contradict = ((observed == 1) & (y_pool == 0)) | ((observed == -1) & (y_pool == 1))
    if contradict.any():
      r = int(np.argwhere(contradict)[0][0])
      raise VisionInputError("observed labels contradict the full labels", file=file, row=r,
                             field="observed")
  y_pool = y_pool[kept]
  x_pool = _take(x_pool, kept)
  tr, va = lab.train_val_split(len(y_pool), val_frac, split_seed)
  names = list(class_names) if class_names is not None else [
      str(j) for j in range(y_pool.shape[1])]
  return SPMLData(name=name, class_names=names,
                  train=Split(_take(x_pool, tr), y_pool[tr], observed[tr]),
                  val=Split(_take(x_pool, va), y_pool[va], None),
                  test=Split(x_test, y_test, None), skipped=skipped)


def _take(x: Any, idx: np.ndarray) -> Any:
  return x.subset(idx) if hasattr(x, "subset") else np.asarray(x)[idx]


def read_yeast(path: str = YEAST_FILE) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """(features (N, 103) float32, labels (N, 14) uint8, label names) from the yeast CSV."""
  import pandas as pd
  if not os.path.isfile(path):
    raise VisionInputError("yeast CSV not found", file=path)
  try:
    frame = pd.read_csv(path)
  except (ValueError, OSError, gzip.BadGzipFile) as e:
    raise VisionInputError(f"cannot read CSV: {e}", file=path) from e
  label_cols = [c for c in frame.columns if c.startswith("label")]
  feat_cols = [c for c in frame.columns if c.startswith("x")]
  if not label_cols or not feat_cols or len(label_cols) + len(feat_cols) != frame.shape[1]:
    raise VisionInputError("expected columns label1..labelL then x1..xD, got "
                           f"{list(frame.columns[:5])}...", file=path, field="columns")
  y = frame[label_cols].to_numpy()
  x = frame[feat_cols].to_numpy(np.float64)
  bad = ~np.isfinite(x)
  if bad.any():
    r, c = np.argwhere(bad)[0]
    raise VisionInputError("non-finite feature", file=path, row=int(r) + 2, field=feat_cols[c])
  return x.astype(np.float32), lab.check_binary(y, file=path), label_cols


def standardize(data: SPMLData) -> SPMLData:
  """Z-scores features with the training split's mean and std (constant columns kept at 0)."""
  mean = data.train.x.mean(axis=0)
  std = data.train.x.std(axis=0)
  std = np.where(std > 0, std, 1.0)
  f = lambda x: ((x - mean) / std).astype(np.float32)
  return dataclasses.replace(
      data, train=dataclasses.replace(data.train, x=f(data.train.x)),
      val=dataclasses.replace(data.val, x=f(data.val.x)),
      test=dataclasses.replace(data.test, x=f(data.test.x)))


def load_yeast(path: str = YEAST_FILE, *, seed: int = 1200, split_seed: int = 1200,
               test_seed: int = 0, val_frac: float = 0.2, empty: str = "error",
               num_neg: int = 0, standardise: bool = True) -> SPMLData:
  x, y, names = read_yeast(path)
  perm = np.random.default_rng(test_seed).permutation(len(y))
  test, pool = np.sort(perm[:YEAST_TEST_ROWS]), np.sort(perm[YEAST_TEST_ROWS:])
  data = make_splits("yeast", x[pool], y[pool], x[test], y[test], class_names=names, seed=seed,
                     split_seed=split_seed, val_frac=val_frac, empty=empty, num_neg=num_neg,
                     file=path)
  return standardize(data) if standardise else data


def _load_npy(path: str, *, required: bool = True, allow_pickle: bool = False):
  if not os.path.isfile(path):
    if required:
      raise VisionInputError("file not found", file=path)
    return None
  try:
    return np.load(path, allow_pickle=allow_pickle)
  except (ValueError, OSError) as e:
    raise VisionInputError(f"cannot read .npy: {e}", file=path) from e


def read_image_list(path: str) -> list[str]:
  """Image file names from `formatted_*_images.npy` (a numpy string array, read without pickle)
  or a text file with one name per line."""
  if path.endswith(".npy"):
    names = _load_npy(path)
    if names.dtype.kind not in "US":
      raise VisionInputError(f"image list holds {names.dtype}, not strings (object arrays are "
                             "not read: they would need pickle)", file=path)
    return [str(n) for n in names.reshape(-1)]
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()]


def load_published(root: str, *, features: str | None = "imagenet_resnet50",
                   images_dir: str | None = None, image_size: int = 448, seed: int = 1200,
                   split_seed: int = 1200, val_frac: float = 0.2,
                   empty: str = "error") -> SPMLData:
  """The reference's formatted data in `root` (see module docstring).

  With `features` set, x is the pre-extracted feature matrix (linear protocol); with
  `features=None`, x is an `ImageList` reading `images_dir/<name>` (fine-tune protocol).
  """
  if not os.path.isdir(root):
    raise VisionInputError("SPML data folder not found", file=root)
  y, x, obs = {}, {}, None
  for phase in ("train", "val"):
    y[phase] = lab.check_binary(_load_npy(os.path.join(root, f"formatted_{phase}_labels.npy")),
                                file=os.path.join(root, f"formatted_{phase}_labels.npy"))
    if features:
      path = os.path.join(root, f"{phase}_features_{features}.npy")
      x[phase] = np.asarray(_load_npy(path), np.float32)
      if x[phase].ndim != 2:
        raise VisionInputError(f"features must be (N, D), got {x[phase].shape}", file=path)
      check_counts(x[phase], y[phase], file=path)
    else:
      from vision_jax.spml.images import ImageList
      path = os.path.join(root, f"formatted_{phase}_images.npy")
      names = read_image_list(path)
      check_counts(names, y[phase], file=path, what="image names")
      x[phase] = ImageList(names, images_dir or root, image_size)
  obs_path = os.path.join(root, "formatted_train_labels_obs.npy")
  obs = _load_npy(obs_path, required=False)
  return make_splits(os.path.basename(os.path.normpath(root)), x["train"], y["train"], x["val"],
                     y["val"], observed_pool=obs, seed=seed, split_seed=split_seed,
                     val_frac=val_frac, empty=empty, file=root)
