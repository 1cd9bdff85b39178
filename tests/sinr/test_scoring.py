"""Streaming scorer: AP / F1 threshold / range size against sklearn and float64 numpy, 8 devices
against 1, both implementations against each other, AP-only blocks, and bad input. (Rank counts
and AP themselves: tests/ecorep/test_ranking.py.)"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import average_precision_score

from ecorep.mesh import data_mesh
from sinr_jax.errors import SinrInputError
from sinr_jax.features import make_encoder
from sinr_jax.models import RangeModel
from sinr_jax.observations import ClassIndex
from sinr_jax.predictor import RangePredictor
from sinr_jax.scoring import (CellScorer, cell_areas_km2, evaluate_ranges, plan_blocks,
                              score_species)


def brute_force(logits, positives, areas):
  """float64 references by enumeration: AP (sklearn), max F1 over thresholds 'score >= t', and
  the size/area of the range at the highest threshold reaching it."""
  y = np.zeros(len(logits), bool)
  y[positives] = True
  if not y.any():
    return np.nan, np.nan, None, None, None
  ap = average_precision_score(y, logits)
  best, best_t = -1.0, None
  for t in np.unique(logits):  # ascending: '>=' keeps the highest threshold among equal F1
    inside = logits >= t
    f1 = 2 * (inside & y).sum() / (inside.sum() + y.sum())
    if f1 >= best:
      best, best_t = f1, t
  inside = logits >= best_t
  return ap, best, best_t, int(inside.sum()), float(areas[inside].sum())


@pytest.fixture(scope="module")
def integer_problem():
  """Small-integer embeddings and head rows: float32 logits are exact and full of ties."""
  rng = np.random.default_rng(1)
  m, d = 1001, 4
  emb = rng.integers(-2, 3, (m, d)).astype(np.float32)
  w = rng.integers(-2, 3, (8, d)).astype(np.float32)
  pos = [np.flatnonzero(rng.random(m) < q).astype(np.int32)
         for q in (0.003, 0.05, 0.3, 0.0, 0.9, 0.02, 1.0, 0.5)]
  area = rng.uniform(100, 300, m)
  return emb, w, pos, area


@pytest.mark.parametrize("impl", ["host", "xla"])
def test_block_outputs_match_sklearn_and_enumeration_on_1_and_8_devices(integer_problem, impl):
  emb, w, pos, area = integer_problem
  logits = emb.astype(np.float64) @ w.T.astype(np.float64)
  p = np.full((8, 1024), -1, np.int32)
  n = np.array([len(q) for q in pos], np.int32)
  for i, q in enumerate(pos):
    p[i, :len(q)] = q
  outs = []
  for mesh in (data_mesh(), data_mesh(jax.devices()[:1])):
    scorer = CellScorer(emb, area, mesh=mesh, impl=impl)
    outs.append(CellScorer.block_result(scorer.score_block(w, p, n, default_logit=0.5)))
  assert len(jax.devices()) == 8
  for key in outs[0]:  # areas are float32 sums: per-device partial sums round differently
    np.testing.assert_allclose(outs[0][key], outs[1][key], rtol=1e-6 if key == "range_km2" else 0,
                               err_msg=key)
  out = outs[0]
  for i in range(len(pos)):
    ap, f1, t, cells, km2 = brute_force(logits[:, i], pos[i], area)
    if np.isnan(ap):  # no positive: default threshold, no AP
      assert np.isnan(out["ap"][i]) and out["threshold_logit"][i] == 0.5
      cells, km2 = (logits[:, i] >= 0.5).sum(), area[logits[:, i] >= 0.5].sum()
    else:
      assert out["ap"][i] == pytest.approx(ap, abs=1e-6)
      assert out["best_f1"][i] == pytest.approx(f1, abs=1e-6)
      assert out["threshold_logit"][i] == t
    assert out["range_cells"][i] == cells
    assert out["range_km2"][i] == pytest.approx(km2, rel=1e-5)
  # AP only (what IUCN runs): the same counts, AP and thresholds; no range sizes.
  ap_only = CellScorer.block_result(scorer.score_block(w, p, n, default_logit=0.5, ranges=False))
  for key in ("c_all", "c_pos", "ap", "best_f1", "threshold_logit", "num_pos"):
    np.testing.assert_array_equal(ap_only[key], outs[1][key], err_msg=key)
  assert (ap_only["range_cells"] == -1).all() and np.isnan(ap_only["range_km2"]).all()


def test_host_and_xla_blocks_agree(integer_problem):
  """Exact logits (small integers): both implementations give the same integers and thresholds."""
  emb, w, pos, area = integer_problem
  p = np.full((8, 1024), -1, np.int32)
  n = np.array([len(q) for q in pos], np.int32)
  for i, q in enumerate(pos):
    p[i, :len(q)] = q
  out = {impl: CellScorer.block_result(CellScorer(emb, area, impl=impl).score_block(
      w, p, n, default_logit=-0.5)) for impl in ("host", "xla")}
  assert set(out["host"]) == set(out["xla"])
  for key in out["host"]:
    np.testing.assert_allclose(out["host"][key], out["xla"][key],
                               rtol=1e-6 if key == "range_km2" else 0, err_msg=key)


def test_plan_blocks_covers_every_species_once():
  rng = np.random.default_rng(2)
  num = rng.lognormal(4, 2, 500).astype(np.int64)
  plan = plan_blocks(num, max_block=32, block_elements=1 << 14)
  rows = np.concatenate([r for r, _, _ in plan])
  np.testing.assert_array_equal(np.sort(rows), np.arange(500))
  for r, b, k in plan:
    assert len(r) <= b and b * k <= max(1 << 14, k) and num[r].max(initial=0) <= k
    assert b & (b - 1) == 0 and k & (k - 1) == 0
  assert sum(len(r) < b for r, b, _ in plan) <= 1  # only the last block is short


@pytest.fixture(scope="module")
def tiny_predictor():
  encoder = make_encoder("coords")
  model = RangeModel(num_species=12, input_dim=4, width=16, depth=1, dropout=0.0)
  params = model.init(jax.random.key(0), jnp.zeros((1, 4)))["params"]
  return RangePredictor(model, params, encoder, ClassIndex(np.arange(100, 112)))


def test_score_species_end_to_end(tiny_predictor):
  rng = np.random.default_rng(3)
  lonlat = np.stack([rng.uniform(-180, 180, 700), rng.uniform(-80, 80, 700)], 1)
  taxa = np.array([100, 105, 999, 111, 103])  # 999: unknown to the model
  labels = sp.lil_matrix((len(taxa), 700), dtype=bool)
  for i, k in enumerate([5, 60, 10, 0, 300]):  # taxon 111: an empty label set
    labels[i, rng.choice(700, k, replace=False)] = True
  area = rng.uniform(200, 260, 700)
  scores = {}
  for ndev in (8, 1):
    mesh = data_mesh(jax.devices()[:ndev])
    scores[ndev] = score_species(tiny_predictor, lonlat, taxa=taxa, labels=labels.tocsr(),
                                 cell_area_km2=area, mesh=mesh, max_block=2)
  a, b = scores[8], scores[1]
  # The per-device matmuls differ in shape (cells/8 vs all cells), so XLA may round logits in
  # the last bit differently: thresholds (logits) and areas (float sums) agree to 1e-6.
  for f in ("ap", "best_f1", "threshold_logit", "range_cells", "range_km2"):
    np.testing.assert_allclose(getattr(a, f), getattr(b, f), err_msg=f,
                               rtol=1e-6 if f in ("range_km2", "threshold_logit") else 0)
  summary = a.summary()
  assert summary["num_species_unknown_to_model"] == 1
  assert summary["num_species_without_positives"] == 1
  assert summary["num_species_evaluated"] == 3
  # References from the predictor's own embeddings, in float64.
  scorer = CellScorer.from_predictor(tiny_predictor, lonlat, area)
  emb = np.asarray(tiny_predictor.embed(lonlat[:, 0], lonlat[:, 1]), np.float64)
  np.testing.assert_allclose(np.asarray(scorer.emb)[:700], emb, rtol=1e-5, atol=1e-6)
  w = np.asarray(tiny_predictor.params["species_embedding"], np.float64)
  dense = labels.toarray()
  for i, t in enumerate(taxa):
    if t in (999, 111):
      assert np.isnan(a.ap[i])
      continue
    logit = emb @ w[tiny_predictor.columns([t])[0]]
    assert a.ap[i] == pytest.approx(average_precision_score(dense[i], logit), abs=1e-5)
    inside = logit >= a.threshold_logit[i] - 1e-6 * abs(a.threshold_logit[i])
    assert abs(int(inside.sum()) - a.range_cells[i]) <= 1
  assert a.known.tolist() == [True, True, False, True, True] and a.range_cells[2] == -1
  frame = a.to_frame()
  assert list(frame.taxon_id) == taxa.tolist()
  assert set(frame.threshold_source) == {"f1", "default", ""}  # "": unknown taxon
  # Without labels: the default threshold for every known taxon.
  plain = score_species(tiny_predictor, lonlat, default_threshold=0.3, cell_area_km2=area)
  np.testing.assert_allclose(plain.threshold, 0.3, rtol=1e-6)
  assert np.isnan(plain.summary()["map"]) and len(plain.taxa) == 12


def test_evaluate_ranges_keeps_its_contract(tiny_predictor):
  rng = np.random.default_rng(4)
  lonlat = np.stack([rng.uniform(-180, 180, 300), rng.uniform(-60, 60, 300)], 1)
  taxa = np.array([101, 102, 5])
  presence = sp.csr_matrix(rng.random((3, 300)) < 0.2)
  out = evaluate_ranges(tiny_predictor, lonlat, presence, taxa)
  assert set(out) == {"map", "num_species_evaluated", "num_species_unknown_to_model",
                      "num_species_without_presence", "num_cells", "per_species_ap"}
  assert out["num_species_unknown_to_model"] == 1 and out["num_cells"] == 300
  emb = np.asarray(tiny_predictor.embed(lonlat[:, 0], lonlat[:, 1]), np.float64)
  w = np.asarray(tiny_predictor.params["species_embedding"], np.float64)
  for i, t in enumerate(taxa[:2]):
    ref = average_precision_score(presence[i].toarray()[0], emb @ w[t - 100])
    assert out["per_species_ap"][int(t)] == pytest.approx(ref, abs=1e-5)


def test_cell_areas_match_h3():
  import h3
  cells = np.array([h3.str_to_int(c) for c in ("851f8d2bfffffff", "85283473fffffff")], np.uint64)
  np.testing.assert_allclose(cell_areas_km2(cells),
                             [h3.cell_area(h3.int_to_str(int(c)), "km^2") for c in cells])
  with pytest.raises(SinrInputError):
    cell_areas_km2(np.array([123], np.uint64))


def test_bad_input(tiny_predictor):
  lonlat = np.zeros((50, 2))
  with pytest.raises(SinrInputError, match="labels matrix has shape"):
    score_species(tiny_predictor, lonlat, taxa=[100, 101], labels=sp.csr_matrix((2, 49)))
  with pytest.raises(SinrInputError, match="outside") as e:
    score_species(tiny_predictor, lonlat, taxa=[100, 101], labels=[[1, 2], [50]])
  assert e.value.field == "labels" and e.value.row == 1
  with pytest.raises(SinrInputError, match="label lists for"):
    score_species(tiny_predictor, lonlat, taxa=[100, 101], labels=[[1]])
  with pytest.raises(SinrInputError, match="cell_lonlat"):
    score_species(tiny_predictor, np.zeros((50, 3)))
  with pytest.raises(SinrInputError, match="cell_area_km2"):
    score_species(tiny_predictor, lonlat, cell_area_km2=np.ones(49))
  with pytest.raises(SinrInputError, match="default_threshold"):
    score_species(tiny_predictor, lonlat, default_threshold=1.0)
  with pytest.raises(SinrInputError, match="taxa must be"):
    score_species(tiny_predictor, lonlat, taxa=["a"])
