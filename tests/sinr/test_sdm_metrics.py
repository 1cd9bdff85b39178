"""Presence–background metrics against scikit-learn and slow, obviously correct loops."""
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, roc_auc_score

from sinr_jax import sdm_metrics
from sinr_jax.errors import SinrInputError


def _scores(seed=0, ties=False):
  rng = np.random.default_rng(seed)
  p, b = rng.beta(4, 2, 300), rng.beta(2, 4, 900)
  if ties:
    p, b = np.round(p, 1), np.round(b, 1)
  return p, b


@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_ap_match_sklearn(ties):
  p, b = _scores(ties=ties)
  y, s = np.r_[np.ones(len(p)), np.zeros(len(b))], np.r_[p, b]
  assert sdm_metrics.roc_auc(p, b) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
  assert sdm_metrics.pr_auc(p, b) == pytest.approx(average_precision_score(y, s), abs=1e-12)
  # AUC = P(score of a presence > score of a background point), ties counted half.
  pairs = (p[:, None] > b[None]).mean() + 0.5 * (p[:, None] == b[None]).mean()
  assert sdm_metrics.roc_auc(p, b) == pytest.approx(pairs, abs=1e-12)


def _boyce_loop(p, b, n=101):
  """The continuous Boyce index written out window by window."""
  lo, hi = min(b), max(b)
  w = (hi - lo) / 10
  f, mids = [], []
  for i in range(n):
    a = lo + i * (hi - lo - w) / (n - 1)
    pi = sum(a <= x <= a + w for x in p) / len(p)
    ei = sum(a <= x <= a + w for x in b) / len(b)
    if ei > 0:
      f.append(pi / ei)
      mids.append(a + w / 2)
  keep = [i for i in range(len(f)) if i == len(f) - 1 or f[i] != f[i + 1]]
  return spearmanr([f[i] for i in keep], [mids[i] for i in keep]).statistic


def test_boyce_index_matches_the_window_loop_and_hand_cases():
  p, b = _scores(1)
  assert sdm_metrics.boyce_index(p, b) == pytest.approx(_boyce_loop(p, b), abs=1e-12)
  # Presences concentrated where scores are high: F rises with the score, index near 1.
  b = np.linspace(0, 1, 1001)
  assert sdm_metrics.boyce_index(b[b > 0.3] ** 0.5, b) > 0.95
  # Presences where scores are low: index near -1.
  assert sdm_metrics.boyce_index(b[b < 0.5], b) < -0.9


def test_threshold_metrics_match_sklearn_and_rules_pick_as_stated():
  p, b = _scores(2)
  y, s = np.r_[np.ones(len(p)), np.zeros(len(b))], np.r_[p, b]
  t = 0.55
  m = sdm_metrics.threshold_metrics(p, b, t)
  tn, fp, fn, tp = confusion_matrix(y, s >= t).ravel()
  assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
  assert m["specificity"] == pytest.approx(tn / (tn + fp))
  assert m["tss"] == pytest.approx(tp / (tp + fn) + tn / (tn + fp) - 1)
  assert m["f1"] == pytest.approx(f1_score(y, s >= t))
  # max_tss: no candidate threshold gives a higher TSS (brute force over every score).
  best = sdm_metrics.choose_threshold(p, b, "max_tss")
  brute = max(sdm_metrics.threshold_metrics(p, b, c)["tss"] for c in np.unique(s))
  assert sdm_metrics.threshold_metrics(p, b, best)["tss"] == pytest.approx(brute)
  t10 = sdm_metrics.choose_threshold(p, b, "p10")
  assert 0.09 <= np.mean(p < t10) <= 0.1
  assert sdm_metrics.choose_threshold(p, b, "0.25") == 0.25
  with pytest.raises(SinrInputError, match="unknown threshold rule"):
    sdm_metrics.choose_threshold(p, b, "youden")
  with pytest.raises(SinrInputError, match="NaN"):
    sdm_metrics.roc_auc([0.5, np.nan], b)
