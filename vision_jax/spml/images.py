"""Image collections for the fine-tune protocol: in-memory arrays or lists of image files.

Both give `len`, `subset(indices)` and `batch(indices) -> uint8 (B, S, S, 3)`. Files are decoded
with PIL, converted to RGB and resized to S×S (bilinear, the reference's `Resize((448, 448))`) on
host threads; a file that cannot be decoded raises naming it.
"""
from __future__ import annotations

import concurrent.futures
import os
from typing import Sequence

import numpy as np

from vision_jax.errors import VisionInputError


class ArrayImages:
  """uint8 images (N, H, W, C) held in memory; C = 1 is repeated to 3 channels."""

  def __init__(self, images: np.ndarray):
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
      raise VisionInputError(f"images must be uint8 (N, H, W, 1|3), got {images.dtype} "
                             f"{images.shape}", field="images")
    self.images = images

  def __len__(self) -> int:
    return len(self.images)

  @property
  def shape(self) -> tuple[int, int, int]:
    return self.images.shape[1], self.images.shape[2], 3

  def subset(self, idx) -> "ArrayImages":
    return ArrayImages(self.images[np.asarray(idx)])

  def batch(self, idx) -> np.ndarray:
    out = self.images[np.asarray(idx)]
    return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out


class ImageList:
  """Image files `root/<name>` decoded on demand and resized to size×size RGB."""

  def __init__(self, names: Sequence[str], root: str, size: int, *, num_threads: int = 8):
    self.names, self.root, self.size, self.num_threads = list(names), root, int(size), num_threads

  def __len__(self) -> int:
    return len(self.names)

  @property
  def shape(self) -> tuple[int, int, int]:
    return self.size, self.size, 3

  def subset(self, idx) -> "ImageList":
    return ImageList([self.names[i] for i in np.asarray(idx)], self.root, self.size,
                     num_threads=self.num_threads)

  def _load(self, i: int) -> np.ndarray:
    from PIL import Image
    path = os.path.join(self.root, self.names[i])
    try:
      with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((self.size, self.size), Image.BILINEAR))
    except (OSError, ValueError) as e:
      raise VisionInputError(f"cannot decode image: {e}", file=path, row=int(i)) from e

  def batch(self, idx) -> np.ndarray:
    idx = [int(i) for i in np.asarray(idx)]
    with concurrent.futures.ThreadPoolExecutor(self.num_threads) as pool:
      return np.stack(list(pool.map(self._load, idx)))
