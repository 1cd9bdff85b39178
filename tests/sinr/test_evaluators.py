"""The four evaluators on small hand-made files, against independent references: scikit-learn's
average_precision_score / RidgeCV / r2_score, the reference's split rule re-derived here, and a
3-image geo-prior example worked out by hand."""
import json
import math

import numpy as np
import pytest
import tifffile
from sklearn.linear_model import RidgeCV
from sklearn.metrics import average_precision_score, r2_score

from sinr_jax import evaluators
from sinr_jax.evaluators.geo_feature import checkerboard_split


def lonlat_feats(lon, lat):
  """Location features whose linear scores are exact binary fractions at the test locations."""
  lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
  return np.stack([lon / 180, lat / 90, np.ones_like(lon)], 1)


class LinearPredictor:
  """Stand-in for sinr_jax.RangePredictor with known logits: feats(lon, lat) @ W[taxon]."""

  def __init__(self, weights: dict, feats=lonlat_feats):
    self.taxa = np.array(sorted(weights), np.int64)
    self.params = {"species_embedding": np.array([weights[t] for t in self.taxa], np.float32)}
    self.feats = feats

  def columns(self, taxa):
    return np.searchsorted(self.taxa, np.asarray(taxa, np.int64))

  def embed(self, lon, lat):
    return self.feats(lon, lat).astype(np.float32)

  def logits64(self, lonlat, taxon):
    w = self.params["species_embedding"][self.columns([taxon])[0]].astype(np.float64)
    return self.feats(lonlat[:, 0], lonlat[:, 1]) @ w

  def predict(self, lon, lat, taxa=None):
    cols = self.columns(self.taxa if taxa is None else taxa)
    z = self.embed(lon, lat) @ self.params["species_embedding"][cols].T
    return (1 / (1 + np.exp(-z.astype(np.float64)))).astype(np.float32)


class ProbabilityOnly:
  """A predictor without a linear head (like a baseline): only predict() is available."""

  def __init__(self, inner):
    self.inner, self.taxa = inner, inner.taxa

  def columns(self, taxa):
    return self.inner.columns(taxa)

  def predict(self, lon, lat, taxa=None):
    return self.inner.predict(lon, lat, taxa)


# 18 locations on a lattice: every score below is a sum of exact binary fractions, with many ties.
LOCS = np.array([(lon, lat) for lon in (-90, 0, 45, 90, 180, -135) for lat in (-45, 0, 45)],
                np.float32)
WEIGHTS = {10: [1, 0, 0], 20: [0, 1, 0.5], 30: [1, 1, 0], 40: [0, 0, 1], 50: [1, 0, 0],
           60: [0, 1, 0], 70: [80, 0, 0], 80: [2, 0, 0]}


def write_snt(path, rng):
  taxa = [10, 99, 20, 30, 40, 60, 50]  # 99: not in the model; 40: no presence; 60: no locations
  idx, lab = [], []
  for t in taxa:
    if t == 60:
      i = np.zeros(0, np.int64)
    elif t == 50:
      i = np.array([3, 7])  # two presences: each split has presences only
    else:
      i = np.sort(rng.choice(len(LOCS), int(rng.integers(10, 18)), replace=False))
    y = (rng.random(len(i)) < 0.45).astype(np.uint8)
    y[:2] = (1, 0) if t not in (40, 50) and len(i) else y[:2]
    y = np.zeros_like(y) if t == 40 else np.ones_like(y) if t == 50 else y
    idx.append(i)
    lab.append(y)
  d = {"taxa": np.array(taxa), "obs_locs": LOCS, "obs_locs_idx": np.arange(len(LOCS)),
       "loc_indices_per_species": idx, "labels_per_species": lab}
  np.save(path, np.asarray(d, dtype=object), allow_pickle=True)
  return d


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_snt_map_equals_sklearn_with_reference_split(tmp_path, seed):
  d = write_snt(tmp_path / "snt_res_5.npy", np.random.default_rng(seed))
  model = LinearPredictor(WEIGHTS)
  ev = evaluators.make("snt", str(tmp_path), allow_pickle=True)
  got = ev.run(model)
  # The reference's rule: one generator (seed 7499) draws a permutation per species the model
  # knows, in file order; val = the first floor(n/2) entries, test = the rest.
  rng = np.random.default_rng(7499)
  aps = {"val": [], "test": []}
  no_pos, no_neg = {"val": 0, "test": 0}, {"val": 0, "test": 0}
  for t, i, y in zip(d["taxa"], d["loc_indices_per_species"], d["labels_per_species"]):
    if t not in model.taxa:
      continue
    perm = rng.permutation(len(y))
    for split, sel in (("val", perm[:len(y) // 2]), ("test", perm[len(y) // 2:])):
      yy = y[sel]
      if not yy.any():
        no_pos[split] += 1
      elif yy.all():
        no_neg[split] += 1
      else:
        aps[split].append(average_precision_score(yy, model.logits64(LOCS[i[sel]], t)))
  assert got["test_map"] == pytest.approx(np.mean(aps["test"]), abs=1e-6)
  assert got["val_map"] == pytest.approx(np.mean(aps["val"]), abs=1e-6)
  assert got["num_species_unknown_to_model"] == 1  # taxon 99
  for s in ("test", "val"):
    assert got[f"num_species_evaluated_{s}"] == len(aps[s])
    assert got[f"num_species_without_presence_{s}"] == no_pos[s] >= 2  # 40 and 60 at least
    assert got[f"num_species_without_absence_{s}"] == no_neg[s] >= 1  # 50 at least


def write_iucn(path):
  presence = {"10": [0, 4, 5, 9, 13], "20": [1, 2, 7, 8, 16, 17], "99": [1, 2],
              "40": [], "50": list(range(len(LOCS))), "70": [9, 10, 11, 14], "80": [3, 9, 15]}
  path.write_text(json.dumps({"locs": LOCS.tolist(), "taxa_presence": presence}))
  return presence


def test_iucn_map_equals_sklearn_and_counts(tmp_path, monkeypatch):
  presence = write_iucn(tmp_path / "iucn_res_5.json")
  model = LinearPredictor(WEIGHTS)
  from sinr_jax.evaluators import iucn
  calls, streaming = [], iucn.score_species

  def recording(*args, **kwargs):  # a linear-head model goes through the streaming scorer
    calls.append(kwargs)
    return streaming(*args, **kwargs)
  monkeypatch.setattr(iucn, "score_species", recording)
  got = evaluators.make("iucn", str(tmp_path)).run(model)
  assert len(calls) == 1 and sorted(calls[0]["taxa"]) == [10, 20, 70, 80]
  expected = []
  for t in (10, 20, 70, 80):
    y = np.isin(np.arange(len(LOCS)), presence[str(t)])
    expected.append(average_precision_score(y, model.logits64(LOCS, t)))
  assert got["map"] == pytest.approx(np.mean(expected), abs=1e-6)
  counts = ("num_species", "num_species_evaluated", "num_species_unknown_to_model",
            "num_species_without_presence", "num_species_without_absence")
  assert [got[k] for k in counts] == [7, 4, 1, 1, 1]


def test_iucn_ranks_by_logits_not_saturated_probabilities(tmp_path):
  # Taxon 70 scores 80·lon/180: logits 20 (lon 45) and 40 (lon 90) both give sigmoid 1.0 in
  # float32. Presences at lon 90 and 180, so the probabilities' tie would cost AP.
  write_iucn(tmp_path / "iucn_res_5.json")
  model = LinearPredictor(WEIGHTS)
  ev = evaluators.make("iucn", str(tmp_path))
  aps = dict(zip(ev.data.taxa.tolist(), ev.per_species_ap(model)))
  y = np.isin(np.arange(len(LOCS)), [9, 10, 11, 14])
  probs = model.predict(LOCS[:, 0], LOCS[:, 1], [70])[:, 0]
  assert aps[70] == pytest.approx(average_precision_score(y, model.logits64(LOCS, 70)), abs=1e-6)
  assert average_precision_score(y, probs) < aps[70] - 0.05
  # Without a linear head the evaluator falls back to predict(), still exactly sklearn's AP.
  aps_p = dict(zip(ev.data.taxa.tolist(), ev.per_species_ap(ProbabilityOnly(model))))
  for t in (10, 20, 70, 80):
    yt = np.isin(np.arange(len(LOCS)), json.loads((tmp_path / "iucn_res_5.json").read_text())
                 ["taxa_presence"][str(t)])
    p = model.predict(LOCS[:, 0], LOCS[:, 1], [t])[:, 0]
    assert aps_p[t] == pytest.approx(average_precision_score(yt, p), abs=1e-6)


def write_geo_prior(d, probs, inds, labels, model_to_taxa, lonlat):
  d.mkdir(parents=True, exist_ok=True)
  np.savez(d / "geo_prior_model_preds.npz", probs=np.array(probs, np.float32),
           inds=np.array(inds), labels=np.array(labels), model_to_taxa=np.array(model_to_taxa))
  rows = ["latitude,longitude"] + [f"{'' if np.isnan(la) else la},{'' if np.isnan(lo) else lo}"
                                   for lo, la in lonlat]
  (d / "geo_prior_model_meta.csv").write_text("\n".join(rows) + "\n")


def test_geo_prior_three_images_by_hand(tmp_path):
  sig = lambda z: 1 / (1 + math.exp(-z))
  # Range model: taxon 100 → σ(-2) anywhere, 200 → σ(1), 300 → σ(4·lon/180); 400 unknown.
  model = LinearPredictor({100: [0, 0, -2], 200: [0, 0, 1], 300: [4, 0, 0]})
  write_geo_prior(
      tmp_path / "eval" / "geo_prior",
      probs=[[0.2, 0.3, 0.5], [0.1, 0.42, 0.48], [0.1, 0.4, 0.5]],
      inds=[[2, 1, 0], [0, 2, 1], [1, 3, 2]], labels=[1, 1, 3],
      model_to_taxa=[100, 200, 300, 400],
      lonlat=[(90, 0), (np.nan, np.nan), (-90, 0)])
  # Image 0 at lon 90: class 0: .5σ(-2) = .060, class 1: .3σ(1) = .219, class 2: .2σ(2) = .176
  #   → vision says 0 (wrong), combined says 1 (right).
  assert 0.3 * sig(1) > max(0.5 * sig(-2), 0.2 * sig(2))
  # Image 1 has no location: stays vision-only (class 1, right), although at lon 90 the prior
  #   would flip it to class 2 (.42σ(2) = .370 > .48σ(1) = .351).
  assert 0.42 * sig(2) > 0.48 * sig(1)
  # Image 2 at lon -90: class 2: .5σ(-2) = .060, class 3 (unknown taxon, prior 1): .4,
  #   class 1: .1σ(1) = .073 → vision says 2 (wrong), combined says 3 (right).
  got = evaluators.make("geo_prior", str(tmp_path)).run(model)
  assert got["vision_top1"] == pytest.approx(1 / 3)
  assert got["combined_top1"] == pytest.approx(1.0)
  assert got["delta_top1"] == pytest.approx(2 / 3)
  assert got["vision_top3"] == got["combined_top3"] == 1.0 and got["delta_top3"] == 0.0
  assert "vision_top5" not in got  # k = 3
  assert got["num_images_without_location"] == 1 and got["num_classes_unknown_to_model"] == 1


def test_geo_prior_ties_go_to_the_lower_class_index(tmp_path):
  model = LinearPredictor({100: [0, 0, 1]})
  write_geo_prior(tmp_path, probs=[[0.5, 0.5]], inds=[[1, 3]], labels=[1],
                  model_to_taxa=[7, 8, 9, 10], lonlat=[(0, 0)])  # no class known: prior 1
  got = evaluators.make("geo_prior", str(tmp_path)).run(model)
  assert got["vision_top1"] == 0.0 and got["combined_top1"] == 1.0


def geo_feats(lon, lat):
  lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
  return np.stack([np.sin(lon / 30), np.cos(lat / 20), lon * lat / 8000, (lon / 180) ** 2,
                   np.ones_like(lon)], 1)


def test_geo_feature_r2_equals_sklearn(tmp_path):
  h, w, cs = 40, 80, 10
  rng = np.random.default_rng(0)
  lon, lat = np.meshgrid(np.linspace(-180, 180, w), np.linspace(90, -90, h))
  mask = np.zeros((h, w), np.uint8)
  mask[5:35, 10:70] = 1
  smooth = (np.sin(lon / 25) + lat / 40 + 0.1 * rng.standard_normal((h, w))).astype(np.float32)
  smooth[7, 12] = smooth[20, 40] = np.nan
  pop = np.exp(3 * rng.random((h, w)) + lat / 30).astype(np.float32)
  (tmp_path / "eval" / "geo_feature").mkdir(parents=True)
  (tmp_path / "masks").mkdir()
  tifffile.imwrite(tmp_path / "masks" / "USA_MASK.tif", mask)
  for name, r in (("SMOOTH", smooth), ("POP", pop)):
    tifffile.imwrite(tmp_path / "eval" / "geo_feature" / f"{name}.tif", r)
  (tmp_path / "eval" / "geo_feature" / "layers.json").write_text(
      json.dumps({"layers": ["SMOOTH", "POP"], "log1p": ["POP"]}))
  model = LinearPredictor({1: [0] * 5}, feats=geo_feats)
  got = evaluators.make("geo_feature", str(tmp_path), cell_size=cs).run(model)
  # Independent pipeline: the reference's checkerboard (row blocks alternate the starting column
  # block), row-major pixels, min-max scaling of target and (train-fitted) features.
  test_px = np.zeros((h, w), bool)
  for bi, i in enumerate(range(0, h, cs)):
    for j in range(0 if bi % 2 == 0 else cs, w, 2 * cs):
      test_px[i:i + cs, j:j + cs] = True
  r2s = []
  for name, r, log in (("SMOOTH", smooth, False), ("POP", pop, True)):
    valid = (mask == 1) & ~np.isnan(r)
    y = r[valid]
    y = np.log1p(y - y.min()) if log else y
    y = (y - y.min()) / (y.max() - y.min())
    ys, xs = np.nonzero(valid)
    x = geo_feats(lon[ys, xs], lat[ys, xs]).astype(np.float32)
    te = test_px[valid]
    lo, hi = x[~te].min(0), x[~te].max(0)
    span = np.where(hi > lo, hi - lo, 1)
    clf = RidgeCV(alphas=(0.1, 1.0, 10.0), cv=10).fit((x[~te] - lo) / span, y[~te])
    r2 = r2_score(y[te], clf.predict((x[te] - lo) / span))
    assert got[f"test_r2_{name}"] == pytest.approx(r2, abs=1e-5)
    assert got[f"alpha_{name}"] == clf.alpha_
    r2s.append(r2)
  assert got["mean_test_r2"] == pytest.approx(np.mean(r2s), abs=1e-5)
  assert got["num_layers"] == 2 and got["num_mask_pixels"] == mask.sum()
  with pytest.raises(evaluators.SinrInputError, match="no embed"):
    evaluators.make("geo_feature", str(tmp_path), cell_size=cs).run(ProbabilityOnly(model))


def test_checkerboard_split_pattern():
  valid = np.ones((4, 6), bool)
  valid[3, 5] = False
  expected = np.array([[2, 2, 1, 1, 2, 2],
                       [2, 2, 1, 1, 2, 2],
                       [1, 1, 2, 2, 1, 1],
                       [1, 1, 2, 2, 1, 0]])
  np.testing.assert_array_equal(checkerboard_split(valid, 2), expected)


def test_registry_names_and_unknown_task(tmp_path):
  assert evaluators.TASKS == ("snt", "iucn", "geo_prior", "geo_feature")
  with pytest.raises(evaluators.SinrInputError, match="unknown task"):
    evaluators.make("nope", str(tmp_path))
