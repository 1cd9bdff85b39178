"""ecorep.ranking and ecorep.rank_counts: exact AP against scikit-learn and a float64 numpy
formula (ties, no/all positives, subnormals, ±0, ±inf), order keys over float32 bit patterns,
rank counts against enumeration, sharded against unsharded inputs, and the MAP helper."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P
from sklearn.metrics import average_precision_score

from ecorep import rank_counts, ranking
from ecorep.mesh import data_mesh

IMPLS = ("host", "xla")


def ap_by_thresholds(labels, scores) -> float:
  """Σ_k (R_k − R_{k−1})·P_k over the distinct thresholds, descending, in float64 (the definition)."""
  y, s = np.asarray(labels, bool), np.asarray(scores, np.float64)
  if not y.any():
    return float("nan")
  ap, prev_recall = 0.0, 0.0
  for t in np.unique(s)[::-1]:
    inside = s >= t
    recall = (inside & y).sum() / y.sum()
    ap += (recall - prev_recall) * (inside & y).sum() / inside.sum()
    prev_recall = recall
  return ap


def sklearn_ap(labels, scores) -> float:
  """sklearn on an order-equivalent float64 column (sklearn refuses ±inf)."""
  s = np.asarray(scores, np.float64)
  return average_precision_score(labels, np.where(np.isinf(s), np.sign(s) * 1e300, s))


def all_paths(labels, scores) -> dict:
  """AP of every column by the numpy path and both XLA-path implementations."""
  out = {"numpy": [ranking.average_precision(labels[:, j], scores[:, j])
                   for j in range(scores.shape[1])]}
  for impl in IMPLS:
    out[impl] = np.asarray(ranking.average_precision_columns(labels, scores, impl=impl))
  return out


@pytest.mark.parametrize("seed", range(4))
def test_ap_equals_sklearn_with_heavy_ties(seed):
  rng = np.random.default_rng(seed)
  n, c = 300, 12
  scores = rng.integers(-4, 4, (n, c)).astype(np.float32) / 8  # heavy ties, both signs
  labels = rng.random((n, c)) < rng.uniform(0.01, 0.5, c)
  labels[0] = True  # every column has a positive
  expected = [average_precision_score(labels[:, j], scores[:, j]) for j in range(c)]
  np.testing.assert_allclose(expected, [ap_by_thresholds(labels[:, j], scores[:, j])
                                        for j in range(c)], atol=1e-12)
  got = all_paths(labels, scores)
  np.testing.assert_allclose(got["numpy"], expected, atol=1e-12)
  for impl in IMPLS:
    np.testing.assert_allclose(got[impl], expected, atol=1e-6, err_msg=impl)


def test_hand_computed_no_positive_and_all_positive():
  # 0.9 (pos), 0.8 (neg), 0.8 (pos), 0.1 (neg): thresholds 0.9 → P=1, R=1/2; 0.8 (tie) → P=2/3,
  # R=1: AP = 1/2·1 + 1/2·2/3 = 5/6. A positive tied with a negative at the top: AP = 1/2.
  assert ranking.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.8, 0.1]) == pytest.approx(5 / 6)
  assert ranking.average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
  assert ranking.average_precision([1, 0, 1], [3, 2, 1]) == pytest.approx(0.5 + 1 / 3)  # ints
  assert np.isnan(ranking.average_precision([0, 0], [0.3, 0.2]))
  assert ranking.average_precision([1, 1, 1], [0.3, 0.3, -2.0]) == 1.0
  labels = np.array([[0, 1, 1], [0, 1, 0], [0, 1, 1]], bool)
  scores = np.array([[0.3, 0.1, 0.2], [0.2, 0.2, 0.9], [0.1, 0.3, 0.2]], np.float32)
  for impl in IMPLS:
    got = np.asarray(ranking.average_precision_columns(labels, scores, impl=impl))
    assert np.isnan(got[0]) and got[1] == 1.0, impl
    assert got[2] == pytest.approx(sklearn_ap(labels[:, 2], scores[:, 2]), abs=1e-6), impl


def test_input_errors():
  with pytest.raises(ValueError, match="equal length"):
    ranking.average_precision([1, 0], [0.1, 0.2, 0.3])
  with pytest.raises(ValueError, match="NaN"):
    ranking.average_precision([1, 0], [0.1, np.nan])
  with pytest.raises(ValueError, match="equal shape"):
    ranking.mean_average_precision(np.ones((3, 2)), np.ones((3, 3)))
  with pytest.raises(ValueError, match="unknown rank-count implementation"):
    ranking.average_precision_columns(np.ones((3, 2)), np.ones((3, 2)), impl="gpu")


def special_column(rng, n=400):
  """Distinct subnormals of both signs, ties among them, ±0.0, ±inf, a few normal values."""
  tiny = np.float32(1.4e-45)  # the smallest subnormal
  sub = rng.permutation(np.arange(1, 60, dtype=np.float32)) * tiny  # 59 distinct subnormals
  values = np.concatenate([sub, -sub[:20], sub[:15],            # ties among subnormals
                           [0.0, -0.0, 0.0, -0.0, np.inf, -np.inf, np.inf],
                           np.float32([1.17549435e-38, -1.17549435e-38, 0.5, -3.0])])
  s = rng.choice(values.astype(np.float32), n)
  s[:len(values)] = values
  return rng.permutation(s).astype(np.float32)


@pytest.mark.parametrize("seed", range(3))
def test_subnormals_zeros_and_infinities_equal_sklearn_on_every_path(seed):
  rng = np.random.default_rng(seed)
  scores = np.stack([special_column(rng) for _ in range(4)], 1)
  labels = rng.random(scores.shape) < 0.3
  # A column that only subnormals and zeros rank: merging them into one key would tie it all.
  scores[:, 3] = np.where(np.abs(scores[:, 3]) < 1.2e-38, scores[:, 3], 0.0)
  # Many distinct ranks: the test would fail if subnormals shared a key.
  assert len(np.unique(scores[:, 3])) > 50
  expected = [sklearn_ap(labels[:, j], scores[:, j]) for j in range(scores.shape[1])]
  np.testing.assert_allclose(expected, [ap_by_thresholds(labels[:, j], scores[:, j])
                                        for j in range(scores.shape[1])], atol=1e-12)
  tied = ap_by_thresholds(labels[:, 3], np.where(np.abs(scores[:, 3]) > 0, 1e-30, 0.0))
  assert abs(tied - expected[3]) > 1e-3  # what a flushed key would give is measurably different
  got = all_paths(labels, scores)
  np.testing.assert_allclose(got["numpy"], expected, atol=1e-12)
  for impl in IMPLS:
    np.testing.assert_allclose(got[impl], expected, atol=1e-6, err_msg=impl)


def test_numpy_path_is_exact_where_subnormals_flush_to_zero():
  """Inside a jax callback numpy runs in XLA's flush-to-zero mode (and so do threads started
  there): the numpy path must compare integer keys, not floats, to stay exact."""
  rng = np.random.default_rng(5)
  scores = np.stack([special_column(rng) for _ in range(3)], 1)
  scores[:, 2] = np.where(np.abs(scores[:, 2]) < 1.2e-38, scores[:, 2], 0.0)
  labels = rng.random(scores.shape) < 0.3
  expected = [sklearn_ap(labels[:, j], scores[:, j]) for j in range(3)]
  scores64 = scores.astype(np.float64)  # here: float conversions flush in the callback too

  def in_callback(_):
    assert not np.float32(1e-40) > 0  # flushed here, as the test means
    per_column = [ranking.average_precision(labels[:, j], scores[:, j]) for j in range(3)]
    per_column64 = [ranking.average_precision(labels[:, j], scores64[:, j]) for j in range(3)]
    return np.array(per_column + per_column64 +
                    list(ranking.mean_average_precision(labels, scores).per_class), np.float32)

  got = jax.jit(lambda x: jax.pure_callback(in_callback, jax.ShapeDtypeStruct((9,), jnp.float32),
                                            x * 2))(jnp.float32(1))
  np.testing.assert_allclose(np.asarray(got), expected * 3, atol=1e-6)


def test_order_keys_are_strictly_monotone_over_float32_bit_patterns():
  rng = np.random.default_rng(0)
  bits = np.concatenate([
      rng.integers(0, 2**32, 1 << 20, dtype=np.uint64).astype(np.uint32),
      rng.integers(0, 0x00800000, 1 << 14, dtype=np.uint32),                # positive subnormals
      rng.integers(0x80000000, 0x80800000, 1 << 14, dtype=np.uint64).astype(np.uint32),  # negative
      np.array([0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000, 0x80800000,
                0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000], np.uint32)])
  x = bits.view(np.float32)
  x = x[~np.isnan(x)]
  keys = np.asarray(jax.jit(rank_counts.order_keys)(jnp.asarray(x)))
  order = np.argsort(x.astype(np.float64), kind="stable")  # numpy compares subnormals exactly
  xs, ks = x[order].astype(np.float64), keys[order]
  same = xs[1:] == xs[:-1]
  assert (ks[1:][same] == ks[:-1][same]).all()          # equal floats (0.0/-0.0 too): one key
  assert (ks[1:][~same] > ks[:-1][~same]).all()         # a larger float: a larger key
  assert keys[x == 0].min() == keys[x == 0].max() == 0  # -0.0 merged into +0.0
  back = np.asarray(jax.jit(rank_counts.keys_to_float)(jnp.asarray(keys)))
  np.testing.assert_array_equal(back.view(np.uint32), (x + np.float32(0)).view(np.uint32))
  assert (keys < rank_counts.PAD_KEY).all()
  # The numpy transform gives the same keys; on float64 it keeps the order and ties too.
  np.testing.assert_array_equal(rank_counts.order_keys_np(x), keys)
  k64 = rank_counts.order_keys_np(x.astype(np.float64))
  assert k64.dtype == np.int64 and (k64[order][1:][same] == k64[order][:-1][same]).all()
  assert (k64[order][1:][~same] > k64[order][:-1][~same]).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_rank_counts_match_enumeration(impl):
  rng = np.random.default_rng(0)
  keys = rng.integers(-5, 5, (3, 200)).astype(np.int32)  # heavy ties
  thr = np.take_along_axis(keys, rng.integers(0, 200, (3, 17)), 1)
  thr[:, -3:] = rank_counts.PAD_KEY
  if impl == "xla":
    c_all, c_pos = map(np.asarray, jax.jit(jax.vmap(rank_counts.xla_counts))(keys, thr))
  else:
    c_all, c_pos = map(np.stack, zip(*[rank_counts.row_counts(k, t) for k, t in zip(keys, thr)]))
  np.testing.assert_array_equal(c_all, (keys[:, None, :] >= thr[:, :, None]).sum(-1))
  np.testing.assert_array_equal(c_pos, (thr[:, None, :] >= thr[:, :, None]).sum(-1))


@pytest.mark.parametrize("keep", [0.001, 0.3, 0.5, 1.0])
def test_count_at_or_above_any_selectivity(keep):
  rng = np.random.default_rng(1)
  v = rng.standard_normal(5000)
  t = np.sort(rng.choice(v, 40))
  t[0] = np.quantile(v, 1 - keep)  # the lowest threshold decides how many values are sorted
  t = np.sort(t)
  np.testing.assert_array_equal(rank_counts.count_at_or_above(v, t),
                                (v[None, :] >= t[:, None]).sum(1))


def test_ap_from_counts_matches_sklearn():
  rng = np.random.default_rng(2)
  scores = rng.integers(0, 10, (5, 300)).astype(np.float64)
  labels = rng.random((5, 300)) < 0.2
  labels[3] = False
  k = 128
  c_pos, c_all = np.zeros((5, k), int), np.ones((5, k), int)
  for b in range(5):
    t = scores[b][labels[b]]
    c_all[b, :len(t)] = (scores[b][None, :] >= t[:, None]).sum(1)
    c_pos[b, :len(t)] = (t[None, :] >= t[:, None]).sum(1)
  got = ranking.ap_from_counts(c_pos, c_all, labels.sum(1))
  for b in range(5):
    if b == 3:
      assert np.isnan(got[b])
    else:
      assert got[b] == pytest.approx(average_precision_score(labels[b], scores[b]), abs=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_sharded_inputs_match_unsharded(impl):
  rng = np.random.default_rng(3)
  scores = (rng.integers(0, 50, (800, 16)) - 25).astype(np.float32) * 1e-39  # subnormal ties
  labels = rng.random((800, 16)) < 0.1
  labels[:, 5] = False
  mesh = data_mesh()
  assert mesh.devices.size == 8
  for spec in (P("data", None), P(None, "data")):  # rows or columns over the 8 devices
    sharding = NamedSharding(mesh, spec)
    got = np.asarray(ranking.average_precision_columns(
        jax.device_put(labels, sharding), jax.device_put(scores, sharding), impl=impl))
    plain = np.asarray(ranking.average_precision_columns(labels, scores, impl=impl))
    if impl == "host":  # the same integer counts and the same numpy mean: bit for bit
      np.testing.assert_array_equal(got, plain)
    else:  # float32 sums may be reduced in another order
      np.testing.assert_allclose(got, plain, rtol=1e-6)
    expected = [sklearn_ap(labels[:, j], scores[:, j]) if labels[:, j].any() else np.nan
                for j in range(16)]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_mean_average_precision_excludes_and_counts_classes_without_positive():
  rng = np.random.default_rng(4)
  y = rng.random((300, 10)) < 0.2
  y[:, [2, 7]] = False
  s = np.round(rng.random((300, 10)), 1)
  s[:, 4] = 0.5  # all tied
  res = ranking.mean_average_precision(y, s)
  want = [average_precision_score(y[:, j], s[:, j]) for j in range(10) if y[:, j].any()]
  assert res.map == pytest.approx(np.mean(want), abs=1e-12)
  np.testing.assert_array_equal(res.excluded, [2, 7])
  assert res.num_excluded == 2 and np.isnan(res.per_class[[2, 7]]).all()
  assert res.per_class[4] == pytest.approx(y[:, 4].mean())  # all tied: precision = prevalence
  empty = ranking.MAPResult.from_per_class([np.nan, np.nan])
  assert np.isnan(empty.map) and empty.num_excluded == 2
