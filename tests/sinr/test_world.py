"""The simulated world: packaged assets, truth, observations, and the on-disk format."""
from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from sinr_jax import grid
from sinr_jax.errors import SinrInputError
from sinr_jax.world import (World, WorldConfig, env_raster, is_land, land_mask, load_world,
                            make_world)
from sinr_jax.world import assets, observers

SMALL = WorldConfig(num_species=60, num_observations=3_000, h3_res=2, seed=3)


@pytest.fixture(scope="module")
def world() -> World:
  return make_world(WorldConfig())  # the demo defaults: 500 species at res 3


@pytest.fixture(scope="module")
def small() -> World:
  return make_world(SMALL)


def _at(grid2d, lon, lat):
  r, c = assets.raster_index(lon, lat)
  return grid2d[r, c]


def _species_cells(w: World) -> tuple[np.ndarray, np.ndarray]:
  """Per observation: species row index and index of its H3 cell in w.cells (-1 if not a land cell)."""
  s = np.searchsorted(w.taxa, w.observations["taxon_id"].to_numpy())
  cells = grid.lonlat_to_cells(w.observations[["longitude", "latitude"]].to_numpy(), w.config.h3_res)
  m = np.minimum(np.searchsorted(w.cells, cells), len(w.cells) - 1)
  return s, np.where(w.cells[m] == cells, m, -1)


def _assert_worlds_equal(a: World, b: World):
  assert a.config == b.config and a.env_channels == b.env_channels
  np.testing.assert_array_equal(a.taxa, b.taxa)
  np.testing.assert_array_equal(a.cells, b.cells)
  np.testing.assert_array_equal(a.cell_lonlat, b.cell_lonlat)
  np.testing.assert_array_equal(a.env, b.env)
  assert (a.presence != b.presence).nnz == 0 and a.presence.shape == b.presence.shape
  assert a.observations.equals(b.observations)
  assert a.summary == b.summary


# ---- packaged assets ----

def test_elevation_at_known_places():
  elev = assets.grids()["elevation_m"]
  assert _at(elev, 86.925, 27.988) > 4000  # Everest region
  assert _at(elev, -68.0, -22.0) > 3000  # Altiplano
  assert _at(elev, -150.0, 0.0) < -3000  # mid-Pacific
  assert _at(elev, 142.2, 11.35) < -5000  # Mariana trench


def test_greenness_sahara_below_amazon():
  env, names = env_raster()
  g = env[..., names.index("greenness")]
  assert _at(g, 10.0, 23.0) < _at(g, -62.0, -4.0)


def test_land_mask_known_points():
  lon = np.array([2.35, 10.0, -60.0, 151.2, 37.6, -30.0, 80.0, -150.0, -140.0])
  lat = np.array([48.85, 23.0, -3.1, -33.9, 55.75, 30.0, -20.0, 0.0, 40.0])
  np.testing.assert_array_equal(is_land(lon, lat), [True] * 5 + [False] * 4)
  assert land_mask().shape == (540, 1080) and 0.25 < land_mask().mean() < 0.4


def test_env_nan_exactly_over_ocean_and_zscored_over_land():
  env, names = env_raster()
  assert env.shape == (540, 1080, len(names)) and env.dtype == np.float32
  land = land_mask()
  np.testing.assert_array_equal(np.isnan(env).any(-1), ~land)
  np.testing.assert_array_equal(np.isnan(env).all(-1), ~land)
  v = env[land].astype(np.float64)
  np.testing.assert_allclose(v.mean(0), 0.0, atol=1e-3)
  np.testing.assert_allclose(v.std(0), 1.0, atol=1e-3)
  # Derived temperature proxy is colder on the Tibetan plateau than in the lowland tropics.
  t = env[..., names.index("temperature_proxy")]
  assert _at(t, 88.0, 32.0) < _at(t, -60.0, -3.1)


# ---- the simulation ----

def test_deterministic_by_seed(small):
  _assert_worlds_equal(small, make_world(SMALL))
  other = make_world(WorldConfig(**{**SMALL.to_dict(), "seed": 4}))
  assert not np.array_equal(other.taxa, small.taxa)
  assert not other.observations[["latitude", "longitude"]].equals(
      small.observations[["latitude", "longitude"]])


def test_taxa_and_columns_look_like_inat(world):
  t = world.taxa
  assert t.dtype == np.int64 and np.all(np.diff(t) > 0) and t[0] >= 1 and t[-1] < 2_000_000
  assert t[-1] > 10 * len(t)  # random ids, not 0..S-1
  obs = world.observations
  assert list(obs.columns) == ["id", "latitude", "longitude", "taxon_id", "user_id", "observed_on"]
  assert obs["id"].is_unique and set(obs["taxon_id"]) == set(t.tolist())
  assert obs["observed_on"].map(lambda d: bool(re.fullmatch(r"\d{4}-\d\d-\d\d", d))).all()
  assert obs["observed_on"].is_monotonic_increasing


def test_default_size(world):
  cfg = world.config
  assert world.presence.shape == (500, len(world.cells)) and 10_000 < len(world.cells) < 14_000
  assert abs(len(world.observations) - cfg.num_observations) < 0.01 * cfg.num_observations


def test_range_sizes_heavy_tailed_and_nonempty(world):
  sizes = np.diff(world.presence.indptr)
  assert sizes.min() >= 1
  assert sizes.max() > 30 * np.median(sizes)
  assert np.sort(sizes)[-5:].min() > 500  # a few continental ranges
  # log sizes are spread over orders of magnitude, not concentrated
  assert np.std(np.log(sizes)) > 1.0


def test_zipf_imbalance(world):
  cfg = world.config
  counts = np.sort(world.observations["taxon_id"].value_counts().to_numpy())[::-1]
  assert counts.max() <= cfg.max_obs_per_species and counts.min() >= cfg.min_obs_per_species
  rank = np.arange(1, len(counts) + 1)
  free = (counts > cfg.min_obs_per_species) & (counts < cfg.max_obs_per_species)
  slope = np.polyfit(np.log(rank[free]), np.log(counts[free]), 1)[0]
  assert abs(slope + cfg.zipf_exponent) < 0.1
  steep = observers.obs_counts(np.random.default_rng(0), 1000, WorldConfig(
      zipf_exponent=1.5, num_observations=50_000, min_obs_per_species=1, max_obs_per_species=10**6))
  c = np.sort(steep)[::-1].astype(float)
  r = np.arange(1, 1001)
  keep = c > 20  # avoid rounding at the tail
  assert abs(np.polyfit(np.log(r[keep]), np.log(c[keep]), 1)[0] + 1.5) < 0.1


def test_observations_fall_in_true_presence_cells(world):
  s, m = _species_cells(world)
  inside = (m >= 0) & np.asarray(world.presence[s, np.maximum(m, 0)]).ravel()
  assert inside.mean() >= 0.99


def test_observer_bias_toward_cities(world):
  cfg = world.config
  city_lonlat, city_pop = assets.cities()
  inten = observers.observer_intensity(world.cell_lonlat, city_lonlat, city_pop,
                                       cfg.observer_bandwidth_km, cfg.observer_floor,
                                       cfg.observer_bias_exponent)
  s, m = _species_cells(world)
  ok = m >= 0
  p = world.presence
  range_mean = np.array([inten[p.indices[p.indptr[i]:p.indptr[i + 1]]].mean() for i in range(p.shape[0])])
  assert inten[m[ok]].mean() > 1.3 * range_mean[s[ok]].mean()


def test_users_heavy_tailed(world):
  per_user = world.observations["user_id"].value_counts().to_numpy()
  assert 50 < len(per_user) <= world.config.num_users
  assert per_user.max() > 10 * np.median(per_user)


def test_fifty_thousand_species_coarse():
  t0 = time.time()
  w = make_world(WorldConfig(num_species=50_000, h3_res=2, num_observations=0, min_obs_per_species=1,
                             num_users=50))
  assert time.time() - t0 < 40
  assert len(w.taxa) == 50_000 and np.diff(w.presence.indptr).min() >= 1
  assert len(w.observations) == 50_000


def test_config_validation():
  with pytest.raises(SinrInputError, match="num_species"):
    WorldConfig(num_species=0)
  with pytest.raises(SinrInputError, match="suitability_threshold"):
    WorldConfig(suitability_threshold=1.5)
  with pytest.raises(SinrInputError, match="config.bogus"):
    WorldConfig.from_dict({"bogus": 1})


# ---- files ----

def test_write_load_round_trip(small, tmp_path):
  d = tmp_path / "world"
  small.write(d)
  small.write(d)  # replacing an existing world is fine
  assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]  # no temp dirs left over
  assert sorted(p.name for p in d.iterdir()) == sorted(
      ["train.csv", "env.npy", "taxa.json", "truth_h3_res2.npz", "world.json"])
  _assert_worlds_equal(small, load_world(d))
  meta = json.loads((d / "world.json").read_text())
  assert meta["summary"]["num_observations"] == len(small.observations)
  taxa = json.loads((d / "taxa.json").read_text())
  assert [t["taxon_id"] for t in taxa] == small.taxa.tolist() and all(t["name"] for t in taxa)


@pytest.mark.parametrize("name, damage", [
    ("train.csv", "truncate"), ("env.npy", "truncate"), ("truth_h3_res2.npz", "truncate"),
    ("world.json", "truncate"), ("taxa.json", "delete"), ("env.npy", "delete")])
def test_load_rejects_damaged_files(small, tmp_path, name, damage):
  small.write(tmp_path)
  path = tmp_path / name
  if damage == "delete":
    path.unlink()
  else:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
  with pytest.raises(SinrInputError, match=re.escape(name)):
    load_world(tmp_path)


def test_world_sizes_are_configurable_through_the_sinr_config(repo_root, tmp_path):
  """configs/sinr.py's data.world holds every WorldConfig field with its default, so overrides
  such as data.world.num_observations are known keys (checked, with a suggestion when misspelt)
  and reach the generated world."""
  import dataclasses
  import os

  from ecorep.config import load_config
  from ecorep.errors import ConfigError
  from sinr_jax.data import ensure_world
  spec = os.path.join(repo_root, "configs/sinr.py")
  for variant in ("", ":demo", ":tiny", ":full"):
    world = load_config(spec + variant).data.world.to_dict()
    assert set(world) == {f.name for f in dataclasses.fields(WorldConfig)}
  assert load_config(spec).data.world.to_dict() == WorldConfig().to_dict()
  assert load_config(spec + ":tiny").data.world.num_observations == 8000
  with pytest.raises(ConfigError, match="did you mean 'data.world.num_observations'"):
    load_config(spec + ":demo", ["data.world.num_observation=10"])
  cfg = load_config(spec + ":demo", [
      "data.world.num_species=6", "data.world.num_observations=700", "data.world.h3_res=1",
      "data.world.num_users=4", "data.world.max_obs_per_species=400"])
  world = load_world(ensure_world(str(tmp_path / "w"), cfg.data.world.to_dict()))
  assert world.config.num_observations == 700 and world.config.num_users == 4
  assert abs(len(world.observations) - 700) <= 7 and len(world.taxa) == 6
  assert world.observations.user_id.nunique() <= 4


# ---- geo prior extensions: seasons, photographer habits, evaluation images, the classifier ----

SEASONAL = WorldConfig(num_species=60, num_observations=6_000, h3_res=2, seed=3,
                       migratory_fraction=0.3, user_groups=4, user_group_concentration=0.2)


@pytest.fixture(scope="module")
def seasonal() -> World:
  return make_world(SEASONAL)


def test_extensions_off_leave_the_world_bit_identical(small):
  """SHA-256 of the SMALL world's observations and truth as generated before the geo-prior
  extensions existed: with them off (the defaults) the world must not change."""
  import hashlib
  obs = hashlib.sha256(small.observations.to_csv(index=False).encode()).hexdigest()
  truth = hashlib.sha256(small.presence.indptr.tobytes() + small.presence.indices.tobytes())
  assert obs == "405eedd82c9a3756a48ee9448fb7c011ff12f8975f90cef266015b19baa24cb1"
  assert truth.hexdigest() == "b8def96de56802b3c41bc370d08859d5ce962dfe9574bb107ddfbe233adc61be"
  assert small.seasons is None


def test_migrants_have_an_equatorward_winter_and_seasonal_dates(seasonal, tmp_path):
  from sinr_jax.geo_prior.dates import parse_dates
  s = seasonal.seasons
  assert s.migratory.sum() == 18 and seasonal.summary["num_migratory"] == 18
  union = (s.summer + s.winter).astype(bool)
  assert (union != seasonal.presence).nnz == 0
  resident = ~s.migratory
  assert (s.summer[resident] != s.winter[resident]).nnz == 0
  lat = seasonal.cell_lonlat[:, 1]
  for sp in np.flatnonzero(s.migratory):  # winters ~35° toward (or across) the equator
    summer, winter = lat[s.summer[sp].indices].mean(), lat[s.winter[sp].indices].mean()
    assert abs(winter - summer) > 15
    if abs(summer) > 10:
      assert np.sign(summer) * (winter - summer) < 0
  # A migrant observed only in its breeding range is seen in the half year around its peak.
  sp_idx, cells = _species_cells(seasonal)
  day, _ = parse_dates(seasonal.observations["observed_on"].to_numpy(object))
  mig = s.migratory[sp_idx] & (cells >= 0)
  only_summer = mig & np.asarray(s.summer[sp_idx, np.maximum(cells, 0)]).ravel() & ~np.asarray(
      s.winter[sp_idx, np.maximum(cells, 0)]).ravel()
  assert only_summer.sum() > 100
  assert s.in_breeding_season(sp_idx[only_summer], day[only_summer]).mean() > 0.9
  assert s.present(sp_idx[mig], cells[mig], day[mig]).mean() > 0.9
  seasonal.write(tmp_path / "w")
  back = load_world(tmp_path / "w")
  assert (back.seasons.winter != s.winter).nnz == 0 and np.array_equal(back.seasons.peak, s.peak)
  (tmp_path / "w" / "seasons.npz").unlink()
  with pytest.raises(SinrInputError, match="seasons.npz"):
    load_world(tmp_path / "w")


def test_photographers_specialise_in_taxon_groups(seasonal):
  from sinr_jax.world.simulate import streams
  plain = make_world(WorldConfig(**{**SEASONAL.to_dict(), "user_groups": 0}))
  group = streams(SEASONAL)["prefs"].integers(0, 4, 60)  # replays assign_users' first draw

  def mean_top_group_share(w):
    obs = w.observations
    g = group[np.searchsorted(w.taxa, obs["taxon_id"].to_numpy())]
    shares = [np.bincount(g[obs["user_id"].to_numpy() == u], minlength=4).max() / n
              for u, n in obs["user_id"].value_counts().items() if n >= 30]
    return np.mean(shares)
  assert mean_top_group_share(seasonal) > mean_top_group_share(plain) + 0.1


def test_images_and_lookalike_classifier(seasonal):
  from sinr_jax.world.classifier import classify, genera, lookalike_partners
  from sinr_jax.world.images import draw_images
  images = draw_images(seasonal, np.random.default_rng(0), per_species=10, missing_location=0.1,
                       missing_date=0.1)
  assert len(images) == 600 and np.bincount(images["label"]).tolist() == [10] * 60
  assert 0.05 < images["longitude"].isna().mean() < 0.15
  assert 0.05 < (images["observed_on"] == "").mean() < 0.15
  partners = lookalike_partners(seasonal.seasons)
  assert (partners != partners.T).nnz == 0
  rows, cols = partners.nonzero()
  s = seasonal.seasons
  assert s.migratory[rows].any() and (s.migratory[rows] != s.migratory[cols]).all()
  labels = images["label"].to_numpy()
  probs, inds, a = classify(np.random.default_rng(1), labels, genera(seasonal, 5),
                            target_top1=0.6, genus_affinity=3.0, top_k=5, partners=partners,
                            partner_affinity=3.0)
  assert abs(np.mean(inds[:, -1] == labels) - 0.6) < 0.01
  assert np.all(np.diff(probs, axis=1) >= 0) and probs.sum(1).max() <= 1 + 1e-6
