"""Overlay pictures: each example as the image with its boxes next to its map as a heat map.

Ground-truth boxes are drawn in green, the predicted box (the best-IoU contour box at the
operating threshold) in red. Small images are enlarged (nearest neighbour) to `scale`.
"""
from __future__ import annotations

import os
from typing import Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ecorep.io import atomic_write

GREEN, RED = (40, 220, 40), (235, 30, 30)


def _boxes(draw: ImageDraw.ImageDraw, boxes, colour, scale: int, ox: int, oy: int) -> None:
  for x0, y0, x1, y1 in np.asarray(boxes).reshape(-1, 4):
    draw.rectangle([ox + x0 * scale, oy + y0 * scale, ox + (x1 + 1) * scale - 1,
                    oy + (y1 + 1) * scale - 1], outline=colour, width=max(1, scale // 2))


def panel(image: np.ndarray, score_map: np.ndarray, truth, predicted, *, scale: int = 4,
          title: str = "") -> Image.Image:
  """One example: [image + boxes | heat map blended over the image + boxes], with a title."""
  side = image.shape[0] * scale
  big = np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.NEAREST))
  heat = matplotlib.colormaps["jet"](np.asarray(score_map, np.float32))[..., :3] * 255
  heat = np.asarray(Image.fromarray(heat.astype(np.uint8)).resize((side, side),
                                                                  Image.Resampling.NEAREST))
  blend = (0.45 * big + 0.55 * heat).astype(np.uint8)
  top = 12 if title else 0
  canvas = Image.new("RGB", (2 * side + 4, side + top), (255, 255, 255))
  canvas.paste(Image.fromarray(big), (0, top))
  canvas.paste(Image.fromarray(blend), (side + 4, top))
  draw = ImageDraw.Draw(canvas)
  for ox in (0, side + 4):
    _boxes(draw, truth, GREEN, scale, ox, top)
    _boxes(draw, predicted, RED, scale, ox, top)
  if title:
    draw.text((2, 0), title, fill=(0, 0, 0), font=ImageFont.load_default())
  return canvas


def write_grid(path: str, examples: dict, titles: Sequence[str] = (), *, columns: int = 4,
               scale: int = 4) -> str:
  """Writes the overlay panels of `examples` (evaluate.overlay_examples) as one PNG."""
  panels = [panel(img, m, t, p, scale=scale, title=titles[k] if k < len(titles) else "")
            for k, (img, m, t, p) in enumerate(zip(examples["images"], examples["maps"],
                                                   examples["truth"], examples["predicted"]))]
  if not panels:
    raise ValueError("no example to draw")
  w, h = panels[0].size
  rows = -(-len(panels) // columns)
  grid = Image.new("RGB", (columns * (w + 6), rows * (h + 6)), (255, 255, 255))
  for k, p in enumerate(panels):
    grid.paste(p, ((k % columns) * (w + 6), (k // columns) * (h + 6)))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"))
  return path
