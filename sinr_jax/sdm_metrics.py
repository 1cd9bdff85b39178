"""Presence–background metrics of a species distribution model's scores.

Scores at held-out presences are compared with scores at background points of the same area:
- ROC AUC and PR AUC (average precision) are scikit-learn's `roc_auc_score` and
  `average_precision_score` (background = the negative class, so "precision" is presence vs
  background, not true precision, and depends on how many background points there are).
- The continuous Boyce index (Hirzel et al. 2006, as in ecospat's `ecospat.boyce`): 101 moving
  windows of width (max − min)/10 over the background's score range; in each the ratio
  F = (share of presences in it) / (share of background in it); windows with no background are
  skipped, and a window whose F equals the next window's is dropped (ecospat's rm.duplicate);
  the index is Spearman's correlation between F and the window centres. Unlike ecospat, the last
  window is not shifted by +1 (ecospat's way to catch scores above the background's maximum).
- TSS (sensitivity + specificity − 1) and F1 at a threshold, a score >= threshold meaning
  "presence". The threshold comes from a stated rule (`choose_threshold`): "max_tss" (the score
  maximising TSS on the data given, e.g. the training fold), "p10" (10% of those presences fall
  below it), or a fixed number.
"""
from __future__ import annotations

import numpy as np

from sinr_jax.errors import SinrInputError

THRESHOLD_RULES = ("max_tss", "p10")


def _scores(values, name: str) -> np.ndarray:
  a = np.asarray(values, np.float64).reshape(-1)
  if not len(a):
    raise SinrInputError(f"no {name} scores to evaluate", field=name)
  if not np.all(np.isfinite(a)):
    raise SinrInputError(f"{int((~np.isfinite(a)).sum())} {name} scores are NaN or inf",
                         field=name)
  return a


def _labels_scores(presence, background):
  p, b = _scores(presence, "presence"), _scores(background, "background")
  return np.r_[np.ones(len(p)), np.zeros(len(b))], np.r_[p, b]


def roc_auc(presence, background) -> float:
  from sklearn.metrics import roc_auc_score
  return float(roc_auc_score(*_labels_scores(presence, background)))


def pr_auc(presence, background) -> float:
  from sklearn.metrics import average_precision_score
  return float(average_precision_score(*_labels_scores(presence, background)))


def boyce_index(presence, background, *, num_windows: int = 101,
                width: float | None = None) -> float:
  """Continuous Boyce index in [-1, 1] (NaN when fewer than two windows are usable)."""
  from scipy.stats import spearmanr
  p, b = _scores(presence, "presence"), _scores(background, "background")
  lo, hi = b.min(), b.max()
  if hi <= lo:
    return float("nan")
  width = (hi - lo) / 10 if width is None else width
  starts = lo + np.arange(num_windows) * (hi - lo - width) / (num_windows - 1)
  ends = starts + width
  ps, bs = np.sort(p), np.sort(b)
  count_p = np.searchsorted(ps, ends, "right") - np.searchsorted(ps, starts, "left")
  count_b = np.searchsorted(bs, ends, "right") - np.searchsorted(bs, starts, "left")
  ok = count_b > 0
  f = (count_p[ok] / len(p)) / (count_b[ok] / len(b))
  centres = (starts + width / 2)[ok]
  keep = np.r_[f[:-1] != f[1:], True] if len(f) else np.zeros(0, bool)
  f, centres = f[keep], centres[keep]
  if len(f) < 2 or np.all(f == f[0]):
    return float("nan")
  return float(spearmanr(f, centres).statistic)


def choose_threshold(presence, background, rule="max_tss") -> float:
  """The threshold a rule picks from these scores (a number is returned as it is)."""
  if not isinstance(rule, str):
    return float(rule)
  try:
    return float(rule)
  except ValueError:
    pass
  if rule == "max_tss":
    from sklearn.metrics import roc_curve
    fpr, tpr, thresholds = roc_curve(*_labels_scores(presence, background))
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], _scores(presence, "presence").max()))
  if rule == "p10":
    return float(np.quantile(_scores(presence, "presence"), 0.1, method="lower"))
  raise SinrInputError(f"unknown threshold rule {rule!r}; use {', '.join(THRESHOLD_RULES)} or a "
                       "number", field="threshold")


def threshold_metrics(presence, background, threshold: float) -> dict:
  """Sensitivity, specificity, TSS, precision and F1 with score >= threshold as presence."""
  p, b = _scores(presence, "presence"), _scores(background, "background")
  tp, fn = int(np.sum(p >= threshold)), int(np.sum(p < threshold))
  fp, tn = int(np.sum(b >= threshold)), int(np.sum(b < threshold))
  sens, spec = tp / (tp + fn), tn / (tn + fp)
  return {"threshold": float(threshold), "sensitivity": sens, "specificity": spec,
          "tss": sens + spec - 1, "precision": tp / (tp + fp) if tp + fp else 0.0,
          "f1": 2 * tp / (2 * tp + fp + fn)}


def evaluate(presence, background, threshold: float) -> dict:
  """Every metric of held-out presence and background scores at a given threshold."""
  return {"roc_auc": roc_auc(presence, background), "pr_auc": pr_auc(presence, background),
          "boyce": boyce_index(presence, background),
          **threshold_metrics(presence, background, threshold),
          "num_presences": int(np.size(presence)), "num_background": int(np.size(background))}
