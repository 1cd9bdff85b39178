"""Geo-prior evaluation: classifier files (dense and top-k) and their bad-input errors, class
matching by taxon id, P(y|I)·P(y|x)^β with the uniform fallback, and the baselines against
brute-force references (haversine neighbours, binned counts, the adaptive kernel sum)."""
import jax
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics.pairwise import haversine_distances

from ecorep.mesh import data_mesh
from sinr_jax.baselines.class_prior import GridPrior
from sinr_jax.baselines.kde import LADDER_KM, AdaptiveKDEPrior
from sinr_jax.baselines.neighbours import EARTH_RADIUS_KM, NeighbourPrior
from sinr_jax.baselines.tang import TangBaseline
from sinr_jax.errors import SinrInputError
from sinr_jax.geo_prior import evaluate
from sinr_jax.geo_prior.classifier_file import read_classifier
from sinr_jax.geo_prior.combine import (accuracy, count_log_prior, match_classes,
                                        sigmoid_log_prior)
from sinr_jax.observations import ClassIndex


def write_files(tmp_path, probs, labels, taxa, *, inds=None, lonlat=None, dates=None,
                extra=None, name="c"):
  n = len(labels)
  arrays = {"probs": np.asarray(probs), "labels": np.asarray(labels),
            "model_to_taxa": np.asarray(taxa)}
  if inds is not None:
    arrays["inds"] = np.asarray(inds)
  preds = tmp_path / f"{name}_preds.npz"
  np.savez(preds, **arrays)
  lonlat = np.zeros((n, 2)) if lonlat is None else np.asarray(lonlat, float)
  meta = pd.DataFrame({"latitude": lonlat[:, 1], "longitude": lonlat[:, 0],
                       "observed_on": ["2015-06-01"] * n if dates is None else dates,
                       **(extra or {})})
  meta.to_csv(tmp_path / f"{name}_meta.csv", index=False)
  return str(preds), str(tmp_path / f"{name}_meta.csv")


DENSE = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])


@pytest.mark.parametrize("change,field,row", [
    ({"probs": DENSE - np.array([[0.6, -0.6, 0], [0, 0, 0], [0, 0, 0]])}, "probs", 0),
    ({"probs": np.where(np.eye(3, dtype=bool)[[2, 0, 1]], np.nan, DENSE)}, "probs", 0),
    ({"probs": DENSE * np.array([[1.0], [1.1], [1.0]])}, "probs", 1),
    ({"taxa": [10, 20, 10]}, "model_to_taxa", None),
    ({"labels": [0, 3, 1]}, "labels", 1),
    ({"probs": DENSE[:, :2] / DENSE[:, :2].sum(1, keepdims=True)}, "probs", None),
])
def test_bad_classifier_files_are_named(tmp_path, change, field, row):
  args = {"probs": DENSE, "labels": [0, 1, 2], "taxa": [10, 20, 30], **change}
  preds, meta = write_files(tmp_path, args["probs"], args["labels"], args["taxa"])
  with pytest.raises(SinrInputError) as e:
    read_classifier(preds, meta)
  assert e.value.field == field and e.value.row == row and e.value.file == preds


def test_top_k_file_checks_and_meta_errors(tmp_path):
  inds = np.array([[2, 0], [0, 1], [1, 2]])
  probs = np.array([[0.2, 0.5], [0.1, 0.6], [0.3, 0.6]])
  preds, meta = write_files(tmp_path, probs, [0, 1, 2], [10, 20, 30], inds=inds)
  out = read_classifier(preds, meta)
  assert not out.dense and out.inds.tolist() == inds.tolist()
  preds, meta = write_files(tmp_path, probs + 0.3, [0, 1, 2], [10, 20, 30], inds=inds)
  with pytest.raises(SinrInputError, match="sum to 1.3"):
    read_classifier(preds, meta)
  preds, meta = write_files(tmp_path, probs, [0, 1, 2], [10, 20, 30], inds=inds,
                            lonlat=[[0, 0], [0, 0], [0, 91]])
  with pytest.raises(SinrInputError, match=r"row 4, field 'latitude'"):
    read_classifier(preds, meta)
  preds, meta = write_files(tmp_path, probs, [0, 1, 2], [10, 20, 30], inds=inds,
                            dates=["2015-06-01", "2099-01-01", "soon"])
  out = read_classifier(preds, meta)  # bad dates: no date for those images, counted
  assert np.isnan(out.day[1:]).all() and out.bad_dates == {"future_date": 1,
                                                           "unparseable_date": 1}
  with pytest.raises(SinrInputError, match=r"row 3, field 'observed_on'.*in the future"):
    read_classifier(preds, meta, bad_dates="error")
  pd.DataFrame({"latitude": [1, 2], "longitude": [1, 2]}).to_csv(meta, index=False)
  with pytest.raises(SinrInputError, match="2 rows but the predictions have 3 images"):
    read_classifier(preds, meta)


class FakePrior:
  """A learned-prior stand-in: log P(y = c | x) = table[c] for every image with a location."""
  use_date = True

  def __init__(self, taxa, table):
    self.taxa, self.table = np.asarray(taxa), np.log(np.asarray(table, float))

  def log_prior(self, lon, lat, day, cols):
    assert day is not None and np.isfinite(day).all()
    return self.table[cols]


def test_product_uniform_fallback_and_matching_by_taxon(tmp_path):
  lonlat = [[0, 0], [np.nan, np.nan], [5, 5]]
  preds, meta = write_files(tmp_path, DENSE, [1, 1, 0], [10, 20, 30], lonlat=lonlat,
                            dates=["2015-06-01", "2015-06-01", ""])
  out = read_classifier(preds, meta)
  prior = FakePrior([20, 30, 40], [0.9, 0.05, 0.5])  # taxon 10 unknown to the prior
  cols, report = match_classes(out.model_to_taxa, prior.taxa)
  assert cols.tolist() == [-1, 0, 1] and report["num_unmatched"] == 1
  assert report["num_prior_classes_not_in_classifier"] == 1
  lp = sigmoid_log_prior(prior, out, cols)
  # Image 0: 0.5·1 (no prior for taxon 10), 0.3·0.9, 0.2·0.05 → class 0 stays first.
  np.testing.assert_allclose(lp[0], [0, np.log(0.9), np.log(0.05)])
  assert (lp[1:] == 0).all()  # no location; no date: the uniform prior, vision ranking
  assert accuracy(out, lp)["top1"] == accuracy(out)["top1"] == 1 / 3
  # The same images with the classes listed in another order: the same answer.
  perm = [2, 0, 1]
  preds2, meta2 = write_files(tmp_path, DENSE[:, perm], [np.argsort(perm)[1]] * 2 + [
      np.argsort(perm)[0]], np.array([10, 20, 30])[perm], lonlat=lonlat,
      dates=["2015-06-01", "2015-06-01", ""], name="p")
  out2 = read_classifier(preds2, meta2)
  cols2, _ = match_classes(out2.model_to_taxa, prior.taxa)
  for beta in (0.5, 1.0, 3.0):
    assert accuracy(out2, sigmoid_log_prior(prior, out2, cols2), beta) == accuracy(
        out, sigmoid_log_prior(prior, out, cols), beta)
  with pytest.raises(SinrInputError, match="does not belong to this prior"):
    match_classes(np.array([1, 2]), prior.taxa, "x.npz")


def test_beta_flips_a_ranking_by_hand(tmp_path):
  preds, meta = write_files(tmp_path, DENSE[:1], [1], [10, 20, 30])
  out = read_classifier(preds, meta)
  prior = FakePrior([10, 20, 30], [0.2, 0.5, 0.5])
  lp = sigmoid_log_prior(prior, out, match_classes(out.model_to_taxa, prior.taxa)[0])
  # 0.5·0.2^β vs 0.3·0.5^β: class 1 wins when β > log(5/3)/log(2.5) ≈ 0.557.
  assert accuracy(out, lp, 0.5)["top1"] == 0 and accuracy(out, lp, 0.6)["top1"] == 1
  assert accuracy(out, lp, 0.0) == accuracy(out)


def _points(seed, n, classes):
  rng = np.random.default_rng(seed)
  centres = rng.uniform([-150, -50], [150, 60], (classes, 2))
  labels = rng.integers(0, classes, n)
  lonlat = centres[labels] + rng.normal(0, 8, (n, 2))
  lonlat[:, 1] = np.clip(lonlat[:, 1], -89, 89)
  return lonlat, labels


def _haversine_km(a, b):
  return haversine_distances(np.radians(a[:, ::-1]), np.radians(b[:, ::-1])) * EARTH_RADIUS_KM


def test_neighbour_priors_against_brute_force():
  lonlat, labels = _points(0, 300, 4)
  query, _ = _points(1, 20, 4)
  cols = np.tile(np.arange(4), (20, 1))
  d = _haversine_km(query, lonlat)
  num = NeighbourPrior(lonlat, labels, 4, "num", ks=(5, 25)).scores(query, cols)
  for k in (5, 25):
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
    want = np.stack([(labels[nearest] == c).mean(1) for c in range(4)], 1)
    np.testing.assert_allclose(num[f"k={k}"], want)
  spatial = NeighbourPrior(lonlat, labels, 4, "spatial", radii_km=(300.0, 1000.0)).scores(
      query, cols)
  for r in (300.0, 1000.0):
    inside = d <= r
    total = inside.sum(1, keepdims=True)
    counts = np.stack([(inside & (labels == c)).sum(1) for c in range(4)], 1)
    want = np.where(total > 0, counts / np.maximum(total, 1), 0.25)
    np.testing.assert_allclose(spatial[f"r={r:g}km"], want)


def test_grid_prior_against_cell_counts():
  from sinr_jax import grid as h3grid
  lonlat, labels = _points(2, 200, 3)
  query = np.concatenate([lonlat[:5], [[0.0, -89.0]]])
  cols = np.tile(np.arange(3), (6, 1))
  got = GridPrior(lonlat, labels, ClassIndex(np.array([1, 2, 3])), resolutions=(1,)).scores(
      query, cols)["res=1"]
  cells, qcells = h3grid.lonlat_to_cells(lonlat, 1), h3grid.lonlat_to_cells(query, 1)
  for i, qc in enumerate(qcells):
    same = cells == qc
    want = (np.bincount(labels[same], minlength=3) / same.sum() if same.any()
            else np.full(3, 1 / 3))
    np.testing.assert_allclose(got[i], want)


def test_adaptive_kde_against_the_kernel_sum():
  lonlat, labels = _points(3, 120, 3)
  query, _ = _points(4, 10, 3)
  cols = np.tile(np.arange(3), (10, 1))
  model = AdaptiveKDEPrior(lonlat, labels, 3, k=3, scales=(1.0,))
  got = model.scores(query, cols)["scale=1"]
  # Float64 reference: each point's bandwidth is the ladder rung nearest (in log) to the distance
  # to its 3rd nearest same-class point; a 2-d Gaussian kernel in great-circle distance.
  d_train = _haversine_km(lonlat, lonlat)
  bw = np.empty(len(labels))
  for c in range(3):
    m = labels == c
    bw[m] = np.sort(d_train[np.ix_(m, m)], axis=1)[:, 3]
  bw = np.clip(bw, LADDER_KM[0], LADDER_KM[-1])
  h = LADDER_KM[np.abs(np.log(bw)[:, None] - np.log(LADDER_KM)).argmin(1)] / EARTH_RADIUS_KM
  d = _haversine_km(query, lonlat) / EARTH_RADIUS_KM
  kern = np.exp(-0.5 * (d / h) ** 2) / (2 * np.pi * h ** 2)
  joint = np.stack([kern[:, labels == c].sum(1) for c in range(3)], 1)
  np.testing.assert_allclose(got, joint / joint.sum(1, keepdims=True), rtol=2e-3, atol=1e-6)


def test_tang_layer_learns_what_location_tells():
  # Two look-alike classes the classifier cannot separate (equal probabilities), living on two
  # continents: the trained output layer separates them by the images' H3 cells.
  rng = np.random.default_rng(0)
  n = 400
  labels = rng.integers(0, 2, n)
  lonlat = np.where(labels[:, None] == 0, [[10.0, 50.0]], [[-100.0, 40.0]]) + rng.normal(0, 2,
                                                                                        (n, 2))
  feats = np.log(np.full((n, 2), 0.5))
  tang = TangBaseline(2, epochs=5, batch_size=64, mesh=data_mesh(jax.devices()[:1]))
  held = tang.fit(feats, lonlat, labels, identity=True, l2_grid=(1e-3,))
  assert held["l2=0.001"] > 0.95
  assert (tang.logits(feats[:50], lonlat[:50]).argmax(1) == labels[:50]).mean() > 0.95


def test_evaluate_chooses_on_validation_and_reports_every_method(tmp_path):
  lonlat, labels = _points(5, 60, 3)
  probs = np.full((60, 3), 0.2)
  probs[np.arange(60), (labels + 1) % 3] = 0.6   # a classifier that is always wrong
  preds, meta = write_files(tmp_path, probs, labels, [10, 20, 30], lonlat=lonlat,
                            extra={"subset_last": (np.arange(60) >= 50).astype(int)})
  out = read_classifier(preds, meta)
  val, test = out.take(np.arange(30)), out.take(np.arange(30, 60))
  prior = FakePrior([10, 20, 30], [1 / 3] * 3)
  where = {float(x): int(y) for x, y in zip(out.lonlat[:, 0], labels)}

  def knows_the_class(lon, lat, day, cols):  # 0.9 for the true class of the image, else 0.05
    truth = np.array([where[float(x)] for x in lon])[:, None]
    return np.log(np.where(cols == truth, 0.9, 0.05))
  prior.log_prior = knows_the_class
  report = evaluate.evaluate(prior, val, test, baselines=())
  assert list(report["methods"]) == ["no_prior", "prior", "prior_tuned"]
  m = report["methods"]
  assert m["no_prior"]["test"]["top1"] == 0 and m["prior"]["test"]["top1"] == 1
  assert m["prior"]["gain"]["top1"] == 1 and m["prior"]["test"]["last/top1"] == 1
  assert m["prior_tuned"]["hyper"]["beta"] == 1.0  # β ≥ 1 all reach 1.0: 1 wins the tie
  assert m["prior_tuned"]["validation"]["beta=0"] == 0
  assert "Geo prior, β tuned" in evaluate.format_table(report)


def test_count_log_prior_floor_and_unmatched():
  p = np.array([[0.0, 1.0]])
  lp = count_log_prior(p, np.array([0]), np.array([[0, -1], [1, 1]]), 0.1, 4)
  np.testing.assert_allclose(lp, np.log([[0.1 / 4, 1 / 4], [1 / 4, 1 / 4]]))
