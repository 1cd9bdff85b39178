"""SimCLR/BYOL augmentations: the random resized crop on the host, the rest on the device.

Host (numpy + PIL, called by the grain pipeline per view): `host_random_resized_crop` turns any
decoded image (grayscale, RGB, RGBA, 8- or 16-bit) into a uint8 size×size×3 crop. Its box comes
from TF's sample_distorted_bounding_box (`sample_distorted_box`, SimCLR's and the simclr configs'
default) or torchvision's RandomResizedCrop (`sample_crop_box`, MoCo's); `crop_fn(cfg.data)`
picks one by `data.crop_sampler`.

Device (JAX, inside the jitted train step): `augment_views(key, views, policy)` draws per-view
parameters from per-example keys and applies, vmapped over the batch: horizontal flip (p=0.5);
colour jitter (p=`color_prob`) = brightness, contrast, saturation and hue in a random order,
clipped to [0, 1] after each (as SimCLR's `color_jitter_rand`); grayscale; Gaussian blur (kernel
10% of the image side, σ ∈ [0.1, 2], zero 'SAME' padding as the TF reference); solarize (BYOL).
Blur and solarize probabilities may differ per view (BYOL's asymmetric policy).

The operations follow tf.image: contrast keeps each channel's mean; saturation and hue act in HSV;
grayscale uses the ITU-R 601 weights (0.2989, 0.587, 0.114). Brightness is multiplicative by
default (SimCLR v2, torchvision's ColorJitter: factor ∈ [1−b, 1+b]) or additive (SimCLR v1 and
DeepMind's BYOL, tf.image.random_brightness: delta ∈ [−b, b]).

No operation branches on exact float equality: XLA may compute one value twice in a fusion (with
and without FMA, or in a vector body and a scalar tail whose split depends on the per-device
batch), so a last-bit difference must move the output by about a last bit, whatever the sharding.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ecorep.errors import ConfigError
from vision_jax.errors import VisionInputError

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
BLUR_SIGMA = (0.1, 2.0)


# ----------------------------------------------------------------------------------- host side

def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
  """HxW, HxWx1, HxWx2 (gray+alpha), HxWx3 or HxWx4 (alpha dropped); uint8, uint16 (scaled by
  1/257), bool, or float in [0, 1] -> uint8 HxWx3."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[:, :, None]
  if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
    raise VisionInputError(f"expected an HxW or HxWxC image with C in 1..4, got shape "
                           f"{image.shape}", field="image")
  if image.shape[0] == 0 or image.shape[1] == 0:
    raise VisionInputError(f"empty image of shape {image.shape}", field="image")
  if image.dtype == np.uint8:
    pass
  elif image.dtype == np.uint16:
    image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
  elif image.dtype == np.bool_:
    image = image.astype(np.uint8) * 255
  elif np.issubdtype(image.dtype, np.floating):
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
      raise VisionInputError("float images must hold finite values in [0, 1]", field="image")
    image = np.round(image * 255).astype(np.uint8)
  else:
    raise VisionInputError(f"unsupported image dtype {image.dtype} (uint8, uint16, bool or "
                           "float in [0, 1])", field="image")
  channels = image.shape[2]
  if channels in (1, 2):  # gray (+ alpha): replicate the gray channel
    image = np.repeat(image[:, :, :1], 3, axis=2)
  elif channels == 4:
    image = image[:, :, :3]
  return np.ascontiguousarray(image)


def sample_crop_box(rng: np.random.Generator, height: int, width: int,
                    scale: tuple[float, float] = (0.08, 1.0),
                    ratio: tuple[float, float] = (3 / 4, 4 / 3),
                    attempts: int = 10) -> tuple[int, int, int, int]:
  """(top, left, h, w) as torchvision's RandomResizedCrop (MoCo v2): a fraction `scale` of the
  area with w/h in `ratio`.

  The area is uniform and the aspect ratio log-uniform (symmetric in w/h and h/w). After
  `attempts` boxes that do not fit, falls back to the largest centred box whose ratio is clipped
  into `ratio`.
  """
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(attempts):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, max(1, int(round(width / ratio[0])))
  elif in_ratio > ratio[1]:
    h, w = height, max(1, int(round(height * ratio[1])))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def _tf_crop_size(rng: np.random.Generator, height: int, width: int, min_area: float,
                  max_area: float, aspect: float) -> tuple[int, int] | None:
  """(h, w) of one try of TF's GenerateRandomCrop, or None when none fits: the height is uniform
  over the integers whose box of aspect w/h = `aspect` has an area in [min_area, max_area] and
  fits in the image; rounding is repaired by one pixel at most. round() is round-half-even, as
  the reference's lrintf."""
  if max_area <= 0 or aspect <= 0 or min_area > max_area:
    return None
  h = int(round(math.sqrt(min_area / aspect)))
  max_h = int(round(math.sqrt(max_area / aspect)))
  if int(round(max_h * aspect)) > width:  # the tallest box whose rounded width still fits
    max_h = int((width + 0.5 - 1e-7) / aspect)
    if int(round(max_h * aspect)) > width:
      max_h -= 1
  max_h = min(max_h, height)
  h = min(h, max_h)
  if h < max_h:
    h += int(rng.integers(0, max_h - h + 1))
  w = int(round(h * aspect))
  if w * h < min_area:
    h += 1
    w = int(round(h * aspect))
  if w * h > max_area:
    h -= 1
    w = int(round(h * aspect))
  if not (min_area <= w * h <= max_area and 0 < w <= width and 0 < h <= height):
    return None
  return h, w


def sample_distorted_box(rng: np.random.Generator, height: int, width: int,
                         scale: tuple[float, float] = (0.08, 1.0),
                         ratio: tuple[float, float] = (3 / 4, 4 / 3),
                         min_object_covered: float = 0.1,
                         attempts: int = 100) -> tuple[int, int, int, int]:
  """(top, left, h, w) as SimCLR's crop, tf.image.sample_distorted_bounding_box with the whole
  image as the object box.

  Each of `attempts` tries draws w/h uniformly (not log-uniformly) from `ratio`, then a height
  uniform over the integers that keep the area in `scale` (so the area is not uniform: larger
  boxes are rarer than torchvision's), and accepts the box if it covers at least
  `min_object_covered` of the image (with the reference's 0.1 this rejects areas in
  [0.08, 0.1)). The offsets are uniform over [0, H − h) and [0, W − w) as the reference draws
  them (Uniform(n) excludes n), so a box smaller than the image never touches its last
  row/column. No accepted box after all tries: the whole image.
  """
  image_area = height * width
  min_area, max_area = scale[0] * image_area, scale[1] * image_area
  for _ in range(attempts):
    aspect = rng.uniform(ratio[0], ratio[1])
    size = _tf_crop_size(rng, height, width, min_area, max_area, aspect)
    if size is None:
      continue
    h, w = size
    top = int(rng.integers(0, height - h)) if h < height else 0
    left = int(rng.integers(0, width - w)) if w < width else 0
    if h * w >= min_object_covered * image_area:  # the box lies inside the object (the image)
      return top, left, h, w
  return 0, 0, height, width


CROP_SAMPLERS = {"torchvision": sample_crop_box, "tf": sample_distorted_box}


def host_random_resized_crop(rng: np.random.Generator, image: np.ndarray, size: int,
                             scale: tuple[float, float] = (0.08, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3),
                             sampler: str = "torchvision") -> np.ndarray:
  """A random crop (area `scale`, aspect `ratio`, boxes from CROP_SAMPLERS[sampler]) resized
  bicubically (PIL) to uint8 size×size×3.

  The crop is cut out first and then resized (as the TF reference and torchvision do), so no
  pixel outside the box leaks in through the filter. Images smaller than `size` work the same
  way: the crop is upsampled.
  """
  rgb = to_rgb_uint8(image)
  top, left, h, w = CROP_SAMPLERS[sampler](rng, rgb.shape[0], rgb.shape[1], scale, ratio)
  crop = Image.fromarray(rgb[top:top + h, left:left + w])
  return np.asarray(crop.resize((size, size), Image.BICUBIC), dtype=np.uint8)


def crop_fn(data_cfg):
  """The host crop a `data` config section names: `crop_sampler` ('tf': SimCLR's
  sample_distorted_bounding_box, 'torchvision': RandomResizedCrop) over the area range
  `crop_scale`. A partial of a module function, so grain worker processes can pickle it."""
  sampler = data_cfg.get("crop_sampler", "torchvision")
  if sampler not in CROP_SAMPLERS:
    raise ConfigError(f"data.crop_sampler must be one of {sorted(CROP_SAMPLERS)}, got "
                      f"'{sampler}'", field="data.crop_sampler")
  scale = tuple(float(s) for s in data_cfg.crop_scale)
  if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
    raise ConfigError(f"data.crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {scale}",
                      field="data.crop_scale")
  return functools.partial(host_random_resized_crop, scale=scale, sampler=sampler)


# --------------------------------------------------------------------------------- device side

@dataclasses.dataclass(frozen=True)
class Policy:
  """Augmentation strengths and probabilities; per-view tuples use their last entry for extra
  views."""
  flip: bool = True
  brightness: float = 0.8
  contrast: float = 0.8
  saturation: float = 0.8
  hue: float = 0.2
  color_prob: float = 0.8
  grayscale_prob: float = 0.2
  blur_prob: tuple[float, ...] = (0.5, 0.5)
  solarize_prob: tuple[float, ...] = (0.0, 0.0)
  multiplicative_brightness: bool = True

  @classmethod
  def from_config(cls, cfg) -> "Policy":
    fields = {f.name for f in dataclasses.fields(cls)}
    values = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    unknown = sorted(set(values) - fields)
    if unknown:
      raise ConfigError(f"augment.{unknown[0]} is not an augmentation setting; known: "
                        f"{', '.join(sorted(fields))}", field=f"augment.{unknown[0]}")
    for k in ("blur_prob", "solarize_prob"):
      if k in values:
        values[k] = tuple(float(p) for p in np.atleast_1d(values[k]))
    return cls(**values)


def simclr_policy(strength: float = 1.0, blur: bool = True) -> Policy:
  """SimCLR: jitter (0.8, 0.8, 0.8, 0.2)·s; blur p=0.5 (ImageNet) or none (CIFAR)."""
  p = 0.5 if blur else 0.0
  return Policy(brightness=0.8 * strength, contrast=0.8 * strength,
                saturation=0.8 * strength, hue=0.2 * strength, blur_prob=(p, p))


def byol_policy() -> Policy:
  """BYOL's asymmetric policy (DeepMind's augmentations.py): jitter (0.4, 0.4, 0.2, 0.1) with
  an additive brightness delta ∈ [−0.4, 0.4], blur p=(1.0, 0.1), solarize p=(0, 0.2)."""
  return Policy(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, blur_prob=(1.0, 0.1),
                solarize_prob=(0.0, 0.2), multiplicative_brightness=False)


def _rgb_to_hsv(rgb: jax.Array, top: jax.Array) -> jax.Array:
  """HSV with the hue's sextant taken from `top`, the index of (a) largest channel.

  Value, chroma and the hue's offset are all read from channel `top` and the two after it
  (cyclically), never by testing `max == r`: at a sextant boundary the two neighbouring
  formulas agree, so choosing either of two channels within a few ulps of each other changes
  the hue by about an ulp. The offset is clipped to [−1, 1], its range when `top` is the exact
  maximum, which bounds the damage if `top` came from a slightly different computation.
  """
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  is_r, is_g = top == 0, top == 1
  value = jnp.where(is_r, r, jnp.where(is_g, g, b))
  after = jnp.where(is_r, g, jnp.where(is_g, b, r))    # the next channel: hue = 2·top + ...
  before = jnp.where(is_r, b, jnp.where(is_g, r, g))   # ... (after − before) / chroma
  chroma = jnp.maximum(value - jnp.minimum(after, before), 0.0)
  safe_v = jnp.where(value > 0, value, 1.0)
  safe_c = jnp.where(chroma > 0, chroma, 1.0)
  saturation = jnp.where(value > 0, chroma / safe_v, 0.0)
  offset = jnp.clip((after - before) / safe_c, -1.0, 1.0)
  hue = jnp.mod((2.0 * top.astype(rgb.dtype) + offset) / 6.0, 1.0)
  hue = jnp.where((chroma > 0) & (hue < 1.0), hue, 0.0)  # mod(-tiny, 1) rounds to 1.0 ≡ 0
  return jnp.stack([hue, saturation, value], axis=-1)


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
  """(..., 3) RGB in [0, 1] -> HSV with hue in [0, 1) (colorsys conventions: gray has hue and
  saturation 0; ties for the largest channel go to r, then g)."""
  return _rgb_to_hsv(rgb, jnp.argmax(rgb, axis=-1))


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
  h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  # f(n) = v - v·s·max(0, min(k, 4 - k, 1)), k = (n + 6h) mod 6, for n = 5, 3, 1 (R, G, B)
  n = jnp.asarray([5.0, 3.0, 1.0], hsv.dtype)
  k = jnp.mod(n + 6.0 * h[..., None], 6.0)
  return v[..., None] - (v * s)[..., None] * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def adjust_brightness(x, amount, multiplicative: bool = True):
  """x·amount (SimCLR v2, torchvision) or x + amount (tf.image.adjust_brightness: SimCLR v1,
  DeepMind's BYOL)."""
  return x * amount if multiplicative else x + amount


def adjust_contrast(x, factor):
  mean = jnp.mean(x, axis=(-3, -2), keepdims=True)
  return (x - mean) * factor + mean


def adjust_hsv(x, saturation_factor, hue_delta):
  """Scales HSV saturation (clipped to [0, 1]) and rotates hue, as tf.image.adjust_saturation /
  adjust_hue."""
  hsv = rgb_to_hsv(x)
  hue = jnp.mod(hsv[..., 0] + hue_delta, 1.0)
  saturation = jnp.clip(hsv[..., 1] * saturation_factor, 0.0, 1.0)
  return hsv_to_rgb(jnp.stack([hue, saturation, hsv[..., 2]], axis=-1))


def adjust_saturation(x, factor):
  return adjust_hsv(x, factor, 0.0)


def adjust_hue(x, delta):
  return adjust_hsv(x, 1.0, delta)


def to_grayscale(x):
  gray = x @ jnp.asarray(GRAY_WEIGHTS, x.dtype)
  return jnp.repeat(gray[..., None], 3, axis=-1)


def blur_radius(image_size: int) -> int:
  """SimCLR: kernel = size // 10, made odd as 2·(kernel // 2) + 1 taps."""
  return max(image_size // 10, 1) // 2


def _blur_matrix(n: int, radius: int, sigma):
  """(n, n) banded matrix of the normalised Gaussian taps; rows truncated at the border
  (= zero padding)."""
  offsets = jnp.arange(n)[None, :] - jnp.arange(n)[:, None]
  taps = jnp.exp(-jnp.square(jnp.arange(-radius, radius + 1, dtype=jnp.float32)) /
                 (2.0 * sigma**2))
  taps = taps / jnp.sum(taps)
  return jnp.where(jnp.abs(offsets) <= radius, taps[jnp.clip(offsets + radius, 0, 2 * radius)], 0)


def gaussian_blur(x, sigma, radius: int):
  """Separable Gaussian blur of an (H, W, C) image with 2·radius+1 taps and zero padding."""
  rows = _blur_matrix(x.shape[0], radius, sigma)
  cols = _blur_matrix(x.shape[1], radius, sigma)
  return jnp.einsum("ij,jwc,kw->ikc", rows, x, cols)


def solarize(x, threshold: float = 0.5):
  return jnp.where(x < threshold, x, 1.0 - x)


def _view_probs(probs: tuple[float, ...], view: int | jax.Array) -> jax.Array:
  """The probability of view number `view` (a traced index is fine); extra views use the last."""
  table = jnp.asarray(probs, jnp.float32)
  return table[jnp.minimum(view, len(probs) - 1)]


def sample_params(key: jax.Array, policy: Policy, view: int | jax.Array = 0) -> dict:
  """Random parameters of one view (scalars; vmap over keys, and views, for a batch).

  All of them come from one uniform draw of 14 numbers: each separate jax.random call costs
  XLA seconds of compile time on CPUs, and the draws are independent either way.
  """
  u = jax.random.uniform(key, (14,), jnp.float32)
  between = lambda x, lo, hi: lo + (hi - lo) * x
  if policy.multiplicative_brightness:
    bright_lo, bright_hi = max(0.0, 1 - policy.brightness), 1 + policy.brightness
  else:
    bright_lo, bright_hi = -policy.brightness, policy.brightness
  return {
      "flip": u[0] < (0.5 if policy.flip else 0.0),
      "color": u[1] < policy.color_prob,
      "order": jnp.argsort(u[2:6]).astype(jnp.int32),  # a uniformly random permutation
      "brightness": between(u[6], bright_lo, bright_hi),
      "contrast": between(u[7], max(0.0, 1 - policy.contrast), 1 + policy.contrast),
      "saturation": between(u[8], max(0.0, 1 - policy.saturation), 1 + policy.saturation),
      "hue": between(u[9], -policy.hue, policy.hue),
      "gray": u[10] < policy.grayscale_prob,
      "blur": u[11] < _view_probs(policy.blur_prob, view),
      "sigma": between(u[12], *BLUR_SIGMA),
      "solarize": u[13] < _view_probs(policy.solarize_prob, view),
  }


def color_jitter(x, params: dict, policy: Policy):
  """The four jitter ops in `params['order']` (0 brightness, 1 contrast, 2 saturation, 3 hue),
  each followed by a clip to [0, 1].

  Each position computes one per-channel affine map (brightness or contrast) and one HSV
  adjustment (saturation or hue, the other left at identity) and keeps the one its op needs:
  under vmap a `lax.switch` would evaluate all four ops at every position.
  """
  use_hsv = policy.saturation > 0 or policy.hue > 0
  for position in range(4):
    op = params["order"][position]
    mean = jnp.mean(x, axis=(-3, -2), keepdims=True)
    contrast = params["contrast"]
    if policy.multiplicative_brightness:
      scale = jnp.where(op == 0, params["brightness"], jnp.where(op == 1, contrast, 1.0))
      shift = jnp.where(op == 1, mean * (1.0 - contrast), 0.0)
    else:
      scale = jnp.where(op == 1, contrast, 1.0)
      shift = jnp.where(op == 0, params["brightness"],
                        jnp.where(op == 1, mean * (1.0 - contrast), 0.0))
    y = x * scale + shift
    if use_hsv:
      hsv = adjust_hsv(x, jnp.where(op == 2, params["saturation"], 1.0),
                       jnp.where(op == 3, params["hue"], 0.0))
      y = jnp.where(op <= 1, y, hsv)
    x = jnp.clip(y, 0.0, 1.0)
  return x


def apply_params(x, params: dict, policy: Policy):
  """Applies one view's parameters to an (H, W, 3) float image in [0, 1]."""
  x = jnp.where(params["flip"], x[:, ::-1, :], x)
  if policy.color_prob > 0:
    x = jnp.where(params["color"], color_jitter(x, params, policy), x)
  if policy.grayscale_prob > 0:
    x = jnp.where(params["gray"], to_grayscale(x), x)
  if max(policy.blur_prob) > 0:
    x = jnp.where(params["blur"], gaussian_blur(x, params["sigma"], blur_radius(x.shape[0])), x)
  if max(policy.solarize_prob) > 0:
    x = jnp.where(params["solarize"], solarize(x), x)
  return jnp.clip(x, 0.0, 1.0)


def augment_views(key: jax.Array, views: jax.Array, policy: Policy) -> jax.Array:
  """(B, V, H, W, 3) uint8 or [0, 1] float crops -> augmented float32 in [0, 1], same shape.

  Example b, view v uses key `split(key, B·V)[b·V + v]`, so results do not depend on how the
  batch is sharded. All B·V images go through one vmap (one copy of the ops in the program).
  """
  if views.dtype == jnp.uint8:
    views = views.astype(jnp.float32) / 255.0
  views = views.astype(jnp.float32)
  batch, num_views = views.shape[:2]
  flat = views.reshape((batch * num_views,) + views.shape[2:])
  keys = jax.random.split(key, batch * num_views)
  view_index = jnp.tile(jnp.arange(num_views), batch)
  augment = lambda k, img, v: apply_params(img, sample_params(k, policy, v), policy)
  return jax.vmap(augment)(keys, flat, view_index).reshape(views.shape)
