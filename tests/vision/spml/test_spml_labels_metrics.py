"""Observed-label drawing, splits, k, MAP against scikit-learn, and the bad-input errors."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from vision_jax.errors import VisionInputError
from vision_jax.spml import labels as lab
from vision_jax.spml.metrics import mean_average_precision


def random_labels(n, l, seed=0, p=0.3):
  rng = np.random.default_rng(seed)
  y = (rng.random((n, l)) < p).astype(np.uint8)
  y[np.arange(n), rng.integers(0, l, n)] = 1
  return y


def test_one_true_positive_per_row_and_deterministic():
  y = random_labels(500, 9)
  a = lab.draw_observed(y, seed=3)
  b = lab.draw_observed(y, seed=3)
  c = lab.draw_observed(y, seed=4)
  np.testing.assert_array_equal(a.observed, b.observed)
  assert (a.observed != c.observed).any()
  assert set(np.unique(a.observed)) == {0, 1}
  np.testing.assert_array_equal(a.observed.sum(1), 1)
  assert (y[a.observed == 1] == 1).all()
  assert a.skipped == 0 and len(a.kept) == 500


def test_single_positive_is_uniform_among_true_positives():
  """Row with positives {1, 4, 6, 8}: each observed with frequency 1/4 (binomial 5σ band)."""
  y = np.zeros((4000, 10), np.uint8)
  y[:, [1, 4, 6, 8]] = 1
  obs = lab.draw_observed(y, seed=11).observed
  freq = obs.sum(0) / len(y)
  sigma = np.sqrt(0.25 * 0.75 / len(y))
  np.testing.assert_allclose(freq[[1, 4, 6, 8]], 0.25, atol=5 * sigma)
  assert freq[[0, 2, 3, 5, 7, 9]].sum() == 0


def test_observed_negatives_for_iu_keep_the_same_positives():
  y = random_labels(300, 8, seed=1)
  one = lab.draw_observed(y, seed=5).observed
  two = lab.draw_observed(y, seed=5, num_neg=1).observed
  np.testing.assert_array_equal(one == 1, two == 1)
  np.testing.assert_array_equal((two == -1).sum(1), 1)
  assert (y[two == -1] == 0).all()


def test_rows_without_positives_error_names_rows_or_skip_and_count():
  y = random_labels(20, 5)
  y[[3, 17]] = 0
  with pytest.raises(VisionInputError, match=r"2 row\(s\) have no positive.*rows 3, 17") as e:
    lab.draw_observed(y, seed=0)
  assert e.value.row == 3
  out = lab.draw_observed(y, seed=0, empty="skip")
  assert out.skipped == 2 and len(out.observed) == 18
  assert 3 not in out.kept and 17 not in out.kept


@pytest.mark.parametrize("bad", [np.array([[0, 1], [2, 0]]), np.array([[0.5, 1.0]]),
                                 np.array([[-1, 1], [0, 1]])])
def test_label_matrix_not_binary_raises(bad):
  with pytest.raises(VisionInputError, match="only 0 and 1"):
    lab.check_binary(bad)
  with pytest.raises(VisionInputError):
    lab.draw_observed(bad, seed=0)


def test_observed_values_checked():
  with pytest.raises(VisionInputError, match="−1, 0 or 1"):
    lab.check_observed(np.array([[0, 2]]))


@pytest.mark.parametrize("k", [0.0, -1.0, 14.01, float("nan"), float("inf")])
def test_k_outside_range_raises(k):
  with pytest.raises(VisionInputError, match=r"outside \(0, L\]"):
    lab.check_k(k, 14)


def test_k_bounds_and_expected_positives():
  assert lab.check_k(14, 14) == 14.0 and lab.check_k(1e-3, 14) == 1e-3
  y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 1], [1, 0, 0]])
  assert lab.expected_positives(y) == pytest.approx(7 / 4)


def test_train_val_split_is_the_reference_twenty_percent():
  tr, va = lab.train_val_split(1001, 0.2, seed=1200)
  assert len(va) == 200 and len(tr) == 801
  assert np.array_equal(np.sort(np.r_[tr, va]), np.arange(1001))
  tr2, _ = lab.train_val_split(1001, 0.2, seed=1200)
  np.testing.assert_array_equal(tr, tr2)


def test_map_equals_sklearn_with_ties_and_excluded_classes():
  rng = np.random.default_rng(7)
  y = (rng.random((300, 12)) < 0.2).astype(np.uint8)
  y[:, 5] = 0                                   # no positive: excluded and counted
  y[:, 9] = 0
  s = np.round(rng.random((300, 12)), 1)         # heavy ties
  s[:, 3] = 0.5                                 # one class with all scores tied
  res = mean_average_precision(y, s)
  want = [average_precision_score(y[:, j], s[:, j]) for j in range(12) if y[:, j].any()]
  np.testing.assert_allclose(res.map, np.mean(want), atol=1e-6)
  np.testing.assert_array_equal(res.excluded, [5, 9])
  assert res.num_excluded == 2
  for j in (0, 3, 11):
    np.testing.assert_allclose(res.per_class[j], average_precision_score(y[:, j], s[:, j]),
                               atol=1e-12)


def test_map_hand_computed():
  # class 0 ranks 0.9 (pos), 0.8 (neg), 0.7 (pos) -> AP = (1/2)·1 + (1/2)·(2/3);
  # class 1: a tie between its positive and the negatives at the top -> precision 1/3 at recall 1
  res = mean_average_precision([[1, 1], [0, 0], [1, 0]], [[0.9, 0.5], [0.8, 0.5], [0.7, 0.5]])
  np.testing.assert_allclose(res.per_class, [0.5 + 1 / 3, 1 / 3])
  assert res.map == pytest.approx((0.5 + 1 / 3 + 1 / 3) / 2) and res.num_excluded == 0


def test_map_input_errors():
  with pytest.raises(VisionInputError, match="differ in shape"):
    mean_average_precision(np.ones((3, 2)), np.ones((3, 3)))
  with pytest.raises(VisionInputError, match="non-finite"):
    mean_average_precision(np.ones((2, 2)), np.array([[0.1, np.nan], [0.2, 0.3]]))
