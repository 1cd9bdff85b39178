import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecorep.errors import ConfigError
from sinr_jax import coords, env
from sinr_jax.errors import SinrInputError
from sinr_jax.features import make_encoder


def test_normalize_and_sincos_order():
  lonlat = np.array([[90.0, 45.0], [-180.0, -90.0]], np.float32)
  norm = coords.normalize(lonlat)
  np.testing.assert_allclose(norm, [[0.5, 0.5], [-1.0, -1.0]])
  feats = np.asarray(coords.sincos(jnp.asarray(norm)))
  # [sin πλ, sin πφ, cos πλ, cos πφ], the reference's order.
  np.testing.assert_allclose(feats[0], [1.0, 1.0, 0.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(feats[1], [0.0, 0.0, -1.0, -1.0], atol=1e-6)
  # Longitude wraps: -180° and +180° encode identically.
  a = coords.sincos(coords.normalize(jnp.array([[-180.0, 10.0]])))
  b = coords.sincos(coords.normalize(jnp.array([[180.0, 10.0]])))
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_sphere_sampling_is_uniform_by_area():
  pts = np.asarray(coords.sample_sphere(jax.random.key(0), 200_000))
  assert np.abs(pts).max() <= 1.0
  lat = pts[:, 1] * 90.0
  # Area fraction between latitudes a<b is (sin b − sin a)/2.
  for lo, hi in [(0, 30), (30, 60), (60, 90), (-90, -60)]:
    expected = (math.sin(math.radians(hi)) - math.sin(math.radians(lo))) / 2
    assert abs(np.mean((lat >= lo) & (lat < hi)) - expected) < 0.005
  assert abs(np.mean(pts[:, 0] > 0) - 0.5) < 0.005
  box = np.asarray(coords.sample_box(jax.random.key(1), 100_000))
  assert abs(np.mean(np.abs(box[:, 1]) > 2 / 3) - 1 / 3) < 0.01


def test_bilinear_matches_hand_computation():
  raster = np.arange(2 * 4 * 1, dtype=np.float32).reshape(2, 4, 1)  # H=2, W=4
  # Pixel (0,0) at (−180°, 90°), pixel (1,3) at (180°, −90°); the centre (0°, 0°) sits at
  # x = 1.5, y = 0.5: mean of raster[0,1], raster[0,2], raster[1,1], raster[1,2] = (1+2+5+6)/4.
  out = env.bilinear(jnp.asarray(raster), jnp.array([[0.0, 0.0], [-1.0, 1.0], [1.0, -1.0]]))
  np.testing.assert_allclose(np.asarray(out)[:, 0], [3.5, 0.0, 7.0], atol=1e-6)


def test_raster_validation(tmp_path):
  good = np.random.default_rng(0).standard_normal((10, 20, 3)).astype(np.float32)
  good[0, 0] = np.nan
  out = env.validate_raster(good)
  assert out[0, 0, 0] == 0.0 and out.dtype == np.float32
  path = tmp_path / "bad.npy"
  np.save(path, np.zeros((10, 15, 3), np.float32))
  with pytest.raises(SinrInputError, match=r"bad\.npy.*field 'shape'.*not a global"):
    env.load_raster(path)
  np.save(path, np.zeros((10, 20), np.float32))
  with pytest.raises(SinrInputError, match=r"shape \(H, W, C\)"):
    env.load_raster(path)
  np.save(path, good)
  with pytest.raises(SinrInputError, match="3 channels, the model expects 20"):
    env.load_raster(path, channels=20)
  with pytest.raises(SinrInputError, match="raster file not found"):
    env.load_raster(tmp_path / "missing.npy")
  (tmp_path / "trunc.npy").write_bytes(path.read_bytes()[:100])
  with pytest.raises(SinrInputError, match="cannot read raster"):
    env.load_raster(tmp_path / "trunc.npy")


def test_input_encoders():
  raster = np.random.default_rng(0).standard_normal((6, 12, 5)).astype(np.float32)
  norm = jnp.array([[0.1, -0.2]])
  assert make_encoder("coords").input_dim == 4
  enc = make_encoder("sin_cos_env", raster)  # the reference's name
  assert enc.kind == "env_coords" and enc.input_dim == 9
  np.testing.assert_allclose(enc(norm)[:, :4], coords.sincos(norm))
  np.testing.assert_allclose(enc(norm)[:, 4:], env.bilinear(jnp.asarray(raster), norm))
  with pytest.raises(ConfigError, match="needs an environmental raster"):
    make_encoder("env")
  with pytest.raises(ConfigError, match="unknown input encoding 'gps'"):
    make_encoder("gps")
