"""Corrupted copies of pretraining images (seed chapter 3, Fig. 3.4).

  python -m vision_jax.corrupt --data=<spec> --corruption=<name> --out=<dir>
      [--split=train] [--seed=0] [--format=folder|array_record] [--overwrite]

Each image is corrupted once, when the copy is written (not again every epoch), with a
generator seeded by (seed, row), so the same command writes the same files:

  salt_pepper  every pixel and channel independently set to 0 or 255 (even odds) with p = 0.01
  jpeg10       JPEG at quality 10 (the file written is that JPEG: decoding it gives the image)
  resize256    bicubic resize of the short side to 256 (aspect kept)
  downup2/4    bicubic down-sampling by 2 or 4, then bicubic up-sampling to the original size

Output, ready for pretraining: `folder` writes <out>/<class>/<row>.png (.jpg for jpeg10), read
by `--config.data.dataset=folder --config.data.root=<out>`; `array_record` writes
<out>/<corruption>-NNNNN.array_record shards, read by `--config.data.dataset=array_record
--config.data.root=<out>` (vision_jax.sources.ArrayRecordSource). Both carry
<out>/corruption.json (what was done, with which seed, from which images). The copy is built
beside <out> and moved into place when complete; an existing <out> is refused unless
--overwrite. Source images that cannot be read are left out, counted and named there.
"""
from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import os
import re
import sys
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ecorep import io as eio
from ecorep.cli import flag_is_true, parse_flags, run_cli
from vision_jax.errors import VisionInputError
from vision_jax.sources import array_to_rgb, write_array_record

_log = logging.getLogger(__name__)
SALT_PEPPER_P = 0.01
JPEG_QUALITY = 10
SHORT_SIDE = 256
LAYOUTS = ("folder", "array_record")
MANIFEST = "corruption.json"
SHARD = 10_000


def salt_and_pepper(image: np.ndarray, rng: np.random.Generator,
                    p: float = SALT_PEPPER_P) -> np.ndarray:
  hit = rng.random(image.shape) < p
  salt = rng.random(image.shape) < 0.5
  out = image.copy()
  out[hit] = np.where(salt[hit], 255, 0).astype(np.uint8)
  return out


def jpeg_bytes(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def resize_short_side(image: np.ndarray, short: int = SHORT_SIDE) -> np.ndarray:
  h, w = image.shape[:2]
  scale = short / min(h, w)
  size = (max(short, int(round(w * scale))), max(short, int(round(h * scale))))
  return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


def down_up(image: np.ndarray, factor: int) -> np.ndarray:
  h, w = image.shape[:2]
  small = Image.fromarray(image).resize((max(1, round(w / factor)), max(1, round(h / factor))),
                                        Image.Resampling.BICUBIC)
  return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


# name -> f(image, rng) -> uint8 array, or encoded bytes (stored as they are)
CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], Any]] = {
    "salt_pepper": salt_and_pepper,
    "jpeg10": lambda image, rng: jpeg_bytes(image),
    "resize256": lambda image, rng: resize_short_side(image),
    "downup2": lambda image, rng: down_up(image, 2),
    "downup4": lambda image, rng: down_up(image, 4),
}


def corrupt(name: str, image: np.ndarray, seed: int, row: int):
  """The corrupted image of `row` (uint8 array, or JPEG bytes for jpeg10)."""
  if name not in CORRUPTIONS:
    raise VisionInputError(f"unknown corruption '{name}'; known: {', '.join(CORRUPTIONS)}",
                           field="corruption")
  return CORRUPTIONS[name](array_to_rgb(image), np.random.default_rng([int(seed), int(row)]))


def _folder_name(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "class"


def write_corrupted(source, name: str, out: str | os.PathLike, *, seed: int = 0,
                    layout: str = "folder", class_names: Sequence[str] | None = None,
                    rows: Sequence[int] | None = None, overwrite: bool = False,
                    num_threads: int = 4, description: str = "") -> dict:
  """Writes the corrupted copy of `source` (its `rows`, default all) and returns the manifest."""
  if name not in CORRUPTIONS:
    raise VisionInputError(f"unknown corruption '{name}'; known: {', '.join(CORRUPTIONS)}",
                           field="corruption")
  if layout not in LAYOUTS:
    raise VisionInputError(f"format must be one of {LAYOUTS}, got '{layout}'", field="format")
  out = os.path.abspath(os.fspath(out))
  if os.path.exists(out) and not overwrite:
    raise VisionInputError("output exists; pass --overwrite to replace it", file=out)
  rows = np.arange(len(source)) if rows is None else np.asarray(rows, np.int64)
  labels = np.asarray(source.labels)[rows]
  n_classes = int(labels.max()) + 1 if len(labels) else 0
  names = list(class_names) if class_names is not None else [f"{c:05d}" for c in range(n_classes)]
  folders = [_folder_name(n) for n in names]
  if len(set(folders)) != len(folders):
    folders = [f"{k:05d}_{f}" for k, f in enumerate(folders)]
  skipped: list[str] = []

  def make(row):
    try:
      image = source[int(row)]["image"]
    except Exception as e:  # an unreadable source image: left out, named in the manifest
      return row, None, f"row {int(row)}: {e}"
    return row, corrupt(name, image, seed, int(row)), None

  written = 0
  with eio.atomic_directory(out) as tmp, \
      concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
    records, record_labels, shard = [], [], 0

    def flush():
      nonlocal records, record_labels, shard
      if records:
        write_array_record(os.path.join(tmp, f"{name}-{shard:05d}.array_record"), records,
                           record_labels)
        shard += 1
      records, record_labels = [], []

    results = (r for k in range(0, len(rows), 512) for r in pool.map(make, rows[k:k + 512]))
    for row, result, error in results:  # in row order, at most 512 images held at once
      if error is not None:
        skipped.append(error)
        continue
      label = int(source.labels[int(row)])
      if layout == "folder":
        folder = os.path.join(tmp, folders[label])
        os.makedirs(folder, exist_ok=True)
        if isinstance(result, bytes):
          with open(os.path.join(folder, f"{int(row):07d}.jpg"), "wb") as f:
            f.write(result)
        else:
          Image.fromarray(result).save(os.path.join(folder, f"{int(row):07d}.png"))
      else:
        records.append(result)
        record_labels.append(label)
        if len(records) == SHARD:
          flush()
      written += 1
    flush()
    manifest = {"corruption": name, "seed": int(seed), "format": layout,
                "salt_pepper_p": SALT_PEPPER_P, "jpeg_quality": JPEG_QUALITY,
                "short_side": SHORT_SIDE, "resampling": "bicubic (PIL)", "images": written,
                "classes": names, "source": description, "skipped": skipped}
    eio.write_json(os.path.join(tmp, MANIFEST), manifest)
  if skipped:
    _log.warning("%d source image(s) could not be read and were left out, e.g. %s",
                 len(skipped), skipped[0])
  return manifest


FLAGS = ("data", "corruption", "out", "split", "seed", "format", "overwrite")


def main(argv: Sequence[str]) -> int:
  def body(argv):
    flags = parse_flags(argv, FLAGS, required=("data", "corruption", "out"))
    from vision_jax.image_sets import open_image_set
    image_set = open_image_set(flags["data"])
    split = flags.get("split", "train")
    rows = image_set.rows(split)
    if not len(rows):
      raise VisionInputError(f"no '{split}' images in {flags['data']}", field="split")
    try:
      seed = int(flags.get("seed", "0"))
    except ValueError:
      raise VisionInputError(f"--seed must be an integer, got {flags['seed']!r}",
                             field="seed") from None
    manifest = write_corrupted(image_set.source, flags["corruption"], flags["out"], seed=seed,
                               layout=flags.get("format", "folder"),
                               class_names=image_set.class_names, rows=rows,
                               overwrite=flag_is_true(flags, "overwrite"),
                               description=f"{flags['data']} ({split} split)")
    print(f"{manifest['images']} images ({flags['corruption']}, seed {seed}) written to "
          f"{os.path.abspath(flags['out'])}" + (f"; {len(manifest['skipped'])} unreadable "
                                                 "left out" if manifest["skipped"] else ""))
    print(json.dumps({k: v for k, v in manifest.items() if k != "classes"}))
  return run_cli(list(argv), body, __doc__, flags=FLAGS)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
