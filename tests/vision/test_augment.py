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


def _reference_tf_sizes(rng, height, width, n, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        covered=0.1, attempts=100):
  """Independent rejection sampler for TF's sample_distorted_bounding_box (whole image as the
  object): per try a uniform aspect a, then a height uniform over ALL integers whose box
  (w = round(h·a)) fits, has an area in `scale` and covers `covered` of the image; the whole
  image when no try has one."""
  hs = np.arange(1, height + 1)
  out = []
  for _ in range(n):
    for _ in range(attempts):
      ws = np.rint(hs * rng.uniform(*ratio)).astype(int)
      area = hs * ws
      ok = ((ws >= 1) & (ws <= width) & (area >= scale[0] * height * width)
            & (area <= scale[1] * height * width) & (area >= covered * height * width))
      if ok.any():
        i = rng.choice(np.flatnonzero(ok))
        out.append((hs[i], ws[i]))
        break
    else:
      out.append((height, width))
  return np.array(out)


def _ks(a, b) -> float:
  """Two-sample Kolmogorov-Smirnov statistic."""
  grid = np.union1d(a, b)
  cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
  return float(np.abs(cdf(a) - cdf(b)).max())


@pytest.mark.parametrize("height,width", [(120, 90), (28, 28)])
def test_tf_crop_box_distribution_matches_a_rejection_sampler(height, width):
  n = 3000
  rng = np.random.default_rng(6)
  boxes = np.array([A.sample_distorted_box(rng, height, width) for _ in range(n)])
  top, left, h, w = boxes.T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + h <= height).all() and (left + w <= width).all()
  # The reference draws offsets with Uniform(H - h), which excludes H - h.
  assert (top[h < height] + h[h < height] <= height - 1).all()
  assert (left[w < width] + w[w < width] <= width - 1).all()
  area = h * w / (height * width)
  assert area.min() >= 0.1 and area.max() <= 1  # min_object_covered 0.1 cuts [0.08, 0.1)
  aspect = w / h
  assert (w >= 0.75 * h - 0.5).all() and (w <= 4 / 3 * h + 0.5).all()  # w = round(h·a)
  ref = _reference_tf_sizes(np.random.default_rng(7), height, width, n)
  ref_area = ref[:, 0] * ref[:, 1] / (height * width)
  tv = np.array([A.sample_crop_box(rng, height, width) for _ in range(n)])
  tv_area = tv[:, 2] * tv[:, 3] / (height * width)
  assert _ks(area, ref_area) < 0.05  # 99% critical value at n = m = 3000: 0.042
  assert _ks(aspect, ref[:, 1] / ref[:, 0]) < 0.05
  assert _ks(tv_area, ref_area) > 0.08  # measured 0.11-0.16: the test tells the samplers apart


def test_tf_crop_box_falls_back_to_the_whole_image_and_is_deterministic():
  rng = np.random.default_rng(0)
  assert A.sample_distorted_box(rng, 10, 10, scale=(0.5, 0.6), ratio=(3.0, 4.0)) == (0, 0, 10, 10)
  assert A.sample_distorted_box(rng, 10, 100, scale=(2.0, 3.0)) == (0, 0, 10, 100)
  assert A.sample_distorted_box(rng, 50, 60, min_object_covered=1.0,
                                scale=(0.08, 0.9)) == (0, 0, 50, 60)
  assert A.sample_distorted_box(rng, 50, 60, attempts=0) == (0, 0, 50, 60)
  # Whole-image boxes are accepted when drawn (area range includes 1).
  assert A.sample_distorted_box(rng, 30, 30, scale=(1.0, 1.0), ratio=(1.0, 1.0)) == (0, 0, 30, 30)

  def draw(seed):
    g = np.random.default_rng(seed)
    return [A.sample_distorted_box(g, 64, 48) for _ in range(30)]
  assert draw(3) == draw(3) and draw(3) != draw(4)


@pytest.mark.parametrize("sampler", ["torchvision", "tf"])
@pytest.mark.parametrize("shape,dtype", [((40, 30, 3), np.uint8), ((7, 5), np.uint8),
                                         ((33, 41), np.uint16), ((20, 24, 4), np.uint8)])
def test_host_random_resized_crop_matches_pil(shape, dtype, sampler):
  image = np.random.default_rng(2).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
  out = A.host_random_resized_crop(np.random.default_rng(5), image, 16, sampler=sampler)
  assert out.shape == (16, 16, 3) and out.dtype == np.uint8
  top, left, h, w = A.CROP_SAMPLERS[sampler](np.random.default_rng(5), shape[0], shape[1])
  rgb = A.to_rgb_uint8(image)
  reference = Image.fromarray(rgb[top:top + h, left:left + w]).resize((16, 16), Image.BICUBIC)
  np.testing.assert_array_equal(out, np.asarray(reference))


def test_crop_fn_from_a_data_config():
  import pickle

  import ml_collections
  from ecorep.errors import ConfigError
  cfg = ml_collections.ConfigDict({"crop_scale": (0.2, 1.0), "crop_sampler": "tf"})
  fn = pickle.loads(pickle.dumps(A.crop_fn(cfg)))  # grain workers pickle it
  image = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
  want = A.host_random_resized_crop(np.random.default_rng(2), image, 12, scale=(0.2, 1.0),
                                    sampler="tf")
  np.testing.assert_array_equal(fn(np.random.default_rng(2), image, 12), want)
  assert A.crop_fn(ml_collections.ConfigDict({"crop_scale": (0.08, 1.0)})).keywords == {
      "scale": (0.08, 1.0), "sampler": "torchvision"}
  with pytest.raises(ConfigError, match="crop_sampler"):
    A.crop_fn(ml_collections.ConfigDict({"crop_scale": (0.08, 1.0), "crop_sampler": "pil"}))
  with pytest.raises(ConfigError, match="crop_scale"):
    A.crop_fn(ml_collections.ConfigDict({"crop_scale": (0.5, 0.2), "crop_sampler": "tf"}))


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


def _colorsys_hsv(x: np.ndarray) -> np.ndarray:
  return np.array([colorsys.rgb_to_hsv(*map(float, p)) for p in x.reshape(-1, 3)]).reshape(
      x.shape)


def _tie_heavy(seed: int, n: int = 4096) -> np.ndarray:
  """(n, 3) pixels on a coarse grid, mostly clipped to 0/1, plus exact ties and grays."""
  rng = np.random.default_rng(seed)
  x = np.clip(np.round(rng.uniform(-0.5, 1.5, (n, 3)) * 8) / 8, 0, 1)
  x[: n // 8, 1] = x[: n // 8, 0]                      # r == g
  x[n // 8: n // 4, 2] = x[n // 8: n // 4, 1]          # g == b
  x[n // 4: n // 3] = x[n // 4: n // 3, :1]            # gray
  x[-4:] = [[1, 1, 1], [0, 0, 0], [1, 1, 0], [0, 1, 1]]
  return x.astype(np.float32)


def _hue_error(got: np.ndarray, want: np.ndarray) -> np.ndarray:
  """Circular hue difference weighted by the chroma (v·s): what it moves in RGB."""
  d = np.abs(got[..., 0] - want[..., 0])
  return np.minimum(d, 1 - d) * want[..., 1] * want[..., 2]


@pytest.mark.parametrize("kind", ["uniform", "tie_heavy", "quantised"])
def test_rgb_to_hsv_matches_colorsys_and_round_trips(kind):
  rng = np.random.default_rng(11)
  if kind == "uniform":
    x = rng.uniform(0, 1, (4096, 3)).astype(np.float32)
  elif kind == "tie_heavy":
    x = _tie_heavy(0)
  else:  # uint8 images: many exact ties between channels
    x = (rng.integers(0, 4, (4096, 3)) * 85 / 255).astype(np.float32)
  got = np.asarray(A.rgb_to_hsv(jnp.asarray(x)), np.float64)
  want = _colorsys_hsv(x)
  assert (got[:, 0] >= 0).all() and (got[:, 0] < 1).all()
  np.testing.assert_allclose(got[:, 1:], want[:, 1:], atol=1e-6)
  assert _hue_error(got, want).max() < 1e-6
  exact = want[:, 1] > 0.05  # well-defined hue: compare it directly too
  d = np.abs(got[exact, 0] - want[exact, 0])
  assert np.minimum(d, 1 - d).max() < 1e-5
  np.testing.assert_allclose(A.hsv_to_rgb(A.rgb_to_hsv(jnp.asarray(x))), x, atol=1e-6)


def _ulp_perturbed(x: np.ndarray, seed: int, max_ulps: int = 2) -> np.ndarray:
  """x with each value moved by up to `max_ulps` float32 ulps (kept in [0, 1])."""
  rng = np.random.default_rng(seed)
  steps = rng.integers(-max_ulps, max_ulps + 1, x.shape)
  y = x.copy()
  for _ in range(max_ulps):
    y = np.where(steps > 0, np.nextafter(y, np.float32(2)), y)
    y = np.where(steps < 0, np.nextafter(y, np.float32(-1)), y)
    steps = steps - np.sign(steps)
  return np.clip(y, 0, 1).astype(np.float32)


def test_hue_branch_chosen_from_a_last_bit_different_copy_is_still_right():
  """What XLA can do in one fusion: pick the largest channel from one evaluation of the pixels
  and read the channels from another that differs in the last bits. Every branch must then give
  the right colour (a `max == r` test would match no channel and take the blue branch)."""
  x = _tie_heavy(1)
  other = _ulp_perturbed(x, 2)
  top = np.argmax(other, axis=1)
  assert (top != np.argmax(x, axis=1)).mean() > 0.1  # other branches get exercised
  no_match = (other.max(1)[:, None] != x).all(1)
  assert no_match.mean() > 0.05  # where an equality test would take the wrong branch
  hsv = A._rgb_to_hsv(jnp.asarray(x), jnp.asarray(top))
  np.testing.assert_allclose(A.hsv_to_rgb(hsv), x, atol=1e-6)
  want = _colorsys_hsv(x)
  assert _hue_error(np.asarray(hsv, np.float64), want).max() < 1e-6
  for saturation, hue in ((1.8, 0.0), (1.0, 0.3), (0.4, -0.45)):
    adjusted = A.hsv_to_rgb(jnp.stack([jnp.mod(hsv[:, 0] + hue, 1.0),
                                       jnp.clip(hsv[:, 1] * saturation, 0, 1), hsv[:, 2]], -1))
    np.testing.assert_allclose(adjusted, _colorsys_adjust(x[None], saturation, hue)[0],
                               atol=2e-6)


def test_last_bit_changes_move_hsv_adjustments_by_last_bits():
  x = _tie_heavy(3)
  y = _ulp_perturbed(x, 4)
  for saturation, hue in ((1.8, 0.0), (1.0, 0.3), (2.5, -0.2)):
    a = np.asarray(A.adjust_hsv(jnp.asarray(x), saturation, hue))
    b = np.asarray(A.adjust_hsv(jnp.asarray(y), saturation, hue))
    assert np.abs(a - b).max() < 1e-5


def test_fused_contrast_then_hsv_matches_float64_colorsys():
  """Contrast feeding saturation/hue inside one jit (the case that broke on an Intel CPU),
  against float64 numpy + colorsys. Tolerance well below a wrong branch's ~0.1."""
  rng = np.random.default_rng(5)
  x = (rng.integers(0, 256, (24, 6, 6, 3)) / 255).astype(np.float32)
  factor = rng.uniform(0.2, 1.8, 24).astype(np.float32)
  fn = jax.jit(jax.vmap(lambda im, c: A.adjust_hsv(
      jnp.clip(A.adjust_contrast(im, c), 0.0, 1.0), 1.6, 0.15)))
  got = np.asarray(fn(jnp.asarray(x), jnp.asarray(factor)))
  for i in range(len(x)):
    x64 = x[i].astype(np.float64)
    mean = x64.mean(axis=(0, 1), keepdims=True)
    want = _colorsys_adjust(np.clip((x64 - mean) * float(factor[i]) + mean, 0, 1), 1.6, 0.15)
    assert np.abs(got[i] - want).max() < 1e-4, i


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


def test_brightness_additive_and_multiplicative_by_hand():
  x = jnp.asarray([[[0.1, 0.5, 0.9]]], jnp.float32)
  np.testing.assert_allclose(A.adjust_brightness(x, 0.25, multiplicative=False),
                             [[[0.35, 0.75, 1.15]]], atol=1e-7)
  np.testing.assert_allclose(A.adjust_brightness(x, 1.25), [[[0.125, 0.625, 1.125]]], atol=1e-7)
  identity = {"order": jnp.asarray([0, 1, 2, 3]), "contrast": 1.0, "saturation": 1.0,
              "hue": 0.0}
  for multiplicative, amount, want in ((False, 0.25, [0.35, 0.75, 1.0]),
                                       (False, -0.3, [0.0, 0.2, 0.6]),
                                       (True, 1.25, [0.125, 0.625, 1.0])):
    policy = A.Policy(multiplicative_brightness=multiplicative)
    got = A.color_jitter(x, dict(identity, brightness=amount), policy)
    np.testing.assert_allclose(got, [[want]], atol=1e-6)
  # BYOL draws the delta uniformly from [-0.4, 0.4] (tf.image.random_brightness).
  assert not A.byol_policy().multiplicative_brightness
  keys = jax.random.split(jax.random.key(3), 4000)
  delta = np.asarray(jax.vmap(lambda k: A.sample_params(k, A.byol_policy())["brightness"])(keys))
  assert delta.min() >= -0.4 and delta.max() <= 0.4 and delta.min() < -0.39 and delta.max() > 0.39
  assert abs(delta.mean()) < 5 * 0.8 / np.sqrt(12 * 4000)


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
  # Not bit equality: the per-device batch changes XLA's loops (vector body vs scalar tail, FMA
  # or not), so values may differ in the last bits. A wrong hue branch moves a pixel by ~0.1-0.5.
  np.testing.assert_allclose(np.asarray(sharded), single, rtol=0, atol=1e-4)
  assert single.dtype == np.float32 and single.min() >= 0 and single.max() <= 1
  assert not np.allclose(single[:, 0], single[:, 1])  # the two views differ


def test_policy_from_config_rejects_unknown_keys():
  from ecorep.errors import ConfigError
  assert A.Policy.from_config({"blur_prob": [1.0, 0.1]}).blur_prob == (1.0, 0.1)
  with pytest.raises(ConfigError, match="blurr_prob"):
    A.Policy.from_config({"blurr_prob": 0.5})
