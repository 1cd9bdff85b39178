"""A user's own presence file end to end: projected coordinates, covariate columns, background
pseudo-absences, the single_species defaults, spatial block cross-validation, the map, and every
bad input of issue 15 failing with a clear message naming file, row and field."""
import json
import logging
import os

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

pyproj = pytest.importorskip("pyproj")

import sinr_jax  # noqa: E402
from ecorep.config import load_config  # noqa: E402
from sinr_jax import sizing  # noqa: E402
from sinr_jax.data import load_training_data  # noqa: E402
from sinr_jax.errors import SinrInputError  # noqa: E402

UTM = "EPSG:32610"
TINY = ["model.width=16", "model.depth=1", "train.batch_size=64", "train.num_epochs=6",
        "train.log_every=5", "train.checkpoint_every=1000"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """200 presences and 600 background points in central California, as UTM 10N x/y, with two
  covariate columns (t follows latitude, the species' driver; u is noise)."""
  d = tmp_path_factory.mktemp("sdm")
  rng = np.random.default_rng(0)
  lon, lat = rng.uniform(-122.5, -119.5, 3000), rng.uniform(36.5, 39.5, 3000)
  weight = np.exp(-8 * (lat - 38.6) ** 2)
  pres = rng.choice(3000, 200, replace=False, p=weight / weight.sum())
  bg = rng.choice(np.setdiff1d(np.arange(3000), pres), 600, replace=False)
  x, y = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(lon, lat)
  table = pd.DataFrame({"x": x, "y": y, "t": lat + rng.normal(0, 0.05, 3000),
                        "u": rng.normal(0, 1, 3000), "lon": lon, "lat": lat})
  table.iloc[pres][["x", "y", "t", "u"]].to_csv(d / "pres.csv", index=False)
  table.iloc[bg][["x", "y", "t", "u"]].to_csv(d / "bg.csv", index=False)
  return {"dir": d, "pres": str(d / "pres.csv"), "bg": str(d / "bg.csv"),
          "pres_lonlat": table.iloc[pres][["lon", "lat"]].to_numpy()}


def sdm_config(files, variant="single_species,env_coords", extra=()):
  return load_config(f"sinr_jax.configs.sinr:{variant}", [
      f"data.train_file={files['pres']}", f"data.background_file={files['bg']}",
      f"data.crs={UTM}", "data.lon_column=x", "data.lat_column=y", "data.covariates=t,u",
      "train.random_locations=background", *TINY, *extra])


@pytest.fixture(scope="module")
def mesh():
  """One device: these runs are tiny, and 8 simulated devices would only add overhead (the
  sharded step is tested in test_train.py)."""
  import jax
  from ecorep.mesh import data_mesh
  return data_mesh(jax.devices()[:1])


@pytest.fixture(scope="module")
def cv(files, mesh, tmp_path_factory):
  """Two-fold spatial block CV with one seed; its fold runs are the models the other tests use."""
  from sinr_jax.sdm_eval import cross_validate
  root = tmp_path_factory.mktemp("cv")
  cfg = sdm_config(files)
  data = load_training_data(cfg, str(root))
  result = cross_validate(cfg, str(root / "cv"), folds="kmeans:2", seeds=[3], data=data,
                          mesh=mesh)
  return result, data, str(root / "cv")


@pytest.fixture(scope="module")
def fold0(cv):
  """Fold 0's run directory (trained on fold 1's presences and background) and its model."""
  workdir = os.path.join(cv[2], "fold_0", "seed_3")
  return workdir, sinr_jax.load(workdir)


def test_data_size_defaults_and_their_log(fold0, cv, files):
  assert sizing.pos_weight(-1, 1) == 1.0 and sizing.pos_weight(-1, 47375) == 2048.0
  cfg = load_config("sinr_jax.configs.sinr:small")
  assert sizing.decay_steps(cfg.train, steps_per_epoch=10) == (1 << 17) // 128
  assert sizing.decay_steps(load_config("sinr_jax.configs.sinr:tiny").train, 10) == 10
  assert sizing.describe(sdm_config(files).train, 1, 3).startswith(
      "pos_weight 1 (auto: min(2048, 1 species)); lr 0.0005 decays x0.98 every 2048 steps")
  n_train = int(np.sum(cv[0].folds.presence != 0))
  assert fold0[1].step == 6 * (n_train // 64)
  np.testing.assert_allclose(cv[1].lonlat, files["pres_lonlat"], atol=1e-4)  # UTM → lon/lat


def test_trained_model_is_not_saturated_and_saves_its_covariate_scaling(fold0, cv, files):
  workdir, model = fold0
  result, data, _ = cv
  assert model.covariate_spec.names == ("t", "u")
  # Saved scaling = mean and sd of the pseudo-absence pool: fold 1's background covariates.
  train_bg = data.background_covariates[result.folds.background != 0].astype(np.float64)
  spec = json.load(open(os.path.join(workdir, "model.json")))["input"]["covariates"]
  np.testing.assert_allclose(spec["mean"], train_bg.mean(0), rtol=1e-6)
  np.testing.assert_allclose(spec["scale"], train_bg.std(0), rtol=1e-6)
  bg = pd.read_csv(files["bg"])
  lon, lat = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(bg.x, bg.y)
  probs = model.predict(lon, lat, covariates=bg[["t", "u"]].to_numpy())[:, 0]
  assert probs.max() < 0.99 and probs.std() > 0.01         # λ = 1: no saturation at 0.999998
  with pytest.raises(SinrInputError, match="reads the covariates"):
    model.predict(lon, lat)
  # The held-out CLI path, read with the run's own data settings (UTM columns, covariates).
  from sinr_jax.sdm_eval import evaluate_run
  metrics = evaluate_run(workdir, files["pres"], files["bg"], threshold="0.5")
  pres = pd.read_csv(files["pres"])
  p_lon, p_lat = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(
      pres.x, pres.y)
  p_probs = model.predict(p_lon, p_lat, covariates=pres[["t", "u"]].to_numpy())[:, 0]
  y = np.r_[np.ones(len(p_probs)), np.zeros(len(probs))]
  assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, np.r_[p_probs, probs]), abs=1e-6)
  assert metrics["threshold"] == 0.5 and metrics["num_presences"] == 200


def test_cross_validation_rows_match_sklearn_on_the_fold_models(cv):
  from sinr_jax.ensemble import load_ensemble
  from sinr_jax.sdm_eval import column_covariates, format_table
  result, data, root = cv
  assert [(r["fold"], r["seed"]) for r in result.rows] == [(0, 3), (1, 3)]
  assert sum(p for p, _ in result.folds.counts()) == 200
  assert sum(b for _, b in result.folds.counts()) == 600
  # Fold 1's row equals sklearn's AUC of the saved fold-1 model on fold 1's held-out points.
  ens = load_ensemble(os.path.join(root, "fold_1"))
  assert ens.seeds == [3]
  _, te_p, _, te_b = result.folds.split(1)
  pts = np.vstack([data.lonlat[te_p], data.background.lonlat[te_b]])
  cov = np.vstack([column_covariates(data, data.covariates[te_p]),
                   column_covariates(data, data.background_covariates[te_b])])
  scores = ens.predict(pts[:, 0], pts[:, 1], covariates=cov)[:, 0]
  y = np.r_[np.ones(te_p.sum()), np.zeros(te_b.sum())]
  assert result.rows[1]["roc_auc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-6)
  assert result.summary()["3"]["roc_auc"]["n"] == 2 and "| seed 3 |" in format_table(result)


def test_ensemble_averages_members_and_reports_their_spread():
  from sinr_jax.ensemble import Ensemble

  class Member:   # a fixed prediction per member: the ensemble's arithmetic alone is tested
    def __init__(self, probs):
      self.probs = np.asarray(probs, np.float64)[:, None]

    def predict(self, lon, lat, taxa=None, *, covariates=None):
      return self.probs

  ens = Ensemble([Member([0.2, 0.9]), Member([0.4, 0.5]), Member([0.3, 0.4])], [0, 1, 2])
  mean, sd = ens.predict_with_spread([0, 1], [0, 1])
  np.testing.assert_allclose(mean[:, 0], [0.3, 0.6])
  np.testing.assert_allclose(sd[:, 0], [np.std([0.2, 0.4, 0.3]), np.std([0.9, 0.5, 0.4])])


def test_map_is_cropped_to_the_region_with_observations(fold0, files, tmp_path):
  from PIL import Image
  from sinr_jax import maps, region
  model = fold0[1]
  r = region.from_bbox("-123,36,-119,40", land_only=True)
  lon0, lat0, lon1, lat1 = maps._map_extent(r, None)
  assert (lon0, lat0, lon1, lat1) == pytest.approx((-123.2, 35.8, -118.8, 40.2))
  with pytest.raises(SinrInputError, match="reads the covariates"):   # columns: no grid values
    maps.save_sdm_map(model, str(tmp_path / "no.png"), region=r)
  path = maps.save_sdm_map(model, str(tmp_path / "map.png"), region=r,
                           obs_lonlat=files["pres_lonlat"], threshold=0.5,
                           threshold_rule="max TSS on the training data", width_px=96,
                           covariates_at=lambda pts: np.stack([pts[:, 1], 0 * pts[:, 1]], 1))
  with Image.open(path) as im:
    assert im.format == "PNG" and im.size[0] > 300


@pytest.mark.parametrize("case", ["nan_covariate", "missing_column", "missing_column_presences",
                                  "bad_crs", "empty_region",
                                  "small_batch", "region_with_columns", "too_many_folds"])
def test_bad_input_fails_clearly_before_training(files, tmp_path, case):
  extra, path, row, field = [], files["bg"], None, None
  if case == "nan_covariate":
    bg = pd.read_csv(files["bg"])
    bg.loc[4, "u"] = np.nan
    path = str(tmp_path / "bg_nan.csv")
    bg.to_csv(path, index=False)
    extra, row, field, match = [f"data.background_file={path}"], 6, "u", "covariate is missing"
  elif case == "missing_column":
    bg = pd.read_csv(files["bg"]).drop(columns="u")
    path = str(tmp_path / "bg_no_u.csv")
    bg.to_csv(path, index=False)
    extra, field, match = [f"data.background_file={path}"], "u", "missing column 'u'"
  elif case == "missing_column_presences":
    pres = pd.read_csv(files["pres"]).rename(columns={"t": "T"})
    path = str(tmp_path / "pres_no_t.csv")
    pres.to_csv(path, index=False)
    extra, field, match = [f"data.train_file={path}"], "t", "missing column 't'.*did you mean 'T'"
  elif case == "bad_crs":
    extra, path, field, match = ["data.crs=EPSG:999999"], files["pres"], "data.crs", "CRS"
  elif case == "empty_region":
    poly = tmp_path / "elsewhere.geojson"   # Nevada: no presence there
    poly.write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[-117, 38], [-115, 38], [-115, 40], [-117, 40], [-117, 38]]]}))
    extra, path, field = [f"data.region.polygon={poly}"], str(poly), "data.region"
    match = "none of the 200 presences"
  elif case == "small_batch":      # the reference batch on a 200-row file
    extra, path, field = ["train.batch_size=2048"], files["pres"], "train.batch_size"
    match = "fewer than one batch of 2048.*small"
  elif case == "region_with_columns":
    extra, path, field = ["data.region.bbox=-123,36,-119,40", "train.random_locations=region"], (
        None), "train.random_locations"
    match = "no values of the covariate columns"
  else:
    from sinr_jax.sdm_eval import cross_validate
    with pytest.raises(SinrInputError, match="fewer than the 300 folds"):
      cross_validate(sdm_config(files), str(tmp_path / "cv"), folds="kmeans:300")
    assert not (tmp_path / "cv" / "fold_0").exists()
    return
  with pytest.raises(SinrInputError, match=match) as info:
    load_training_data(sdm_config(files, extra=extra), str(tmp_path))
  e = info.value
  assert e.field == field and e.row == row and (path is None or e.file == path)


def test_a_200_row_file_with_the_default_batches(files, tmp_path):
  """single_species' own batch (128) fits the 200-row file; the project default (2048, no size
  token) is refused with the way out, before anything is written."""
  base = [f"data.train_file={files['pres']}", f"data.background_file={files['bg']}",
          f"data.crs={UTM}", "data.lon_column=x", "data.lat_column=y", "data.covariates=t,u",
          "train.random_locations=background"]
  cfg = load_config("sinr_jax.configs.sinr:single_species,env_coords", base)
  assert cfg.train.batch_size == 128
  assert len(load_training_data(cfg, str(tmp_path / "ok")).lonlat) == 200
  cfg = load_config("sinr_jax.configs.sinr:env_coords", [*base, "data.taxon_column="])
  assert cfg.train.batch_size == 2048 and cfg.data.taxon_column == ""
  with pytest.raises(SinrInputError, match="200 training observations are fewer than one batch "
                     "of 2048.*`small` variant") as info:
    load_training_data(cfg, str(tmp_path / "refused"))
  assert info.value.field == "train.batch_size" and info.value.file == files["pres"]
  assert not (tmp_path / "refused").exists()


def test_capping_says_how_much_it_kept(tmp_path, caplog):
  path = tmp_path / "obs.csv"
  rows = [f"{10 + i * 0.01},{20 + i * 0.01},{1 if i < 30 else 2}" for i in range(40)]
  path.write_text("latitude,longitude,taxon_id\n" + "\n".join(rows) + "\n")
  cfg = load_config("sinr_jax.configs.sinr:small", [f"data.train_file={path}", "data.cap=10",
                                                    "train.batch_size=8"])
  with caplog.at_level(logging.WARNING, logger="sinr_jax"):
    data = load_training_data(cfg, str(tmp_path))
  assert len(data.labels) == 20 and data.dropped["capped"] == 20
  assert "kept 20 of 40 (50.0%), 1 of 2 classes had more" in caplog.text


def test_sdm_eval_cli_help_and_bad_flags(capsys):
  from sinr_jax.sdm_eval import main
  assert main(["--help"]) == 0
  out = capsys.readouterr().out
  assert "--folds" in out and "--seeds" in out and "single_species" in out
  assert main(["--threshold=youden"]) == 2
  assert "unknown threshold rule" in capsys.readouterr().err
  assert main(["--run=/nonexistent", "--presences=a.csv"]) == 2
  assert "--run needs --background" in capsys.readouterr().err
