"""The seed's Fig. 4.5 analyses of localisation maps, at one operating threshold τ.

Per image:
- `box_area_ratio`: area of the predicted box (of all the map's contour boxes at τ, the one
  with the best IoU against a ground-truth box: the box MaxBoxAccV2 credits) over the area of
  that ground-truth box; > 1 means the map spreads beyond the object, < 1 that it covers a part.
- `inside_share`: the share of the map's total activation (the normalised map, no threshold)
  that lies inside the ground-truth boxes; `1 − inside_share` lies outside.
- `components`: 8-connected components of the map binarised at τ (fragmentation).
τ is the threshold that maximises BoxAcc at IoU 0.5 on the same split.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from vision_jax.wsol import boxes as box_lib
from vision_jax.wsol.metrics import binarize

_EIGHT = np.ones((3, 3), bool)


def analyze_map(score_map: np.ndarray, gt_boxes: np.ndarray, tau: float,
                convention: str = "reference") -> dict:
  binary = binarize(score_map, np.array([tau]))
  components = int(ndimage.label(binary[0], structure=_EIGHT)[1])
  predicted = box_lib.contour_boxes(binary, convention)[0]
  ratio = np.nan
  if len(predicted):
    ious = box_lib.iou_matrix(predicted, gt_boxes)
    p, g = np.unravel_index(int(np.argmax(ious)), ious.shape)
    ratio = float(box_lib.box_area(predicted[p:p + 1])[0] / box_lib.box_area(gt_boxes[g:g + 1])[0])
  total = float(score_map.sum())
  inside = box_lib.boxes_mask(gt_boxes, score_map.shape)
  share = float(score_map[inside].sum() / total) if total > 0 else np.nan
  return {"box_area_ratio": ratio, "inside_share": share, "components": components}


class Analyses:
  """Accumulates per-image analyses; `summary()` gives medians / means over the images."""

  def __init__(self, tau: float, convention: str = "reference"):
    self.tau, self.convention = float(tau), convention
    self.rows: list[dict] = []

  def accumulate(self, maps, gt_boxes) -> None:
    for m, gt in zip(np.asarray(maps), gt_boxes):
      self.rows.append(analyze_map(m, box_lib.check_boxes(gt), self.tau, self.convention))

  def summary(self) -> dict:
    col = lambda k: np.array([r[k] for r in self.rows], np.float64)  # noqa: E731
    ratio, share, comps = col("box_area_ratio"), col("inside_share"), col("components")
    return {"tau": self.tau, "num_images": len(self.rows),
            "box_area_ratio_median": float(np.nanmedian(ratio)) if np.isfinite(ratio).any()
            else float("nan"),
            "box_area_ratio_log2_mean": float(np.nanmean(np.log2(ratio)))
            if np.isfinite(ratio).any() else float("nan"),
            "inside_share_mean": float(np.nanmean(share)) if np.isfinite(share).any()
            else float("nan"),
            "outside_share_mean": float(1 - np.nanmean(share)) if np.isfinite(share).any()
            else float("nan"),
            "components_mean": float(comps.mean()) if len(comps) else float("nan"),
            "no_box": int(np.isnan(ratio).sum())}
