"""Random-access image sources for the grain pipelines.

Every source has `len(source)`, `source[i] -> {'image': uint8 (H, W, 3), 'label': int32}` and a
`labels` array (int32, one per item). Images come back as 3-channel uint8 whatever the file held:
grayscale is replicated, alpha is dropped (as TF's `decode_png(channels=3)` and torchvision's
loader do), 16-bit samples keep their high byte (what Pillow does for 16-bit RGB), palettes are
expanded. EXIF orientation is not applied (neither TFDS nor torchvision applies it).

Unreadable files: `strict=True` raises VisionInputError naming the file; by default they are
skipped and counted (`source.skipped`). ImageFolderSource finds them when it scans (`verify=True`
decodes every file once); anything that fails later, at read time, is replaced by the next
readable item and counted in `source.read_failures` (in that process only).
"""
from __future__ import annotations

import bisect
import concurrent.futures
import io
import logging
import os
import struct
import warnings
from typing import Any, Sequence

import numpy as np
from PIL import Image

from vision_jax.errors import VisionInputError

_log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")
# ArrayRecord record layout: magic, little-endian int64 label, then the encoded image file.
RECORD_MAGIC = b"EIR1"
_HEADER = struct.Struct("<4sq")


def to_rgb(image: Image.Image) -> np.ndarray:
  """A decoded PIL image as uint8 (H, W, 3)."""
  if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
    # 16-bit grayscale: keep the high byte, as Pillow does for 16-bit RGB. Mode "I" (32-bit) is
    # how some readers return 16-bit PNGs, so it is taken to hold 16-bit values.
    gray = (np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)
  if image.mode != "RGB":
    with warnings.catch_warnings():  # Pillow warns about palette transparency it then drops
      warnings.simplefilter("ignore")
      image = image.convert("RGB")
  return np.asarray(image, dtype=np.uint8)


def array_to_rgb(array: np.ndarray, *, where: str = "image") -> np.ndarray:
  """A uint8 array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) as (H, W, 3)."""
  array = np.asarray(array)
  if array.dtype != np.uint8:
    raise VisionInputError(f"images must be uint8, got {array.dtype}", field=where)
  if array.ndim == 2:
    array = array[:, :, None]
  if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape[:2]:
    raise VisionInputError(f"an image must be (H, W), (H, W, 1|3|4), got shape {array.shape}",
                           field=where)
  if array.shape[2] == 1:
    return np.repeat(array, 3, axis=2)
  return array[:, :, :3]


def decode(data: bytes | str | os.PathLike, *, draft: bool = False) -> np.ndarray:
  """Decodes an encoded image (bytes or a path) to uint8 (H, W, 3); raises what Pillow raises.

  `draft=True` lets JPEGs decode at reduced scale: enough to find truncation, and faster.
  """
  with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
    if draft and image.format == "JPEG":
      image.draft("RGB", (max(1, image.size[0] // 8), max(1, image.size[1] // 8)))
    image.load()
    return to_rgb(image)


class _Source:
  """Shared behaviour: item dicts, the labels array and a class count."""
  labels: np.ndarray

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def num_classes(self) -> int:
    return int(self.labels.max()) + 1 if len(self.labels) else 0

  def _check_index(self, i: int) -> int:
    i = int(i)
    if not -len(self) <= i < len(self):
      raise IndexError(f"index {i} out of range for a source of {len(self)} items")
    return i % len(self)


class ArraySource(_Source):
  """In-memory images: a uint8 array (N, H, W[, C]) or a sequence of uint8 arrays of any size."""

  def __init__(self, images: np.ndarray | Sequence[np.ndarray], labels: Sequence[int]):
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or len(labels) == 0):
      raise VisionInputError(f"labels must be a 1-d integer array, got {labels.dtype} "
                             f"{labels.shape}", field="labels")
    if len(images) != len(labels):
      raise VisionInputError(f"{len(images)} images but {len(labels)} labels", field="labels")
    if len(labels) and labels.min() < 0:
      raise VisionInputError(f"negative label at index {int(np.argmin(labels))}", field="labels",
                             row=int(np.argmin(labels)))
    if isinstance(images, np.ndarray):
      array_to_rgb(images[0] if len(images) else np.zeros((1, 1), np.uint8), where="images")
      if images.ndim not in (3, 4):
        raise VisionInputError(f"images must be (N, H, W[, C]), got {images.shape}",
                               field="images")
    else:
      for i, image in enumerate(images):  # validate now, not halfway through an epoch
        array_to_rgb(image, where=f"images[{i}]")
    self.images = images
    self.labels = labels.astype(np.int32)

  def __getitem__(self, i: int) -> dict[str, Any]:
    i = self._check_index(i)
    return {"image": array_to_rgb(self.images[i]), "label": self.labels[i]}


class SubsetSource(_Source):
  """The items of `source` at `indices` (e.g. one of `nested_subsets`)."""

  def __init__(self, source, indices: Sequence[int]):
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= len(source)):
      raise VisionInputError(f"subset indices must lie in [0, {len(source)})", field="indices")
    self.source, self.indices = source, indices

  def __len__(self) -> int:
    return len(self.indices)

  @property
  def labels(self) -> np.ndarray:  # lazy: record-backed sources read every record for labels
    return np.asarray(self.source.labels, np.int32)[self.indices]

  @property
  def num_classes(self) -> int:  # the parent's label space, even if a class is left out
    return self.source.num_classes

  def __getitem__(self, i: int) -> dict[str, Any]:
    return self.source[int(self.indices[self._check_index(i)])]


class PooledSource(_Source):
  """Several sources as one (the pipeline's per-epoch shuffle then mixes them).

  relabel='shared': labels kept (the sources share a label space); 'disjoint': each source's
  labels are offset past the previous sources' classes. Items carry 'source', the source index.
  """

  def __init__(self, sources: Sequence[Any], *, relabel: str = "shared"):
    if not sources:
      raise VisionInputError("PooledSource needs at least one source", field="sources")
    if relabel not in ("shared", "disjoint"):
      raise VisionInputError(f"relabel must be 'shared' or 'disjoint', got '{relabel}'",
                             field="relabel")
    self.sources = list(sources)
    self.starts = np.cumsum([0] + [len(s) for s in self.sources]).tolist()
    # Class counts need every label, so 'shared' (the pretraining case) never asks for them.
    self.offsets = (np.cumsum([0] + [s.num_classes for s in self.sources])[:-1]
                    if relabel == "disjoint" else np.zeros(len(self.sources), np.int64))

  def __len__(self) -> int:
    return self.starts[-1]

  @property
  def labels(self) -> np.ndarray:
    return np.concatenate([np.asarray(s.labels, np.int32) + o
                           for s, o in zip(self.sources, self.offsets)]).astype(np.int32)

  def __getitem__(self, i: int) -> dict[str, Any]:
    i = self._check_index(i)
    k = bisect.bisect_right(self.starts, i) - 1
    item = dict(self.sources[k][i - self.starts[k]])
    item["label"] = np.int32(item["label"] + self.offsets[k])
    item["source"] = np.int32(k)
    return item


def nested_subsets(n_total: int, sizes: Sequence[int] = (50_000, 125_000, 250_000, 500_000,
                                                          1_000_000),
                   seed: int = 0) -> dict[int, np.ndarray]:
  """{size: sorted indices} with each subset inside the next, all prefixes of one permutation.

  Sizes above `n_total` are clipped to it. The same (n_total, seed) always gives the same sets.
  """
  sizes = [int(s) for s in sizes]
  if n_total <= 0 or any(s <= 0 for s in sizes):
    raise VisionInputError(f"n_total and sizes must be positive, got {n_total}, {sizes}",
                           field="sizes")
  if sizes != sorted(sizes):
    raise VisionInputError(f"sizes must increase, got {sizes}", field="sizes")
  order = np.random.default_rng(seed).permutation(n_total)
  return {s: np.sort(order[:min(s, n_total)]) for s in sizes}


class _FallbackReads:
  """Read-time policy for unreadable items: raise (strict) or use the next readable one."""
  strict: bool
  read_failures: list

  def _read(self, i: int) -> dict[str, Any]:
    raise NotImplementedError

  def _describe(self, i: int) -> str:
    raise NotImplementedError

  def __getitem__(self, i: int) -> dict[str, Any]:
    i = self._check_index(i)
    for attempt in range(len(self)):
      j = (i + attempt) % len(self)
      try:
        return self._read(j)
      except VisionInputError:
        raise
      except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
        if self.strict:
          raise VisionInputError(f"cannot decode image: {e}", file=self._describe(j)) from e
        self.read_failures.append(self._describe(j))
        _log.warning("unreadable image %s (%s); using the next item", self._describe(j), e)
    raise VisionInputError("no readable image in the source", file=self._describe(i))


class ImageFolderSource(_FallbackReads, _Source):
  """`root/<class name>/**/<image>`: classes are the sorted subfolder names.

  verify=True decodes every file once while scanning (threads), so corrupt or truncated files
  are skipped (and listed in `skipped` as (path, reason)) or, with strict=True, raise. A class
  folder with no readable image raises, unless skip_empty_classes=True: then the class keeps its
  index (so train/val folders stay aligned) and is listed in `empty_classes`. Pass `class_names`
  to fix the class list (e.g. the train split's) for another split.
  """

  def __init__(self, root: str | os.PathLike, *, strict: bool = False, verify: bool = True,
               class_names: Sequence[str] | None = None, skip_empty_classes: bool = False,
               extensions: Sequence[str] = IMAGE_EXTENSIONS, num_threads: int = 8):
    self.root, self.strict = os.fspath(root), strict
    if not os.path.isdir(self.root):
      raise VisionInputError("image folder not found", file=self.root)
    if class_names is None:
      class_names = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
    if not class_names:
      raise VisionInputError("no class subfolders (expected root/<class>/<images>)",
                             file=self.root)
    self.class_names = list(class_names)
    exts = tuple(e.lower() for e in extensions)
    paths, labels = [], []
    for label, name in enumerate(self.class_names):
      for path in _walk(os.path.join(self.root, name)):
        if path.lower().endswith(exts):
          paths.append(path)
          labels.append(label)
    self.skipped: list[tuple[str, str]] = []
    if verify:
      ok = self._verify(paths, num_threads)
      paths = [p for p, good in zip(paths, ok) if good]
      labels = [lab for lab, good in zip(labels, ok) if good]
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(self.class_names))
    self.empty_classes = [n for n, c in zip(self.class_names, counts) if c == 0]
    if self.empty_classes and not skip_empty_classes:
      raise VisionInputError(
          f"{len(self.empty_classes)} class folder(s) hold no readable image: "
          f"{', '.join(self.empty_classes[:5])} (remove them or pass skip_empty_classes=True)",
          file=os.path.join(self.root, self.empty_classes[0]))
    self.paths = paths
    self.labels = np.asarray(labels, np.int32)
    self.read_failures: list[str] = []
    if self.skipped:
      _log.warning("%s: skipped %d unreadable image(s), e.g. %s", self.root, len(self.skipped),
                   self.skipped[0][0])

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def _verify(self, paths: list[str], num_threads: int) -> list[bool]:
    def check(path):
      try:
        decode(path, draft=True)
        return None
      except Exception as e:  # any decoder failure marks the file unreadable
        return f"{type(e).__name__}: {e}"
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
      reasons = list(pool.map(check, paths))
    for path, reason in zip(paths, reasons):
      if reason is not None:
        if self.strict:
          raise VisionInputError(f"cannot decode image ({reason})", file=path)
        self.skipped.append((path, reason))
    return [r is None for r in reasons]

  def _read(self, i: int) -> dict[str, Any]:
    return {"image": decode(self.paths[i]), "label": self.labels[i]}

  def _describe(self, i: int) -> str:
    return self.paths[i]


class FileListSource(_Source):
  """Image files listed by a data set's annotation files (paths and labels given).

  For evaluation: a file that cannot be read raises VisionInputError naming it (never another
  item in its place), so the caller decides how to count it. `missing()` lists the paths that
  do not exist, without decoding anything.
  """

  def __init__(self, paths: Sequence[str | os.PathLike], labels: Sequence[int]):
    labels = np.asarray(labels)
    if len(paths) != len(labels):
      raise VisionInputError(f"{len(paths)} paths but {len(labels)} labels", field="labels")
    if labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0):
      raise VisionInputError("labels must be non-negative integers", field="labels")
    self.paths = [os.fspath(p) for p in paths]
    self.labels = labels.astype(np.int32)

  def missing(self) -> list[str]:
    return [p for p in self.paths if not os.path.isfile(p)]

  def __getitem__(self, i: int) -> dict[str, Any]:
    i = self._check_index(i)
    try:
      image = decode(self.paths[i])
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
      reason = "file not found" if isinstance(e, FileNotFoundError) else f"cannot decode ({e})"
      raise VisionInputError(reason, file=self.paths[i], row=i) from e
    return {"image": image, "label": self.labels[i]}


def _walk(directory: str) -> list[str]:
  out = []
  for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
    dirnames.sort()
    out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith("."))
  return out


def encode_record(image: np.ndarray | bytes, label: int, *, image_format: str = "PNG",
                  quality: int = 95) -> bytes:
  """One ArrayRecord record: header + the image encoded as a file (or given encoded bytes)."""
  if not isinstance(image, bytes):
    rgb = array_to_rgb(image)
    buffer = io.BytesIO()
    kwargs = {"quality": quality} if image_format.upper() in ("JPEG", "JPG") else {}
    Image.fromarray(rgb).save(buffer, format=image_format, **kwargs)
    image = buffer.getvalue()
  return _HEADER.pack(RECORD_MAGIC, int(label)) + image


def write_array_record(path: str | os.PathLike, images: Sequence[np.ndarray | bytes],
                       labels: Sequence[int], *, image_format: str = "PNG",
                       quality: int = 95) -> int:
  """Writes images (uint8 arrays, or already-encoded image files as bytes) and labels to one
  ArrayRecord file (group size 1, for random access). Returns the number of records."""
  from array_record.python.array_record_module import ArrayRecordWriter
  if len(images) != len(labels):
    raise VisionInputError(f"{len(images)} images but {len(labels)} labels", field="labels")
  os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
  writer = ArrayRecordWriter(os.fspath(path), "group_size:1")
  try:
    for image, label in zip(images, labels):
      writer.write(encode_record(image, label, image_format=image_format, quality=quality))
  finally:
    writer.close()
  return len(labels)


def decode_record(record: bytes) -> tuple[int, bytes]:
  if len(record) < _HEADER.size or record[:4] != RECORD_MAGIC:
    raise VisionInputError("not an ecorep image record (bad header)", field="record")
  return _HEADER.unpack_from(record)[1], record[_HEADER.size:]


class ArrayRecordSource(_FallbackReads, _Source):
  """Records written by `write_array_record`, over one or several files (in the given order)."""

  def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], *,
               strict: bool = False):
    import grain
    paths = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else [
        os.fspath(p) for p in paths]
    for p in paths:
      if not os.path.isfile(p):
        raise VisionInputError("ArrayRecord file not found", file=p)
    self.paths, self.strict = paths, strict
    self.read_failures: list[str] = []
    self._records = grain.sources.ArrayRecordDataSource(paths)
    self._labels = None

  def __len__(self) -> int:
    return len(self._records)

  @property
  def labels(self) -> np.ndarray:
    """All labels, read once from the record headers (reads every record)."""
    if self._labels is None:
      labels = np.empty(len(self), np.int32)
      for i in range(len(self)):
        try:
          labels[i] = decode_record(self._records[i])[0]
        except VisionInputError as e:
          raise VisionInputError(e.message, file=self._describe(i)) from None
      self._labels = labels
    return self._labels

  def _read(self, i: int) -> dict[str, Any]:
    try:
      label, data = decode_record(self._records[i])
    except VisionInputError as e:
      raise VisionInputError(e.message, file=self._describe(i)) from None
    return {"image": decode(data), "label": np.int32(label)}

  def _describe(self, i: int) -> str:
    return f"{', '.join(self.paths) if len(self.paths) < 3 else self.paths[0] + ', ...'} " \
           f"record {i}"


class TfdsSource(_Source):
  """A TFDS dataset the user has already prepared (`tfds.data_source`: ArrayRecord format).

  Needs `tensorflow_datasets` (not a dependency of this project); nothing is downloaded.
  """

  def __init__(self, name: str, split: str, data_dir: str | None = None, *,
               image_key: str = "image", label_key: str | None = "label"):
    try:
      import tensorflow_datasets as tfds
    except ImportError as e:
      raise VisionInputError(
          "TfdsSource needs tensorflow_datasets (pip install tensorflow-datasets) and the "
          f"dataset '{name}' prepared in data_dir", field="tfds") from e
    self.name, self.split, self.image_key, self.label_key = name, split, image_key, label_key
    try:
      self._data = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # tfds raises its own types for unprepared or unknown datasets
      raise VisionInputError(f"cannot open TFDS '{name}' split '{split}': {e}",
                             file=data_dir) from e
    self._labels = None

  def __len__(self) -> int:
    return len(self._data)

  @property
  def labels(self) -> np.ndarray:
    """All labels (reads every example once; -1 where the dataset has no label)."""
    if self._labels is None:
      self._labels = np.asarray([self[i]["label"] for i in range(len(self))], np.int32)
    return self._labels

  def __getitem__(self, i: int) -> dict[str, Any]:
    example = self._data[self._check_index(i)]
    if self.image_key not in example:
      raise VisionInputError(f"example has no '{self.image_key}' (keys: {sorted(example)})",
                             field=self.image_key, row=int(i))
    label = example.get(self.label_key, -1) if self.label_key else -1
    return {"image": array_to_rgb(np.asarray(example[self.image_key]), where=self.image_key),
            "label": np.int32(label)}
