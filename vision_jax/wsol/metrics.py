"""MaxBoxAccV2 and PxAP (Choe et al., "Evaluating WSOL Methods Right", CVPR 2020).

Both score localisation maps in [0, 1] (one per image, at the image's evaluation size) over a
fixed grid of map thresholds τ ∈ {0, 0.01, ..., 0.99} (`thresholds(interval)`).

MaxBoxAccV2: at each τ the map is quantised as the reference does (`uint8(map·255) >
int(τ·max)`), every contour gives a box (vision_jax.wsol.boxes), and an image counts as
localised at IoU δ when its best box overlaps a ground-truth box by at least δ. BoxAcc(τ, δ) is
the fraction of images localised; MaxBoxAccV2 = mean over δ ∈ {0.3, 0.5, 0.7} of max_τ
BoxAcc(τ, δ) (the best τ chosen per δ). A map whose every pixel is equal (after normalisation
a zero map) has no contour at any τ: it localises nothing and is counted (`constant_maps`).

PxAP: pixel-wise average precision of the maps against masks {0: background, 1: foreground,
255: ignored}, from histograms over the same grid (bins [τ_i, τ_i+1), [0.99, 1), [1, 2), [2, 3]),
AP = Σ precision·Δrecall over the thresholds from the top, as the reference's MaskEvaluator. That
equals the exact tie-aware AP of ecorep.ranking on the maps quantised to their bins (tested).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os

import numpy as np

from vision_jax.errors import VisionInputError
from vision_jax.wsol import boxes as box_lib

IOU_THRESHOLDS = (0.3, 0.5, 0.7)


def thresholds(interval: float = 0.01) -> np.ndarray:
  """The reference's map thresholds: np.arange(0, 1, interval)."""
  if not 0 < interval < 1:
    raise VisionInputError(f"the threshold interval must lie in (0, 1), got {interval}",
                           field="eval.cam_interval")
  return np.arange(0, 1, interval)


def normalize_maps(maps) -> np.ndarray:
  """Per-map min-max normalisation to [0, 1]; a constant map becomes all zeros (reference)."""
  m = np.asarray(maps, np.float64)
  lo = m.min(axis=(-2, -1), keepdims=True)
  span = m.max(axis=(-2, -1), keepdims=True) - lo
  return np.where(span > 0, (m - lo) / np.where(span > 0, span, 1.0), 0.0)


def check_maps(maps, first_index: int = 0) -> np.ndarray:
  """(B, H, W) maps in [0, 1]; NaN or values outside are errors naming the image."""
  m = np.asarray(maps)
  if m.ndim == 2:
    m = m[None]
  if m.ndim != 3:
    raise VisionInputError(f"maps must be (B, H, W), got {m.shape}", field="maps")
  bad = ~np.isfinite(m) | (m < 0) | (m > 1)
  if bad.any():
    i = int(np.argwhere(bad)[0][0])
    raise VisionInputError(f"map of image {first_index + i} holds values outside [0, 1] or NaN "
                           "(normalise maps first)", row=first_index + i, field="maps")
  return m


def binarize(score_map: np.ndarray, taus: np.ndarray) -> np.ndarray:
  """(T, H, W) binary maps of one [0, 1] map at every τ, quantised as the reference."""
  u8 = (np.asarray(score_map) * 255).astype(np.uint8)
  # int(τ · max) of the uint8 map, as the reference's cv2.threshold cut
  cut = (np.asarray(taus, np.float64) * int(u8.max())).astype(np.int64)
  return u8[None] > cut[:, None, None]


def best_ious(score_map: np.ndarray, gt_boxes: np.ndarray, taus: np.ndarray,
              convention: str = "reference") -> np.ndarray:
  """(T,) best IoU over the map's contour boxes at each τ (0 where there is no contour)."""
  per_tau = box_lib.contour_boxes(binarize(score_map, taus), convention)
  counts = np.array([len(b) for b in per_tau])
  out = np.zeros(len(taus))
  if counts.sum() == 0:
    return out
  best = box_lib.iou_matrix(np.concatenate(per_tau), gt_boxes).max(axis=1)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  has = counts > 0
  out[has] = np.maximum.reduceat(best, starts[has])
  return out


@functools.lru_cache(maxsize=1)
def _pool() -> concurrent.futures.ThreadPoolExecutor:
  return concurrent.futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)))


@dataclasses.dataclass
class MaxBoxAccV2:
  """Accumulates maps and their ground-truth boxes; `result()` gives the metric."""
  interval: float = 0.01
  iou_thresholds: tuple[float, ...] = IOU_THRESHOLDS
  convention: str = "reference"

  def __post_init__(self):
    self.taus = thresholds(self.interval)
    box_lib.check_convention(self.convention)
    self.rows: list[np.ndarray] = []   # per image: (T,) best IoU at each τ
    self.constant_maps = 0

  @property
  def count(self) -> int:
    return len(self.rows)

  def accumulate(self, maps, gt_boxes) -> None:
    """`maps` (B, H, W) in [0, 1]; `gt_boxes` B arrays of (k, 4) inclusive boxes (k >= 1)."""
    maps = check_maps(maps, self.count)
    if len(gt_boxes) != len(maps):
      raise VisionInputError(f"{len(maps)} maps but {len(gt_boxes)} box lists", field="boxes")
    checked = []
    for i, gt in enumerate(gt_boxes):
      gt = box_lib.check_boxes(gt, where=f"boxes of image {self.count + i}")
      if not len(gt):
        raise VisionInputError(f"image {self.count + i} has no ground-truth box",
                               row=self.count + i, field="boxes")
      checked.append(gt)
    self.constant_maps += int(np.sum(maps.max(axis=(1, 2)) == maps.min(axis=(1, 2))))
    # scipy.ndimage releases the GIL: images in parallel threads
    self.rows.extend(_pool().map(lambda a: best_ious(a[0], a[1], self.taus, self.convention),
                                 zip(maps, checked)))

  def accuracy_curves(self) -> np.ndarray:
    """(len(iou_thresholds), T) BoxAcc(τ, δ)."""
    if not self.rows:
      raise VisionInputError("no image was accumulated", field="maps")
    best = np.stack(self.rows)
    return np.stack([(best >= d).mean(axis=0) for d in self.iou_thresholds])

  def result(self) -> dict:
    curves = self.accuracy_curves()
    out = {"maxboxacc": float(curves.max(axis=1).mean()), "num_images": self.count,
           "constant_maps": self.constant_maps}
    for d, curve in zip(self.iou_thresholds, curves):
      tag = f"{round(100 * d)}"
      out[f"boxacc@{tag}"] = float(curve.max())
      out[f"best_tau@{tag}"] = float(self.taus[int(np.argmax(curve))])
    return out


def _histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
  return np.histogram(values, bins=edges)[0].astype(np.int64)


@dataclasses.dataclass
class PxAP:
  """Pixel AP over masks {0, 1, 255 (ignored)}, from per-bin counts of the maps' values."""
  interval: float = 0.01

  def __post_init__(self):
    self.taus = thresholds(self.interval)
    self.edges = np.append(self.taus, [1.0, 2.0, 3.0])
    self.pos = np.zeros(len(self.edges) - 1, np.int64)
    self.neg = np.zeros(len(self.edges) - 1, np.int64)
    self.count = 0

  def accumulate(self, maps, masks) -> None:
    maps = check_maps(maps, self.count)
    masks = np.asarray(masks)
    if masks.ndim == 2:
      masks = masks[None]
    if masks.shape != maps.shape:
      raise VisionInputError(f"masks {masks.shape} and maps {maps.shape} differ in shape",
                             field="masks")
    unknown = ~np.isin(masks, (0, 1, 255))
    if unknown.any():
      i = int(np.argwhere(unknown)[0][0])
      raise VisionInputError("mask values must be 0, 1 or 255 (ignored)",
                             row=self.count + i, field="masks")
    self.pos += _histogram(maps[masks == 1], self.edges)
    self.neg += _histogram(maps[masks == 0], self.edges)
    self.count += len(maps)

  def result(self) -> dict:
    if self.pos.sum() == 0:
      raise VisionInputError("no foreground pixel in any mask: PxAP is undefined",
                             field="masks")
    tp = np.cumsum(self.pos[::-1])
    fp = np.cumsum(self.neg[::-1])
    predicted = tp + fp
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
    recall = tp / self.pos.sum()
    keep = predicted[1:] > 0
    pxap = float((precision[1:] * np.diff(recall))[keep].sum())
    return {"pxap": pxap, "num_images": self.count}
