"""Boxes from binarised maps, the WSOL evaluation's box conventions, and IoU.

A box is int (x0, y0, x1, y1) with inclusive pixel corners, as clovaai/wsolevaluation writes
them: its area is (x1 − x0 + 1)·(y1 − y0 + 1) and IoU counts pixels (`iou_matrix`).

Boxes of a binarised map come from every contour, as OpenCV's `findContours(RETR_TREE)` finds
them on an image padded with one zero pixel (what `cv2.findContours` does since OpenCV 3.2):
- an outer contour per 8-connected foreground component: its bounding box;
- a hole contour per 4-connected background component that does not reach the image border:
  the foreground pixels around the hole, i.e. the hole's bounding box grown by one pixel.
Both come from scipy.ndimage.label over the (T, H, W) stack of all thresholds at once (the
structuring elements connect nothing across thresholds), so one C call serves every threshold;
the background is labelled only for the maps that have holes (their Euler number, from 2x2
bit-quad counts, is below their component count).

`convention="reference"` reproduces how the reference turns `cv2.boundingRect` (x, y, w, h)
into a box: (x, y, min(x + w, W − 1), min(y + h, H − 1)), i.e. one pixel wider and taller than
the region (clipped at the border), while the IoU still counts it inclusive. "exact" keeps the
region's own last pixel. Published MaxBoxAccV2 numbers use the reference's.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from vision_jax.errors import VisionInputError

CONVENTIONS = ("reference", "exact")
_FG = np.zeros((3, 3, 3), bool)
_FG[1] = True                                   # 8-connected within a slice, nothing across
_BG = np.zeros((3, 3, 3), bool)
_BG[1] = ndimage.generate_binary_structure(2, 1)  # 4-connected within a slice


def check_convention(convention: str) -> str:
  if convention not in CONVENTIONS:
    raise VisionInputError(f"box convention must be one of {CONVENTIONS}, got {convention!r}",
                           field="eval.box_convention")
  return convention


def contour_boxes(binary: np.ndarray, convention: str = "reference") -> list[np.ndarray]:
  """Boxes of every contour of each binary map in a (T, H, W) stack: T arrays of (k_t, 4) int.

  A map with no foreground has no box (k_t = 0); the reference substitutes (0, 0, 0, 0).
  """
  binary = np.asarray(binary, bool)
  if binary.ndim == 2:
    binary = binary[None]
  if binary.ndim != 3:
    raise VisionInputError(f"binary maps must be (T, H, W), got {binary.shape}", field="maps")
  check_convention(convention)
  t_count, h, w = binary.shape
  rows = []  # (t, x0, y0, x1, y1) with inclusive region corners
  labels, _ = ndimage.label(binary, structure=_FG)
  components = np.zeros(t_count, np.int64)
  for sl in ndimage.find_objects(labels):
    rows.append((sl[0].start, sl[2].start, sl[1].start, sl[2].stop - 1, sl[1].stop - 1))
    components[sl[0].start] += 1
  # Only maps with holes (components − Euler number > 0) need the background labelled.
  with_holes = np.flatnonzero(components - euler_number(binary) > 0)
  if len(with_holes):
    background = np.pad(~binary[with_holes], ((0, 0), (1, 1), (1, 1)), constant_values=True)
    labels, _ = ndimage.label(background, structure=_BG)
    for sl in ndimage.find_objects(labels):
      if sl[1].start == 0 or sl[2].start == 0 or sl[1].stop == h + 2 or sl[2].stop == w + 2:
        continue  # reaches the padding: the outside, not a hole
      # hole pixels span [start − 1, stop − 2] unpadded; its contour is one pixel further out
      rows.append((with_holes[sl[0].start], sl[2].start - 2, sl[1].start - 2, sl[2].stop - 1,
                   sl[1].stop - 1))
  table = np.asarray(rows, np.int64).reshape(-1, 5)
  if convention == "reference":
    table[:, 3] = np.minimum(table[:, 3] + 1, w - 1)
    table[:, 4] = np.minimum(table[:, 4] + 1, h - 1)
  order = np.argsort(table[:, 0], kind="stable")
  table = table[order]
  bounds = np.searchsorted(table[:, 0], np.arange(t_count + 1))
  return [table[bounds[t]:bounds[t + 1], 1:] for t in range(t_count)]


def euler_number(binary: np.ndarray) -> np.ndarray:
  """(T,) Euler numbers (8-connected components − 4-connected holes) of a (T, H, W) stack, from
  Gray's 2x2 bit-quad counts: (Q1 − Q3 − 2·Q_diagonal) / 4."""
  b = np.pad(binary, ((0, 0), (1, 1), (1, 1))).astype(np.int8)
  a, c, d, e = b[:, :-1, :-1], b[:, :-1, 1:], b[:, 1:, :-1], b[:, 1:, 1:]
  n = a + c + d + e
  q1 = np.count_nonzero(n == 1, axis=(1, 2))
  q3 = np.count_nonzero(n == 3, axis=(1, 2))
  qd = np.count_nonzero((n == 2) & (a == e), axis=(1, 2))
  return (q1 - q3 - 2 * qd) // 4


def check_boxes(boxes, *, where: str = "boxes") -> np.ndarray:
  """(k, 4) int boxes with x0 <= x1 and y0 <= y1 (the reference raises on anything else)."""
  b = np.asarray(boxes)
  if b.size == 0:
    return np.zeros((0, 4), np.int64)
  if b.ndim != 2 or b.shape[1] != 4:
    raise VisionInputError(f"boxes must be (k, 4) (x0, y0, x1, y1), got {b.shape}", field=where)
  bad = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
  if len(bad):
    raise VisionInputError(f"box {b[bad[0]].tolist()} has x1 < x0 or y1 < y0", row=int(bad[0]),
                           field=where)
  return b.astype(np.int64)


def iou_matrix(a, b) -> np.ndarray:
  """(n, m) IoU of inclusive pixel boxes; a degenerate union (area <= 0) gives 0."""
  a, b = check_boxes(a, where="boxes_a"), check_boxes(b, where="boxes_b")
  a, b = a[:, None, :], b[None, :, :]
  iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
  ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
  inter = iw * ih
  area = lambda x: (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)  # noqa: E731
  union = area(a) + area(b) - inter
  return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def box_area(boxes) -> np.ndarray:
  b = check_boxes(boxes)
  return (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)


def resize_boxes(boxes, size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
  """Boxes of a (w, h) image in a resized (w', h') one, truncated to int as the reference."""
  b = check_boxes(boxes).astype(np.float64)
  sx, sy = new_size[0] / size[0], new_size[1] / size[1]
  return np.stack([b[:, 0] * sx, b[:, 1] * sy, b[:, 2] * sx, b[:, 3] * sy], 1).astype(np.int64) \
      if len(b) else np.zeros((0, 4), np.int64)


def boxes_mask(boxes, shape: tuple[int, int]) -> np.ndarray:
  """(H, W) bool: pixels inside any of the inclusive boxes."""
  mask = np.zeros(shape, bool)
  for x0, y0, x1, y1 in check_boxes(boxes):
    mask[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = True
  return mask
