import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from sinr_jax.ap import average_precision, average_precision_columns


@pytest.mark.parametrize("seed", range(5))
def test_ap_equals_sklearn_with_ties(seed):
  rng = np.random.default_rng(seed)
  n, s = 300, 12
  scores = rng.integers(0, 8, (n, s)).astype(np.float32) / 8  # heavy ties
  labels = rng.random((n, s)) < rng.uniform(0.01, 0.4, s)
  labels[0] = True  # every column has a positive
  expected = [average_precision_score(labels[:, j], scores[:, j]) for j in range(s)]
  np.testing.assert_allclose([average_precision(scores[:, j], labels[:, j]) for j in range(s)],
                             expected, atol=1e-12)
  np.testing.assert_allclose(np.asarray(average_precision_columns(scores, labels)), expected,
                             atol=1e-6)


def test_hand_computed_and_no_positive():
  # Scores 0.9 (pos), 0.8 (neg), 0.8 (pos), 0.1 (neg): thresholds 0.9 → P=1, R=1/2;
  # 0.8 (tie) → P=2/3, R=1: AP = 1/2·1 + 1/2·2/3 = 5/6.
  assert average_precision([0.9, 0.8, 0.8, 0.1], [1, 0, 1, 0]) == pytest.approx(5 / 6)
  assert np.isnan(average_precision([0.3, 0.2], [0, 0]))
  col = np.asarray(average_precision_columns(np.array([[0.3], [0.2]]), np.zeros((2, 1), bool)))
  assert np.isnan(col[0])
