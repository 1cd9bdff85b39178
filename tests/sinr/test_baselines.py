"""Baselines: binned counts against a pandas group-by, resolution choice on validation data, and
logistic regression trained through the ordinary training loop (identity encoder)."""
import os

import numpy as np
import pandas as pd
import pytest

import sinr_jax
from sinr_jax import coords, grid
from sinr_jax.baselines.grid import EPS, GridBaseline, select_resolution
from sinr_jax.baselines.lr import lr_config, train_lr
from sinr_jax.errors import SinrInputError
from sinr_jax.observations import ClassIndex
from sinr_jax.scoring import score_species


@pytest.fixture(scope="module")
def observations():
  rng = np.random.default_rng(0)
  n = 3000
  lonlat = np.stack([rng.normal(20, 30, n).clip(-179, 179), rng.normal(10, 20, n).clip(-85, 85)], 1)
  labels = rng.integers(0, 5, n)
  return lonlat, labels, ClassIndex(np.array([3, 7, 11, 40, 41]))


@pytest.mark.parametrize("res", [1, 3])
def test_grid_counts_match_groupby(observations, res):
  lonlat, labels, index = observations
  model = GridBaseline.fit(lonlat, labels, index, res)
  df = pd.DataFrame({"cell": grid.lonlat_to_cells(lonlat, res), "label": labels})
  counts = df.groupby(["cell", "label"]).size().unstack(fill_value=0).reindex(
      columns=range(5), fill_value=0)
  expected = (counts.to_numpy() + EPS) / (counts.to_numpy().max(0) + EPS)
  got = model.predict(*grid.cells_lonlat(counts.index.to_numpy()).T)  # at each cell's centre
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  sub = model.predict(lonlat[:4, 0], lonlat[:4, 1], taxa=[41, 3])
  np.testing.assert_allclose(sub, model.predict(lonlat[:4, 0], lonlat[:4, 1])[:, [4, 0]])
  empty = model.predict([-150.0], [-60.0])  # an ocean cell nobody observed
  np.testing.assert_allclose(empty[0], EPS / (counts.to_numpy().max(0) + EPS), rtol=1e-6)


def test_grid_bad_input_and_no_scorer(observations):
  lonlat, labels, index = observations
  with pytest.raises(SinrInputError):
    GridBaseline.fit(lonlat[:, :1], labels, index, 2)
  with pytest.raises(SinrInputError, match="class indices"):
    GridBaseline.fit(lonlat, labels + 10, index, 2)
  model = GridBaseline.fit(lonlat, labels, index, 2)
  with pytest.raises(SinrInputError):
    model.predict([0.0], [0.0], taxa=[5])
  with pytest.raises(SinrInputError, match="linear species head"):
    score_species(model, lonlat[:10])


def test_select_resolution_takes_the_best_validation_score(observations):
  lonlat, labels, index = observations
  rng = np.random.default_rng(1)
  truth = np.zeros((500, 5), bool)  # validation points: positive near the species' observations
  val = lonlat[rng.choice(len(lonlat), 500)] + rng.normal(0, 2, (500, 2))
  for j in range(5):
    truth[:, j] = np.linalg.norm(val[:, None] - lonlat[labels == j][None, :100], axis=2).min(1) < 3
  from sklearn.metrics import average_precision_score

  def val_map(model):
    p = model.predict(val[:, 0], val[:, 1])
    return np.mean([average_precision_score(truth[:, j], p[:, j]) for j in range(5)])

  best, scores = select_resolution(lonlat, labels, index, val_map, resolutions=(0, 2, 4))
  assert set(scores) == {0, 2, 4} and best.res == max(scores, key=scores.get)
  assert scores[best.res] == pytest.approx(val_map(best))


def test_logistic_regression_is_linear_in_the_inputs(tiny_config, tmp_path):
  cfg = tiny_config("", ["train.max_steps=20"])
  assert lr_config(cfg, "env_coords").model.encoder == "linear" and cfg.model.encoder == "resfc"
  model = train_lr(cfg, "env_coords", str(tmp_path / "lr"))
  w = np.asarray(model.params["species_embedding"], np.float64)
  assert w.shape == (len(model.taxa), model.encoder.input_dim)
  assert set(model.params) == {"species_embedding"}  # no hidden layers
  rng = np.random.default_rng(2)
  lon, lat = rng.uniform(-170, 170, 50), rng.uniform(-60, 70, 50)
  x = np.asarray(model.encoder(coords.normalize(np.stack([lon, lat], 1).astype(np.float32))),
                 np.float64)
  np.testing.assert_allclose(model.predict(lon, lat), 1 / (1 + np.exp(-x @ w.T)), rtol=1e-4,
                             atol=1e-6)
  assert os.path.isdir(os.path.join(tmp_path, "lr", "checkpoints"))
  assert isinstance(sinr_jax.load(str(tmp_path / "lr")), sinr_jax.RangePredictor)
