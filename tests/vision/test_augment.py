"""Augmentations against PIL / numpy / colorsys / scipy references, and their parameter ranges."""
from __future__ import annotations

import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from ecorep.mesh import batch_sharding, data_mesh
from vision_jax import augment as A
from vision_jax.errors import VisionInputError


def _rgb(seed: int, shape=(12, 10, 3)) -> np.ndarray:
  return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


# ------------------------------------------------------------------------------------- host

@pytest.mark.parametrize("mode,channels", [("L", None), ("L", 1), ("RGBA", 4), ("LA", 2)])
def test_to_rgb_matches_pil_convert(mode, channels):
  rng = np.random.default_rng(0)
  shape = (9, 7) if channels is None else (9, 7, channels)
  image = rng.integers(0, 256, shape, dtype=np.uint8)
  pil = Image.fromarray(image if channels != 1 else image[:, :, 0])
  assert pil.mode == mode
  np.testing.assert_array_equal(A.to_rgb_uint8(image), np.asarray(pil.convert("RGB")))


def test_to_rgb_16_bit_bool_and_float():
  image16 = np.array([[0, 128, 129, 257, 65535, 32896]], np.uint16)
  np.testing.assert_array_equal(A.to_rgb_uint8(image16)[0, :, 0], [0, 0, 1, 1, 255, 128])
  np.testing.assert_array_equal(A.to_rgb_uint8(np.array([[True, False]]))[0, :, 1], [255, 0])
  np.testing.assert_array_equal(A.to_rgb_uint8(np.array([[0.0, 0.5, 1.0]]))[0, :, 2],
                                [0, 128, 255])


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.int64), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8), np.full((2, 2), 1.5),
                                 np.zeros((2, 2, 2, 3), np.uint8)])
def test_to_rgb_rejects_bad_images(bad):
  with pytest.raises(VisionInputError):
    A.to_rgb_uint8(bad)


def test_crop_box_ranges_over_many_draws():
  rng = np.random.default_rng(1)
  height, width = 120, 90
  boxes = np.array([A.sample_crop_box(rng, height, width) for _ in range(4000)])
  top, left, h, w = boxes.T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + h <= height).all() and (left + w <= width).all()
  area = h * w / (height * width)
  # Rounding w and h to integers moves the area and ratio by at most ~1 pixel per side.
  assert area.min() >= 0.08 * (1 - 2 / np.sqrt(0.08 * height * width)) and area.max() <= 1
  ratio = w / h
  assert ratio.min() >= 0.75 * (1 - 2 / 9) and ratio.max() <= 4 / 3 * (1 + 2 / 9)
  square = np.array([A.sample_crop_box(rng, 100, 100) for _ in range(4000)])
  area = square[:, 2] * square[:, 3] / 1e4
  log_ratio = np.log(square[:, 3] / square[:, 2])
  assert abs(np.mean(log_ratio > 0) - np.mean(log_ratio < 0)) < 0.06  # log-uniform: symmetric
  # Crops up to half the area always fit, so there the area is uniform: half below 0.29.
  small = area[area <= 0.5]
  assert abs(np.mean(small < 0.29) - 0.5) < 5 * 0.5 / np.sqrt(len(small))


def test_crop_box_fallback_is_centred_with_clipped_ratio():
  rng = np.random.default_rng(0)
  assert A.sample_crop_box(rng, 10, 100, scale=(2.0, 3.0)) == (0, 43, 10, 13)
  assert A.sample_crop_box(rng, 100, 10, scale=(2.0, 3.0)) == (43, 0, 13, 10)
  assert A.sample_crop_box(rng, 50, 60, scale=(2.0, 3.0)) == (0, 0, 50, 60)


@pytest.mark.parametrize("shape,dtype", [((40, 30, 3), np.uint8), ((7, 5), np.uint8),
                                         ((33, 41), np.uint16), ((20, 24, 4), np.uint8)])
def test_host_random_resized_crop_matches_pil(shape, dtype):
  image = np.random.default_rng(2).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
  out = A.host_random_resized_crop(np.random.default_rng(5), image, 16)
  assert out.shape == (16, 16, 3) and out.dtype == np.uint8
  top, left, h, w = A.sample_crop_box(np.random.default_rng(5), shape[0], shape[1])
  rgb = A.to_rgb_uint8(image)
  reference = Image.fromarray(rgb[top:top + h, left:left + w]).resize((16, 16), Image.BICUBIC)
  np.testing.assert_array_equal(out, np.asarray(reference))


# ----------------------------------------------------------------------------------- device

def test_flip_brightness_contrast_solarize_grayscale_against_numpy_and_pil():
  x = _rgb(0)
  x64 = x.astype(np.float64)
  mean = x64.mean(axis=(0, 1), keepdims=True)
  np.testing.assert_allclose(A.adjust_contrast(jnp.asarray(x), 1.7), (x64 - mean) * 1.7 + mean,
                             atol=1e-6)
  np.testing.assert_allclose(A.adjust_brightness(jnp.asarray(x), 0.6), x64 * 0.6, atol=1e-7)
  np.testing.assert_allclose(A.solarize(jnp.asarray(x)), np.where(x64 < 0.5, x64, 1 - x64),
                             atol=1e-7)
  u8 = np.round(x * 255).astype(np.uint8)
  gray = np.asarray(A.to_grayscale(jnp.asarray(u8, jnp.float32)))
  pil_gray = np.asarray(Image.fromarray(u8).convert("L"), np.float64)
  assert np.abs(gray[..., 0] - pil_gray).max() <= 0.6  # PIL rounds to integers
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
  params = {"flip": jnp.bool_(True), "color": jnp.bool_(False), "gray": jnp.bool_(False),
            "blur": jnp.bool_(False), "solarize": jnp.bool_(False), "sigma": 1.0}
  policy = A.Policy(color_prob=0.0, grayscale_prob=0.0, blur_prob=(0.0,))
  np.testing.assert_array_equal(A.apply_params(jnp.asarray(x), params, policy), x[:, ::-1])


def _colorsys_adjust(x: np.ndarray, saturation: float, hue: float) -> np.ndarray:
  out = np.empty_like(x, dtype=np.float64)
  for idx in np.ndindex(x.shape[:2]):
    h, s, v = colorsys.rgb_to_hsv(*map(float, x[idx]))
    out[idx] = colorsys.hsv_to_rgb((h + hue) % 1.0, min(max(s * saturation, 0.0), 1.0), v)
  return out


@pytest.mark.parametrize("saturation,hue", [(1.7, 0.0), (0.3, 0.0), (1.0, 0.17), (1.0, -0.2),
                                            (2.5, 0.45)])
def test_hsv_adjustments_match_colorsys(saturation, hue):
  x = _rgb(1)
  x[0, 0] = [0.5, 0.5, 0.5]   # gray: undefined hue
  x[0, 1] = [0.0, 0.0, 0.0]
  x[0, 2] = [1.0, 0.2, 1.0]   # ties in the max
  got = A.adjust_hsv(jnp.asarray(x), saturation, hue)
  np.testing.assert_allclose(got, _colorsys_adjust(x, saturation, hue), atol=2e-6)


@pytest.mark.parametrize("sigma,size", [(0.1, 32), (0.9, 32), (2.0, 28), (1.3, 224)])
def test_gaussian_blur_matches_scipy_zero_padding(sigma, size):
  x = _rgb(2, (size, size // 2 + 3, 3))
  radius = A.blur_radius(size)
  assert 2 * radius + 1 == (size // 10) // 2 * 2 + 1
  got = A.gaussian_blur(jnp.asarray(x), sigma, radius)
  want = scipy.ndimage.gaussian_filter(x.astype(np.float64), sigma, mode="constant", cval=0.0,
                                       radius=radius, axes=(0, 1))
  np.testing.assert_allclose(got, want, atol=2e-6)


def test_color_jitter_applies_ops_in_the_drawn_order_with_clipping():
  x = _rgb(3)
  params = {"order": jnp.asarray([2, 0, 3, 1]), "brightness": 1.6, "contrast": 0.4,
            "saturation": 1.8, "hue": 0.12}
  got = A.color_jitter(jnp.asarray(x), params, A.Policy())
  ref = np.clip(_colorsys_adjust(x, 1.8, 0.0), 0, 1)
  ref = np.clip(ref * 1.6, 0, 1)
  ref = np.clip(_colorsys_adjust(ref, 1.0, 0.12), 0, 1)
  mean = ref.mean(axis=(0, 1), keepdims=True)
  ref = np.clip((ref - mean) * 0.4 + mean, 0, 1)
  np.testing.assert_allclose(got, ref, atol=1e-5)
  additive = A.Policy(multiplicative_brightness=False)
  params = dict(params, order=jnp.asarray([0, 1, 2, 3]), brightness=-0.3, saturation=1.0,
                hue=0.0, contrast=1.0)
  np.testing.assert_allclose(A.color_jitter(jnp.asarray(x), params, additive),
                             np.clip(x - 0.3, 0, 1), atol=1e-5)


def test_parameter_ranges_over_many_draws():
  n = 24000
  policy = A.simclr_policy(1.0)
  keys = jax.random.split(jax.random.key(0), n)
  views = jnp.tile(jnp.arange(2), n // 2)
  p = jax.device_get(jax.vmap(lambda k, v: A.sample_params(
      k, policy, v))(keys, views))
  tol = lambda q: 5 * np.sqrt(q * (1 - q) / n)
  for name, q in (("flip", 0.5), ("color", 0.8), ("gray", 0.2), ("blur", 0.5)):
    assert abs(p[name].mean() - q) < tol(q), name
  for name, lo, hi in (("brightness", 0.2, 1.8), ("contrast", 0.2, 1.8),
                       ("saturation", 0.2, 1.8), ("hue", -0.2, 0.2), ("sigma", 0.1, 2.0)):
    v = p[name]
    assert v.min() >= lo and v.max() <= hi, name
    assert v.min() < lo + 0.01 * (hi - lo) and v.max() > hi - 0.01 * (hi - lo), name
    assert abs(v.mean() - (lo + hi) / 2) < 5 * (hi - lo) / np.sqrt(12 * n), name
  orders = [tuple(o) for o in p["order"]]
  assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
  counts = np.unique(np.asarray(orders), axis=0, return_counts=True)[1]
  assert len(counts) == 24 and abs(counts / n - 1 / 24).max() < tol(1 / 24)
  byol = jax.device_get(jax.vmap(lambda k, v: A.sample_params(k, A.byol_policy(), v))(
      keys, views))
  for view, blur_p, sol_p in ((0, 1.0, 0.0), (1, 0.1, 0.2)):
    rows = np.asarray(views) == view
    assert abs(byol["blur"][rows].mean() - blur_p) < tol(0.1) + 1e-9
    assert abs(byol["solarize"][rows].mean() - sol_p) < tol(0.2) + 1e-9


def test_augment_views_identity_policy_and_sharding_invariance():
  rng = np.random.default_rng(4)
  views = rng.integers(0, 256, (16, 2, 16, 16, 3), dtype=np.uint8)
  off = A.Policy(flip=False, color_prob=0.0, grayscale_prob=0.0, blur_prob=(0.0,),
                 solarize_prob=(0.0,))
  same = A.augment_views(jax.random.key(1), jnp.asarray(views), off)
  np.testing.assert_allclose(same, views.astype(np.float32) / 255.0, rtol=1e-6)

  policy = A.Policy(solarize_prob=(0.0, 0.3))
  fn = jax.jit(lambda k, v: A.augment_views(k, v, policy))
  single = np.asarray(fn(jax.random.key(7), jax.device_put(views, jax.devices()[0])))
  sharded = fn(jax.random.key(7), jax.device_put(views, batch_sharding(data_mesh())))
  assert len(sharded.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(sharded), single, atol=1e-6)
  assert single.dtype == np.float32 and single.min() >= 0 and single.max() <= 1
  assert not np.allclose(single[:, 0], single[:, 1])  # the two views differ


def test_policy_from_config_rejects_unknown_keys():
  from ecorep.errors import ConfigError
  assert A.Policy.from_config({"blur_prob": [1.0, 0.1]}).blur_prob == (1.0, 0.1)
  with pytest.raises(ConfigError, match="blurr_prob"):
    A.Policy.from_config({"blurr_prob": 0.5})
