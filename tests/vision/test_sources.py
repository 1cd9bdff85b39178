"""Image sources: decoding of every file kind against PIL/numpy, bad files, empty classes,
ArrayRecord round trips, pooled and nested subsets."""
from __future__ import annotations

import io
import os
import struct
import sys
import types
import zlib

import numpy as np
import pytest
from PIL import Image

from vision_jax import sources
from vision_jax.errors import VisionInputError


def png16(array: np.ndarray) -> bytes:
  """A 16-bit PNG (gray (H, W) or RGB (H, W, 3)) written by hand, independent of Pillow."""
  h, w = array.shape[:2]
  color_type = 0 if array.ndim == 2 else 2
  raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

  def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
  header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
          + chunk(b"IEND", b""))


def encoded(array: np.ndarray, fmt: str, **kwargs) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt, **kwargs)
  return buffer.getvalue()


def write(path, data: bytes) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)
  return str(path)


@pytest.fixture()
def rng():
  return np.random.default_rng(0)


@pytest.fixture()
def folder(tmp_path, rng):
  """Class 'mixed' holds one file of every kind; 'bad' holds only unreadable files."""
  rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
  gray = rng.integers(0, 256, (12, 9), dtype=np.uint8)
  rgba = rng.integers(0, 256, (7, 11, 4), dtype=np.uint8)
  gray16 = rng.integers(0, 65536, (6, 5)).astype(np.uint16)
  rgb16 = rng.integers(0, 65536, (4, 6, 3)).astype(np.uint16)
  jpeg = encoded(rgb, "JPEG", quality=90)
  root = tmp_path / "images"
  files = {
      "rgb": write(root / "mixed" / "a_rgb.jpg", jpeg),
      "gray": write(root / "mixed" / "b_gray.png", encoded(gray, "PNG")),
      "rgba": write(root / "mixed" / "c_rgba.png", encoded(rgba, "PNG")),
      "gray16": write(root / "mixed" / "d_gray16.png", png16(gray16)),
      "rgb16": write(root / "mixed" / "e_rgb16.png", png16(rgb16)),
      "palette": write(root / "mixed" / "sub" / "f_palette.gif", encoded(rgb, "GIF")),
      "text": write(root / "mixed" / "notes.txt", b"not an image"),
      "garbage": write(root / "bad" / "garbage.jpg", rng.bytes(500)),
      "truncated_jpeg": write(root / "bad" / "cut.jpg", jpeg[:len(jpeg) // 2]),
      "truncated_png": write(root / "bad" / "cut.png", encoded(rgb, "PNG")[:200]),
      "empty_file": write(root / "bad" / "zero.png", b""),
      "good": write(root / "zz_good" / "ok.png", encoded(rgb[:5, :5], "PNG")),
  }
  arrays = {"rgb": rgb, "gray": gray, "rgba": rgba, "gray16": gray16, "rgb16": rgb16}
  return root, files, arrays


def test_every_image_kind_becomes_rgb_uint8(folder):
  root, files, arrays = folder
  (root / "bad").rename(root.parent / "bad_elsewhere")
  src = sources.ImageFolderSource(root)
  assert src.class_names == ["mixed", "zz_good"] and src.skipped == []
  by_name = {os.path.basename(p): src[i]["image"] for i, p in enumerate(src.paths)}
  assert "notes.txt" not in by_name and len(src) == 7
  for image in by_name.values():
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
  # Expected values computed from the arrays written (numpy) or by PIL's own conversion.
  np.testing.assert_array_equal(by_name["b_gray.png"], np.stack([arrays["gray"]] * 3, -1))
  np.testing.assert_array_equal(by_name["c_rgba.png"], arrays["rgba"][:, :, :3])
  np.testing.assert_array_equal(by_name["d_gray16.png"],
                                np.stack([arrays["gray16"] >> 8] * 3, -1).astype(np.uint8))
  np.testing.assert_array_equal(by_name["e_rgb16.png"], (arrays["rgb16"] >> 8).astype(np.uint8))
  with Image.open(files["rgb"]) as im:
    np.testing.assert_array_equal(by_name["a_rgb.jpg"], np.asarray(im.convert("RGB")))
  with Image.open(files["palette"]) as im:
    np.testing.assert_array_equal(by_name["f_palette.gif"], np.asarray(im.convert("RGB")))
  assert list(src.labels) == [0] * 6 + [1]


def test_unreadable_files_are_skipped_and_counted(folder):
  root, files, _ = folder
  src = sources.ImageFolderSource(root, skip_empty_classes=True)
  bad = {files[k] for k in ("garbage", "truncated_jpeg", "truncated_png", "empty_file")}
  assert {p for p, _ in src.skipped} == bad and len(src) == 7
  assert src.empty_classes == ["bad"] and src.num_classes == 3
  assert list(src.labels) == [1] * 6 + [2]  # 'bad' (index 0) is empty but keeps its index
  with pytest.raises(VisionInputError, match="no readable image") as e:
    sources.ImageFolderSource(root)  # 'bad' held only unreadable files: an empty class
  assert e.value.file.endswith("bad")


def test_strict_mode_names_the_bad_file(folder):
  root, files, _ = folder
  with pytest.raises(VisionInputError, match="cannot decode") as e:
    sources.ImageFolderSource(root, strict=True)
  assert os.path.dirname(e.value.file) == str(root / "bad")


def test_read_time_failures_without_verification(folder):
  root, files, _ = folder
  for k in ("garbage", "truncated_png", "empty_file"):
    os.remove(files[k])
  src = sources.ImageFolderSource(root, verify=False)
  i = src.paths.index(files["truncated_jpeg"])
  item = src[i]  # replaced by the next readable item, and counted
  assert src.read_failures == [files["truncated_jpeg"]]
  np.testing.assert_array_equal(item["image"], src[i + 1]["image"])
  strict = sources.ImageFolderSource(root, verify=False, strict=True)
  with pytest.raises(VisionInputError) as e:
    strict[i]
  assert e.value.file == files["truncated_jpeg"]


def test_empty_class_folder(tmp_path, rng):
  write(tmp_path / "a" / "x.png", encoded(rng.integers(0, 255, (4, 4, 3), np.uint8), "PNG"))
  os.makedirs(tmp_path / "b")
  with pytest.raises(VisionInputError, match="b") as e:
    sources.ImageFolderSource(tmp_path)
  assert e.value.file == str(tmp_path / "b")
  src = sources.ImageFolderSource(tmp_path, skip_empty_classes=True)
  assert len(src) == 1 and src.class_names == ["a", "b"] and src.empty_classes == ["b"]
  # Another split reuses the train split's class list, so indices agree.
  val = sources.ImageFolderSource(tmp_path, class_names=["b", "a"], skip_empty_classes=True)
  assert list(val.labels) == [1]
  with pytest.raises(VisionInputError, match="no class subfolders"):
    sources.ImageFolderSource(tmp_path / "b")
  with pytest.raises(VisionInputError, match="not found"):
    sources.ImageFolderSource(tmp_path / "missing")


def test_array_source_conversions_and_errors(rng):
  gray = rng.integers(0, 256, (5, 6, 7), dtype=np.uint8)
  src = sources.ArraySource(gray, np.arange(5))
  np.testing.assert_array_equal(src[2]["image"], np.stack([gray[2]] * 3, -1))
  assert src[-1]["label"] == 4 and src.num_classes == 5
  ragged = [rng.integers(0, 256, (3, 4, 4), dtype=np.uint8),
            rng.integers(0, 256, (9, 2, 1), dtype=np.uint8)]
  src = sources.ArraySource(ragged, [0, 1])
  np.testing.assert_array_equal(src[0]["image"], ragged[0][:, :, :3])
  assert src[1]["image"].shape == (9, 2, 3)
  with pytest.raises(IndexError):
    src[2]
  with pytest.raises(VisionInputError, match="uint8"):
    sources.ArraySource(gray.astype(np.float32), np.arange(5))
  with pytest.raises(VisionInputError, match="5 images but 4 labels"):
    sources.ArraySource(gray, np.arange(4))
  with pytest.raises(VisionInputError, match="negative"):
    sources.ArraySource(gray, np.arange(5) - 1)
  with pytest.raises(VisionInputError, match="images\\[1\\]"):
    sources.ArraySource([ragged[0], np.zeros((3, 4, 2), np.uint8)], [0, 1])


def test_array_record_round_trip(tmp_path, rng):
  images = [rng.integers(0, 256, (5 + i, 7, 3), dtype=np.uint8) for i in range(6)]
  images[2] = images[2][:, :, 0]  # grayscale
  jpeg = encoded(images[0], "JPEG")
  assert sources.write_array_record(tmp_path / "a.array_record", images[:4], [3, 1, 4, 1]) == 4
  sources.write_array_record(tmp_path / "b.array_record", images[4:] + [jpeg], [5, 9, 2])
  src = sources.ArrayRecordSource([tmp_path / "a.array_record", tmp_path / "b.array_record"])
  assert len(src) == 7 and list(src.labels) == [3, 1, 4, 1, 5, 9, 2]
  for i in (0, 1, 3, 4, 5):  # PNG is lossless
    np.testing.assert_array_equal(src[i]["image"], images[i])
  np.testing.assert_array_equal(src[2]["image"], np.stack([images[2]] * 3, -1))
  with Image.open(io.BytesIO(jpeg)) as im:  # encoded bytes are stored as given
    np.testing.assert_array_equal(src[6]["image"], np.asarray(im))
  assert src[6]["label"] == 2
  with pytest.raises(VisionInputError, match="not found"):
    sources.ArrayRecordSource(tmp_path / "missing.array_record")


def test_array_record_bad_records(tmp_path, rng):
  from array_record.python.array_record_module import ArrayRecordWriter
  path = str(tmp_path / "bad.array_record")
  good = sources.encode_record(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), 7)
  writer = ArrayRecordWriter(path, "group_size:1")
  for record in (good, good[:30], good, b"no header at all"):
    writer.write(record)
  writer.close()
  src = sources.ArrayRecordSource(path)
  assert src[1]["label"] == 7 and len(src.read_failures) == 1  # truncated image: next item
  assert "record 1" in src.read_failures[0]
  with pytest.raises(VisionInputError, match="bad header") as e:
    src[3]  # a record that is not ours is an error even when not strict
  assert "record 3" in e.value.file
  with pytest.raises(VisionInputError, match="cannot decode") as e:
    sources.ArrayRecordSource(path, strict=True)[1]
  assert e.value.file.endswith("record 1")


def test_tfds_source_without_and_with_tfds(monkeypatch, rng):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
  with pytest.raises(VisionInputError, match="tensorflow_datasets"):
    sources.TfdsSource("i_naturalist2021", "train", "/nowhere")
  # The adapter around tfds.data_source: keys, grayscale conversion, missing-dataset errors.
  examples = [{"image": rng.integers(0, 256, (6, 5, 1), dtype=np.uint8), "label": np.int64(i)}
              for i in range(3)]

  def data_source(name, split, data_dir, download):
    if name != "fake" or download:
      raise FileNotFoundError(f"{name} is not prepared in {data_dir}")
    return examples
  monkeypatch.setitem(sys.modules, "tensorflow_datasets",
                      types.SimpleNamespace(data_source=data_source))
  src = sources.TfdsSource("fake", "train", "/data")
  assert len(src) == 3 and list(src.labels) == [0, 1, 2]
  np.testing.assert_array_equal(src[1]["image"], np.repeat(examples[1]["image"], 3, axis=2))
  with pytest.raises(VisionInputError, match="not prepared"):
    sources.TfdsSource("other", "train", "/data")
  with pytest.raises(VisionInputError, match="no 'photo'"):
    sources.TfdsSource("fake", "train", "/data", image_key="photo")[0]


def test_pooled_source_covers_every_item(rng):
  a = sources.ArraySource((10 + np.arange(5)[:, None, None] + np.zeros((5, 2, 2))).astype(np.uint8),
                          [0, 1, 0, 1, 2])
  b = sources.ArraySource((100 + np.arange(3)[:, None, None] + np.zeros((3, 2, 2))).astype(np.uint8),
                          [0, 0, 1])
  pooled = sources.PooledSource([a, b])
  seen = [(int(pooled[i]["source"]), int(pooled[i]["image"][0, 0, 0])) for i in range(8)]
  assert sorted(seen) == [(0, 10 + k) for k in range(5)] + [(1, 100 + k) for k in range(3)]
  assert list(pooled.labels) == [0, 1, 0, 1, 2, 0, 0, 1]
  disjoint = sources.PooledSource([a, b], relabel="disjoint")
  assert list(disjoint.labels) == [0, 1, 0, 1, 2, 3, 3, 4]
  assert [int(disjoint[i]["label"]) for i in range(8)] == list(disjoint.labels)
  with pytest.raises(VisionInputError):
    sources.PooledSource([])


def test_nested_subsets_are_nested_and_fixed_by_seed():
  subsets = sources.nested_subsets(3000, sizes=(100, 250, 1000, 5000), seed=3)
  assert [len(v) for v in subsets.values()] == [100, 250, 1000, 3000]
  keys = list(subsets)
  for small, large in zip(keys, keys[1:]):
    assert np.isin(subsets[small], subsets[large]).all()
  for idx in subsets.values():
    assert len(np.unique(idx)) == len(idx) and idx.min() >= 0 and idx.max() < 3000
  again = sources.nested_subsets(3000, sizes=(100, 250, 1000, 5000), seed=3)
  assert all(np.array_equal(subsets[k], again[k]) for k in keys)
  other = sources.nested_subsets(3000, sizes=(100,), seed=4)
  assert not np.array_equal(subsets[100], other[100])
  default = sources.nested_subsets(2_000_000, seed=0)
  assert [len(v) for v in default.values()] == [50_000, 125_000, 250_000, 500_000, 1_000_000]
  with pytest.raises(VisionInputError, match="increase"):
    sources.nested_subsets(10, sizes=(5, 2))
  subset = sources.SubsetSource(sources.ArraySource(np.zeros((10, 2, 2), np.uint8),
                                                    np.arange(10)), subsets[100][:3] % 10)
  assert list(subset.labels) == [int(subset[i]["label"]) for i in range(3)]
  assert len(subset) == 3 and subset.num_classes == 10
