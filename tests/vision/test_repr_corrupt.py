"""Pretraining-data corruptions against PIL/numpy references, written once per image (seeded) as
folders or ArrayRecord that the pretraining sources read back."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from vision_jax import corrupt, datasets
from vision_jax.errors import VisionInputError
from vision_jax.sources import ArrayRecordSource, ArraySource, FileListSource, ImageFolderSource


def test_salt_and_pepper_rate_and_seeding():
  gray = np.full((64, 64, 3), 128, np.uint8)
  out = corrupt.corrupt("salt_pepper", gray, seed=3, row=7)
  changed = out != 128
  n, p = gray.size, 0.01
  assert abs(changed.sum() - n * p) < 5 * np.sqrt(n * p * (1 - p))  # per pixel and channel
  assert set(np.unique(out[changed]).tolist()) == {0, 255}
  salt = (out == 255).sum()
  assert abs(salt - changed.sum() / 2) < 5 * np.sqrt(changed.sum() / 4)
  assert 0 < (changed.any(-1) & ~changed.all(-1)).sum()  # channels are drawn independently
  np.testing.assert_array_equal(out, corrupt.corrupt("salt_pepper", gray, seed=3, row=7))
  assert not np.array_equal(out, corrupt.corrupt("salt_pepper", gray, seed=3, row=8))


def test_jpeg_resize_and_down_up_match_pil():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)
  pil = Image.fromarray(image)
  data = corrupt.corrupt("jpeg10", image, 0, 0)
  ref = io.BytesIO()
  pil.save(ref, format="JPEG", quality=10)
  assert data == ref.getvalue()
  decoded = np.asarray(Image.open(io.BytesIO(data)))
  assert decoded.shape == image.shape and np.abs(decoded.astype(int) - image).mean() > 10
  big = corrupt.corrupt("resize256", image, 0, 0)
  np.testing.assert_array_equal(big, np.asarray(pil.resize((384, 256),
                                                           Image.Resampling.BICUBIC)))
  for factor in (2, 4):
    small = pil.resize((round(45 / factor), round(30 / factor)), Image.Resampling.BICUBIC)
    want = np.asarray(small.resize((45, 30), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(corrupt.corrupt(f"downup{factor}", image, 0, 0), want)
  with pytest.raises(VisionInputError, match="unknown corruption 'blur'"):
    corrupt.corrupt("blur", image, 0, 0)


def test_written_copies_read_back_for_pretraining(tmp_path):
  images, labels = datasets.sklearn_digits("test")
  source = ArraySource(images[:12], labels[:12] % 3)
  names = ["T-shirt/top", "Trouser", "Pullover"]
  out = tmp_path / "sp"
  manifest = corrupt.write_corrupted(source, "salt_pepper", out, seed=5, class_names=names)
  assert manifest["images"] == 12 and manifest["seed"] == 5 and not manifest["skipped"]
  read = ImageFolderSource(out)
  assert read.class_names == ["Pullover", "T-shirt_top", "Trouser"]  # sorted, made safe
  for path, label in zip(read.paths, read.labels):
    row = int(os.path.splitext(os.path.basename(path))[0])
    assert names[source.labels[row]].replace("/", "_") == read.class_names[label]
    np.testing.assert_array_equal(read[read.paths.index(path)]["image"],
                                  corrupt.corrupt("salt_pepper", images[row], 5, row))
  with pytest.raises(VisionInputError, match="output exists"):
    corrupt.write_corrupted(source, "jpeg10", out)
  corrupt.write_corrupted(source, "jpeg10", out, overwrite=True, layout="array_record")
  records = ArrayRecordSource(sorted(str(out / f) for f in os.listdir(out)
                                     if f.endswith(".array_record")))
  assert len(records) == 12 and records.labels.tolist() == source.labels.tolist()
  # what pretraining reads with --config.data.dataset=array_record --config.data.root=<out>
  import ml_collections
  from ecorep.errors import ConfigError
  from vision_jax.pretrain import build_source
  via_config = build_source(ml_collections.ConfigDict({"dataset": "array_record",
                                                       "root": str(out)}))
  assert via_config.paths == records.paths
  with pytest.raises(ConfigError, match="no \\*.array_record files"):
    build_source(ml_collections.ConfigDict({"dataset": "array_record", "root": str(tmp_path)}))
  decoded = np.asarray(Image.open(io.BytesIO(corrupt.corrupt("jpeg10", images[3], 0, 3))))
  np.testing.assert_array_equal(records[3]["image"], decoded)  # stored as written, once
  with open(out / corrupt.MANIFEST) as f:
    assert json.load(f)["corruption"] == "jpeg10"
  Image.fromarray(images[0]).save(tmp_path / "zero.png")
  files = FileListSource([str(tmp_path / "gone.png"), str(tmp_path / "zero.png")], [0, 1])
  manifest = corrupt.write_corrupted(files, "downup2", tmp_path / "du")
  assert manifest["images"] == 1 and "gone.png" in manifest["skipped"][0]


def test_corrupt_cli(tmp_path, capsys):
  out = tmp_path / "digits_du4"
  args = ["--data=sklearn_digits", "--split=test", "--corruption=downup4", f"--out={out}",
          "--seed=1"]
  assert corrupt.main(args) == 0
  assert "359 images (downup4, seed 1)" in capsys.readouterr().out
  assert len(ImageFolderSource(out)) == 359
  assert corrupt.main(args) == 2 and "output exists" in capsys.readouterr().err
