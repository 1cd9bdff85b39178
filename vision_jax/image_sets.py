"""Labelled image sets with their official splits, read from the user's own copies in their
published layouts (nothing is downloaded), or built from the bundled sets.

  open_image_set("cub:/data/CUB_200_2011")   -> ImageSet (one row per image: label, split)

  cub:<root>            CUB-200-2011: images.txt (<id> <path>), image_class_labels.txt
                        (<id> <class>), train_test_split.txt (<id> <1 train | 0 test>),
                        classes.txt (<class> <name>), images/<path>; root is the folder
                        holding them or its parent
  nabirds:<root>        NABirds: the same four files (ids are UUIDs; class ids are nodes of
                        hierarchy.txt, and only those with images are classes)
  flowers102:<root>     Oxford Flowers 102: imagelabels.mat (labels, 1-based), setid.mat
                        (trnid, valid, tstid: train, val, test), jpg/image_NNNNN.jpg
  stanford_dogs:<root>  train_list.mat, test_list.mat (file_list, labels 1-based),
                        Images/<wnid>-<breed>/<file>
  stanford_cars:<root>  cars_annos.mat (annotations: relative_im_path, class 1-based, test;
                        class_names) + car_ims/; or the devkit layout: devkit/
                        cars_train_annos.mat + cars_train/, cars_test_annos_withlabels.mat
                        (in root or devkit/) + cars_test/, devkit/cars_meta.mat (class_names)
  inat2021:<root>       train.json (inat2021_mini: train_mini.json) and val.json, COCO style
                        (images: id, file_name relative to root; annotations: image_id,
                        category_id; categories: name, kingdom … genus); val is the test
                        split; the categories give the taxonomy
  folder:<root>         root/train/<class>/… and root/test (or val)/<class>/…
  mnist_5k, sklearn_digits, skimage_photos, fashion_mnist: the bundled sets and their splits

Class indices follow the sorted class ids of the annotation files (as the NeWT benchmark's
readers do). Missing files are not an error here: `ImageSet.missing()` names them, and the
evaluation decides (vision_jax.evaluate_representation: refuse, or count them).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import numpy as np

from ecorep.taxonomy import Taxonomy, TaxonomyError
from vision_jax import datasets
from vision_jax.errors import VisionInputError
from vision_jax.sources import ArraySource, FileListSource, ImageFolderSource, SubsetSource

SPLITS = ("train", "val", "test")
INAT_LEVELS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")


@dataclasses.dataclass
class ImageSet:
  """All images of a data set, one row each, with the official split of every row."""
  name: str
  source: Any                       # random access over every row (FileListSource, ArraySource)
  labels: np.ndarray                # (N,) int32 class index
  splits: np.ndarray                # (N,) str: train | val | test
  class_names: list[str]
  ids: np.ndarray | None = None     # (N,) str: the release's image ids (or paths)
  small_image: bool = False         # bundled small-image sets: plain resize, no crop
  taxonomy: Taxonomy | None = None  # where the release carries a hierarchy (iNat2021)

  def __post_init__(self):
    self.labels = np.asarray(self.labels, np.int32)
    self.splits = np.asarray(self.splits, str)
    if not len(self.labels) == len(self.splits) == len(self.source):
      raise VisionInputError(f"{self.name}: {len(self.source)} images, {len(self.labels)} "
                             f"labels, {len(self.splits)} split entries", field="labels")
    bad = sorted(set(np.unique(self.splits).tolist()) - set(SPLITS))
    if bad:
      raise VisionInputError(f"{self.name}: unknown split(s) {bad}; known: {SPLITS}",
                             field="split")

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def rows(self, split: str) -> np.ndarray:
    return np.flatnonzero(self.splits == split)

  def subset(self, rows) -> "ImageSet":
    """The same data set restricted to `rows` (e.g. a fixed sample of a large split)."""
    rows = np.asarray(rows, np.int64)
    return dataclasses.replace(self, source=SubsetSource(self.source, rows),
                               labels=self.labels[rows], splits=self.splits[rows],
                               ids=None if self.ids is None else self.ids[rows])

  def train_test(self, features: np.ndarray, ok: np.ndarray | None = None, *,
                 train_splits: tuple[str, ...] = ("train",)) -> "TrainTest":
    """Training and test rows of `features` (N, D). Rows whose image could not be read
    (`ok` False) leave the training set (counted) and stay in the test set's count as errors."""
    features = np.asarray(features)
    if features.ndim != 2 or len(features) != len(self):
      raise VisionInputError(f"{len(features)} feature rows for the {len(self)} images of "
                             f"{self.name}: features and labels differ in length",
                             field="features")
    ok = np.ones(len(self), bool) if ok is None else np.asarray(ok, bool)
    train = np.isin(self.splits, train_splits)
    test = self.splits == "test"
    if not train.any() or not test.any():
      raise VisionInputError(f"{self.name} needs training ({'+'.join(train_splits)}) and test "
                             "images", field="split")
    return TrainTest(features[train & ok], self.labels[train & ok], features[test & ok],
                     self.labels[test & ok], int(np.sum(test & ~ok)),
                     int(np.sum(train & ~ok)))

  def missing(self) -> list[tuple[int, str]]:
    """(row, path) of every listed file that does not exist."""
    paths = getattr(self.source, "paths", None)
    if paths is None:
      return []
    return [(i, p) for i, p in enumerate(paths) if not os.path.isfile(p)]


@dataclasses.dataclass
class TrainTest:
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray      # readable test images only
  y_test: np.ndarray
  failed_test: int        # unreadable test images: scored as errors
  skipped_train: int      # unreadable training images: left out

  def accuracy(self, predictions: np.ndarray) -> float:
    """Top-1 over every test image, unreadable ones counted as wrong."""
    total = len(self.y_test) + self.failed_test
    return float(np.sum(np.asarray(predictions) == self.y_test) / total) if total else np.nan


# ---------------------------------------------------------------------------------- helpers

def _need(path: str, what: str) -> str:
  if not os.path.isfile(path):
    raise VisionInputError(f"{what} not found (is this the data set's folder?)", file=path)
  return path


def _pairs(path: str) -> list[tuple[int, str, str]]:
  """(line, key, value) of a `<key> <value>` text file; blank lines skipped."""
  out = []
  with open(_need(path, os.path.basename(path)), encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      parts = line.split(maxsplit=1)
      if len(parts) != 2:
        raise VisionInputError(f"expected '<id> <value>', got {line!r}", file=path, row=line_no)
      out.append((line_no, parts[0], parts[1]))
  return out


def _table(path: str) -> dict[str, tuple[int, str]]:
  table: dict[str, tuple[int, str]] = {}
  for line_no, key, value in _pairs(path):
    if key in table:
      raise VisionInputError(f"id {key!r} listed twice (first on line {table[key][0]})",
                             file=path, row=line_no, field="id")
    table[key] = (line_no, value)
  return table


def _int(value: str, path: str, row: int, field: str) -> int:
  try:
    return int(value)
  except ValueError:
    raise VisionInputError(f"{field} must be an integer, got {value!r}", file=path, row=row,
                           field=field) from None


def _loadmat(path: str) -> dict:
  from scipy.io import loadmat
  try:
    return loadmat(_need(path, os.path.basename(path)), squeeze_me=True)
  except (ValueError, TypeError, OSError, NotImplementedError) as e:
    raise VisionInputError(f"not a readable MATLAB file ({e})", file=path) from e


def _mat_array(mat: dict, key: str, path: str) -> np.ndarray:
  if key not in mat:
    keys = sorted(k for k in mat if not k.startswith("__"))
    raise VisionInputError(f"no variable '{key}' (found {keys})", file=path, field=key)
  return np.atleast_1d(np.asarray(mat[key]))


def _struct_field(structs: np.ndarray, key: str, path: str) -> list:
  names = structs.dtype.names or ()
  if key not in names:
    raise VisionInputError(f"annotations have no field '{key}' (fields: {list(names)})",
                           file=path, field=key)
  return [np.asarray(v).item() if np.asarray(v).size == 1 else v for v in structs[key]]


def _one_based(values, path: str, field: str, num_classes: int | None = None) -> np.ndarray:
  labels = np.asarray(values).astype(np.int64).reshape(-1)
  if labels.size and labels.min() < 1:
    row = int(np.argmin(labels))
    raise VisionInputError(f"labels are 1-based, found {labels[row]}", file=path, row=row,
                           field=field)
  if num_classes is not None and labels.size and labels.max() > num_classes:
    row = int(np.argmax(labels))
    raise VisionInputError(f"label {labels[row]} but only {num_classes} classes", file=path,
                           row=row, field=field)
  return (labels - 1).astype(np.int32)


def _file_set(name, root, paths, labels, splits, class_names, ids=None, taxonomy=None):
  return ImageSet(name, FileListSource([os.path.join(root, p) for p in paths], labels), labels,
                  splits, list(class_names), None if ids is None else np.asarray(ids, str),
                  taxonomy=taxonomy)


# ------------------------------------------------------------------------------------ readers

def _cub_base(root: str) -> str:
  for base in (root, os.path.join(root, "CUB_200_2011")):
    if os.path.isfile(os.path.join(base, "images.txt")):
      return base
  return root


def read_cub_layout(root: str, name: str) -> ImageSet:
  """The four CUB-style text files (CUB-200-2011 and NABirds share them)."""
  base = _cub_base(root)
  files = {k: os.path.join(base, f"{k}.txt") for k in
           ("images", "image_class_labels", "train_test_split", "classes")}
  images, labels_txt = _table(files["images"]), _table(files["image_class_labels"])
  split_txt, classes = _table(files["train_test_split"]), _table(files["classes"])
  ids = list(images)
  for key, path in (("image_class_labels", labels_txt), ("train_test_split", split_txt)):
    absent = [i for i in ids if i not in path]
    if absent:
      raise VisionInputError(f"{len(absent)} image id(s) of images.txt have no entry, e.g. "
                             f"{absent[0]!r}", file=files[key], field="id")
  class_ids = [_int(labels_txt[i][1], files["image_class_labels"], labels_txt[i][0], "class_id")
               for i in ids]
  used = sorted(set(class_ids))
  index = {c: k for k, c in enumerate(used)}
  names = {_int(k, files["classes"], line, "class_id"): v for k, (line, v) in classes.items()}
  unnamed = [c for c in used if c not in names]
  if unnamed:
    raise VisionInputError(f"class id {unnamed[0]} has no name", file=files["classes"],
                           field="class_id")
  splits = []
  for i in ids:
    line, flag = split_txt[i]
    if flag not in ("0", "1"):
      raise VisionInputError(f"is_training_image must be 0 or 1, got {flag!r}",
                             file=files["train_test_split"], row=line,
                             field="is_training_image")
    splits.append("train" if flag == "1" else "test")
  return _file_set(name, os.path.join(base, "images"), [images[i][1] for i in ids],
                   [index[c] for c in class_ids], splits, [names[c] for c in used], ids)


def read_cub(root: str) -> ImageSet:
  return read_cub_layout(root, "cub")


def read_nabirds(root: str) -> ImageSet:
  return read_cub_layout(root, "nabirds")


def read_flowers102(root: str) -> ImageSet:
  labels_path, setid_path = os.path.join(root, "imagelabels.mat"), os.path.join(root, "setid.mat")
  labels = _one_based(_mat_array(_loadmat(labels_path), "labels", labels_path), labels_path,
                      "labels")
  setid = _loadmat(setid_path)
  rows, splits = [], []
  for key, split in (("trnid", "train"), ("valid", "val"), ("tstid", "test")):
    ids = _mat_array(setid, key, setid_path).astype(np.int64)
    if ids.size and (ids.min() < 1 or ids.max() > len(labels)):
      raise VisionInputError(f"image numbers must lie in 1..{len(labels)}", file=setid_path,
                             field=key)
    rows += ids.tolist()
    splits += [split] * len(ids)
  num_classes = int(labels.max()) + 1 if labels.size else 0
  paths = [f"image_{i:05d}.jpg" for i in rows]
  return _file_set("flowers102", os.path.join(root, "jpg"), paths,
                   labels[np.asarray(rows, np.int64) - 1], splits,
                   [f"{k + 1:03d}" for k in range(num_classes)], paths)


def read_stanford_dogs(root: str) -> ImageSet:
  paths, labels, splits = [], [], []
  for split, file in (("train", "train_list.mat"), ("test", "test_list.mat")):
    path = os.path.join(root, file)
    mat = _loadmat(path)
    files = [str(f) for f in _mat_array(mat, "file_list", path)]
    lab = _one_based(_mat_array(mat, "labels", path), path, "labels")
    if len(files) != len(lab):
      raise VisionInputError(f"{len(files)} files but {len(lab)} labels", file=path,
                             field="labels")
    paths += files
    labels += lab.tolist()
    splits += [split] * len(files)
  num_classes = max(labels) + 1 if labels else 0
  names = [f"class {k + 1}" for k in range(num_classes)]
  for p, lab in zip(paths, labels):  # Images/n02085620-Chihuahua/...: the breed after the wnid
    folder = p.replace("\\", "/").split("/")[0]
    names[lab] = folder.split("-", 1)[1] if "-" in folder else folder
  return _file_set("stanford_dogs", os.path.join(root, "Images"), paths, labels, splits, names,
                   paths)


def read_stanford_cars(root: str) -> ImageSet:
  combined = os.path.join(root, "cars_annos.mat")
  if os.path.isfile(combined):
    mat = _loadmat(combined)
    anns = _mat_array(mat, "annotations", combined)
    paths = [str(p) for p in _struct_field(anns, "relative_im_path", combined)]
    labels = _one_based(_struct_field(anns, "class", combined), combined, "class")
    splits = ["test" if int(t) else "train" for t in _struct_field(anns, "test", combined)]
    names = [str(n) for n in _mat_array(mat, "class_names", combined)]
    return _cars(root, paths, labels, splits, names, combined)
  devkit = os.path.join(root, "devkit")
  test_file = next((p for p in (os.path.join(root, "cars_test_annos_withlabels.mat"),
                                os.path.join(devkit, "cars_test_annos_withlabels.mat"))
                    if os.path.isfile(p)), os.path.join(root, "cars_test_annos_withlabels.mat"))
  paths, labels, splits = [], [], []
  for split, folder, file in (("train", "cars_train", os.path.join(devkit, "cars_train_annos.mat")),
                              ("test", "cars_test", test_file)):
    anns = _mat_array(_loadmat(file), "annotations", file)
    names_here = [str(p) for p in _struct_field(anns, "fname", file)]
    paths += [os.path.join(folder, p) for p in names_here]
    labels += _one_based(_struct_field(anns, "class", file), file, "class").tolist()
    splits += [split] * len(names_here)
  meta = os.path.join(devkit, "cars_meta.mat")
  names = [str(n) for n in _mat_array(_loadmat(meta), "class_names", meta)]
  return _cars(root, paths, np.asarray(labels, np.int32), splits, names, meta)


def _cars(root, paths, labels, splits, names, where) -> ImageSet:
  if labels.size and labels.max() >= len(names):
    raise VisionInputError(f"class {labels.max() + 1} but {len(names)} class names", file=where,
                           field="class")
  return _file_set("stanford_cars", root, paths, labels, splits, names, paths)


def read_inat2021(root: str, train_file: str = "train.json", name: str = "inat2021") -> ImageSet:
  """iNat2021 (or its mini training set): the training json and val.json as the test split."""
  categories, paths, cats, splits, ids = None, [], [], [], []
  for split, file in (("train", train_file), ("test", "val.json")):
    path = os.path.join(root, file)
    try:
      with open(_need(path, file), encoding="utf-8") as f:
        doc = json.load(f)
    except json.JSONDecodeError as e:
      raise VisionInputError(f"not valid JSON ({e})", file=path) from e
    for key in ("images", "annotations", "categories"):
      if not isinstance(doc.get(key), list):
        raise VisionInputError(f"no '{key}' list", file=path, field=key)
    if categories is None:
      categories = doc["categories"]
    files = {}
    for k, image in enumerate(doc["images"]):
      if "id" not in image or "file_name" not in image:
        raise VisionInputError("image entry without id or file_name", file=path, row=k,
                               field="images")
      files[image["id"]] = image["file_name"]
    for k, ann in enumerate(doc["annotations"]):
      if ann.get("image_id") not in files:
        raise VisionInputError(f"annotation for unknown image {ann.get('image_id')!r}",
                               file=path, row=k, field="image_id")
      paths.append(files[ann["image_id"]])
      cats.append(ann.get("category_id"))
      splits.append(split)
      ids.append(f"{split}/{ann['image_id']}")
  by_id = {c.get("id"): c for c in categories}
  order = sorted(by_id)
  index = {c: k for k, c in enumerate(order)}
  unknown = [c for c in cats if c not in index]
  if unknown:
    raise VisionInputError(f"category {unknown[0]!r} is not in the categories",
                           file=os.path.join(root, train_file), field="category_id")
  names = [str(by_id[c].get("name", c)) for c in order]
  return _file_set(name, root, paths, [index[c] for c in cats], splits, names, ids,
                   _inat_taxonomy([by_id[c] for c in order], names,
                                  os.path.join(root, train_file)))


def _inat_taxonomy(categories: list[dict], names: list[str], path: str) -> Taxonomy | None:
  if not all(all(k in c for k in INAT_LEVELS[:-1]) for c in categories):
    return None
  rows = [[str(c[k]) for k in INAT_LEVELS[:-1]] + [n] for c, n in zip(categories, names)]
  try:
    return Taxonomy.from_table(rows, INAT_LEVELS, source=path)
  except TaxonomyError as e:
    raise VisionInputError(f"the categories do not form a consistent taxonomy: {e.message}",
                           file=path, field="categories") from e


def read_folder(root: str) -> ImageSet:
  """root/train/<class>/… and root/test (or val)/<class>/…; files are read when extracted."""
  test_dir = next((os.path.join(root, d) for d in ("test", "val")
                   if os.path.isdir(os.path.join(root, d))), None)
  if not os.path.isdir(os.path.join(root, "train")) or test_dir is None:
    raise VisionInputError("folder data sets need <root>/train and <root>/test (or val)",
                           file=root)
  train = ImageFolderSource(os.path.join(root, "train"), verify=False)
  test = ImageFolderSource(test_dir, class_names=train.class_names, verify=False,
                           skip_empty_classes=True)
  paths = train.paths + test.paths
  labels = np.concatenate([train.labels, test.labels])
  splits = ["train"] * len(train.paths) + ["test"] * len(test.paths)
  return ImageSet("folder", FileListSource(paths, labels), labels, splits, train.class_names,
                  np.asarray([os.path.relpath(p, root) for p in paths], str))


def bundled(name: str) -> ImageSet:
  """A bundled set (vision_jax.datasets) as one ImageSet over its train and test splits."""
  info = datasets.DATASETS.get(name)
  if info is None:
    raise VisionInputError(f"unknown data set '{name}'", field="data")
  (x, y), (xt, yt) = info.loader("train"), info.loader("test")
  labels = np.concatenate([y, yt]).astype(np.int32)
  images = np.concatenate([x, xt])
  splits = ["train"] * len(y) + ["test"] * len(yt)
  names = datasets.class_names(name)
  taxonomy = datasets.hierarchy(name)
  return ImageSet(name, ArraySource(images, labels), labels, splits, names,
                  np.asarray([f"{s}/{i}" for s, i in zip(splits, range(len(labels)))], str),
                  small_image=info.small_image, taxonomy=taxonomy)


READERS: dict[str, Callable[[str], ImageSet]] = {
    "cub": read_cub, "nabirds": read_nabirds, "flowers102": read_flowers102,
    "stanford_dogs": read_stanford_dogs, "stanford_cars": read_stanford_cars,
    "inat2021": read_inat2021,
    "inat2021_mini": lambda root: read_inat2021(root, "train_mini.json", "inat2021_mini"),
    "folder": read_folder,
}


def open_image_set(spec: str) -> ImageSet:
  """`<kind>:<root>` (READERS) or a bundled set's name."""
  kind, sep, root = spec.partition(":")
  if not sep:
    if kind in datasets.DATASETS:
      return bundled(kind)
    raise VisionInputError(f"unknown data set '{spec}'; use <kind>:<root> with kind one of "
                           f"{', '.join(READERS)}, or one of "
                           f"{', '.join(sorted(datasets.DATASETS))}", field="data")
  if kind not in READERS:
    raise VisionInputError(f"unknown data set kind '{kind}'; known: {', '.join(READERS)}",
                           field="data")
  if not os.path.isdir(root):
    raise VisionInputError(f"{kind}: folder not found", file=root, field="data")
  image_set = READERS[kind](root)
  if not len(image_set):
    raise VisionInputError(f"{kind}: no images listed", file=root, field="data")
  return image_set
