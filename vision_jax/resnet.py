"""ResNet backbones (v1.5: the stride sits on the 3×3 conv) in Flax Linen.

  ResNet(depth=50, width_multiplier=1)(images, train)  -> pooled features (B, 2048·w)

Inputs are float images in [0, 1], (B, H, W, 3), with no mean/std normalisation (as SimCLR;
`input_mean`/`input_std` standardise inside the model for imported torchvision weights).
Batch norm follows SimCLR: decay 0.9, ε 1e-5, and the last BN of every residual block starts
with γ = 0 so that each block starts as the identity (`zero_init_residual=False`: γ = 1, the
PyTorch default). Under `jax.jit` with a batch-sharded input
the BN batch mean and variance are reductions over the global batch (global view), so this *is*
cross-device ("global") BN with no extra code; tests/vision/test_resnet.py checks it.

On CPUs the kernel gradient of every convolution is computed as GEMMs over the kh·kw shifted
input windows (`conv2d`): XLA:CPU's own kernel-gradient convolution runs 4–9× slower than that on
ResNet-50's layers (and ~10× slower than the forward convolution); other platforms use XLA's.

`small_stem` replaces the 7×7/2 conv + 3×3/2 max-pool by one 3×3/1 conv (SimCLR's CIFAR
variant, for 28–64 px images). Depth 10 ([1, 1, 1, 1] basic blocks) is a non-standard tiny
size for tests and CPU demos; `base_width` (64 in every published model) likewise.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ecorep.errors import ConfigError
from vision_jax.errors import VisionInputError

# depth -> (blocks per stage, bottleneck?)
STAGES = {
    10: ((1, 1, 1, 1), False),
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
# Convolutions: He-normal over fan-out (std √(2 / (kh·kw·out)), untruncated), as torchvision's
# ResNet (kaiming_normal_(mode='fan_out', nonlinearity='relu')); this code follows torchvision.
# TF SimCLR's resnet.py uses tf.keras.initializers.VarianceScaling() instead: scale 1, fan-in,
# normal truncated at 2σ, with std √(1 / (kh·kw·in)) after truncation.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# "same": TF's SAME padding (the project's default). "symmetric": (k−1)//2 on every side, as
# torchvision's convolutions and max-pool (and TF SimCLR's fixed padding): on even-sized inputs a
# strided SAME conv pads (lo, hi) = (k//2 − 1, k//2), one pixel off torchvision's grid, so
# imported torchvision weights need "symmetric" to compute the same function.
PADDINGS = ("same", "symmetric")


def check_depth(depth: int) -> tuple[tuple[int, ...], bool]:
  if depth not in STAGES:
    raise VisionInputError(f"ResNet depth {depth} is not one of {sorted(STAGES)}", field="depth")
  return STAGES[depth]


def feature_dim(depth: int, width_multiplier: int = 1, base_width: int = 64) -> int:
  """Size of the pooled feature: 512·w for ResNet-10/18/34, 2048·w for ResNet-50 and deeper."""
  _, bottleneck = check_depth(depth)
  return base_width * width_multiplier * 8 * (4 if bottleneck else 1)


_NHWC = ("NHWC", "HWIO", "NHWC")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv2d(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_NHWC)


def _conv2d_fwd(x, kernel, strides, padding):
  return _conv2d(x, kernel, strides, padding), (x, kernel)


def kernel_grad_gemm(x, dy, kernel_shape, strides, padding):
  """d(loss)/d(kernel) = Σ over windows (i, j) of x_window(i, j)ᵀ · dy, one GEMM per window."""
  kh, kw, cin, cout = kernel_shape
  (sh, sw), (ho, wo) = strides, dy.shape[1:3]
  xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  windows = [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
             for i in range(kh) for j in range(kw)]
  dy2 = dy.reshape(-1, cout)
  gemm = lambda a: lax.dot_general(a.reshape(-1, a.shape[-1]), dy2, (((0,), (0,)), ((), ())),
                                   preferred_element_type=jnp.float32)
  if cin < 16:  # e.g. the RGB stem: one GEMM over all windows side by side
    grad = gemm(jnp.concatenate(windows, axis=-1))
  else:
    grad = jnp.stack([gemm(w) for w in windows])
  return grad.reshape(kernel_shape)


def _conv2d_bwd(strides, padding, residuals, dy):
  x, kernel = residuals
  xla_conv = lambda x, k: lax.conv_general_dilated(x, k, strides, padding,
                                                   dimension_numbers=_NHWC)
  dx = jax.vjp(lambda x_: xla_conv(x_, kernel), x)[1](dy)[0]
  xla_grad = lambda x, dy: jax.vjp(lambda k: xla_conv(x, k), kernel)[1](dy)[0]
  cpu_grad = lambda x, dy: kernel_grad_gemm(x, dy, kernel.shape, strides, padding).astype(
      kernel.dtype)
  return dx, lax.platform_dependent(x, dy, cpu=cpu_grad, default=xla_grad)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv2d(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
         dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
  """`lax.conv_general_dilated` for nn.Conv, with the CPU kernel gradient above for plain 2-d
  NHWC convolutions (no dilation or groups); anything else goes to lax unchanged."""
  plain = (lhs.ndim == 4 and feature_group_count == 1 and not kwargs and precision is None
           and all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
           and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
           == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    precision=precision, **kwargs)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  return _conv2d(lhs, rhs, tuple(window_strides), tuple(tuple(p) for p in padding))


class BasicBlock(nn.Module):
  filters: int
  strides: int
  conv: Any
  norm: Any
  last_scale_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), (self.strides, self.strides))(x)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.filters, (3, 3))(y)
    y = self.norm(scale_init=self.last_scale_init)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), (self.strides, self.strides),
                           name="proj_conv")(residual)
      residual = self.norm(name="proj_bn")(residual)
    return nn.relu(residual + y)


class BottleneckBlock(nn.Module):
  filters: int
  strides: int
  conv: Any
  norm: Any
  last_scale_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    residual = x
    y = nn.relu(self.norm()(self.conv(self.filters, (1, 1))(x)))
    y = self.conv(self.filters, (3, 3), (self.strides, self.strides))(y)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.filters * 4, (1, 1))(y)
    y = self.norm(scale_init=self.last_scale_init)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), (self.strides, self.strides),
                           name="proj_conv")(residual)
      residual = self.norm(name="proj_bn")(residual)
    return nn.relu(residual + y)


class ResNet(nn.Module):
  """`__call__(images, train) -> (outputs, extras)`, the convention of every model here.

  outputs: the pooled features (float32), or with `num_classes` set the logits of a linear
  classifier on them. extras: {"pre_logits": pooled features, "feature_map": the last stage's
  (B, h, w, C) map} (probes read the first, class activation maps the second).
  `layer4_stride=1` keeps the last stage at the resolution of the third (CAM/WSOL).
  """
  depth: int = 50
  width_multiplier: int = 1
  small_stem: bool = False
  num_classes: int | None = None
  layer4_stride: int = 2
  dtype: Any = jnp.float32
  base_width: int = 64
  zero_init_residual: bool = True
  padding: str = "same"                          # see PADDINGS
  # Per-channel (mean, std) standardisation of the [0, 1] input inside the model, for weights
  # trained on standardised images (torchvision's ImageNet models); None: none (SimCLR).
  input_mean: tuple[float, ...] | None = None
  input_std: tuple[float, ...] | None = None

  @nn.compact
  def __call__(self, images, train: bool):
    stage_sizes, bottleneck = check_depth(self.depth)
    symmetric = self.padding == "symmetric"

    def conv(features, kernel_size, strides=1, **kwargs):
      pad = tuple(((k - 1) // 2,) * 2 for k in kernel_size) if symmetric else "SAME"
      return nn.Conv(features, kernel_size, strides, padding=pad, use_bias=False,
                     kernel_init=conv_init, dtype=self.dtype, conv_general_dilated=conv2d,
                     **kwargs)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=BN_MOMENTUM,
                             epsilon=BN_EPSILON, dtype=self.dtype)
    block = BottleneckBlock if bottleneck else BasicBlock
    last_scale_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    width = self.base_width * self.width_multiplier

    x = jnp.asarray(images, self.dtype)
    if self.input_mean is not None:
      x = (x - jnp.asarray(self.input_mean, self.dtype)) / jnp.asarray(self.input_std, self.dtype)
    if self.small_stem:
      x = conv(width, (3, 3), name="stem_conv")(x)
      x = nn.relu(norm(name="stem_bn")(x))
    else:
      x = conv(width, (7, 7), (2, 2), name="stem_conv")(x)
      x = nn.relu(norm(name="stem_bn")(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2),
                      padding=((1, 1), (1, 1)) if symmetric else "SAME")
    for stage, num_blocks in enumerate(stage_sizes):
      stage_stride = 1 if stage == 0 else (self.layer4_stride if stage == 3 else 2)
      for b in range(num_blocks):
        x = block(filters=width * 2**stage, strides=stage_stride if b == 0 else 1, conv=conv,
                  norm=norm, last_scale_init=last_scale_init,
                  name=f"stage{stage + 1}_block{b + 1}")(x)
    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    extras = {"pre_logits": features, "feature_map": x}
    if self.num_classes is None:
      return features, extras
    from vision_jax.heads import LinearHead  # heads import this module's BN constants
    return LinearHead(self.num_classes, name="classifier")(features), extras


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_resnet(spec, *, num_classes: int | None = None, layer4_stride: int = 2,
                 zero_init_residual: bool = True, section: str = "model") -> ResNet:
  """The one ResNet builder: from a config section or a run's model.json "backbone" entry
  (depth, width_multiplier, small_stem, base_width, dtype, padding, input_mean/input_std); bad
  values are ConfigErrors naming `<section>.<key>`."""
  depth = int(spec["depth"])
  if depth not in STAGES:
    raise ConfigError(f"{section}.depth {depth} is not one of {sorted(STAGES)}",
                      field=f"{section}.depth")
  dtype = spec.get("dtype", "float32")
  if dtype not in DTYPES:
    raise ConfigError(f"{section}.dtype must be one of {sorted(DTYPES)}, got {dtype!r}",
                      field=f"{section}.dtype")
  for key in ("width_multiplier", "base_width"):
    if int(spec.get(key, 1)) < 1:
      raise ConfigError(f"{section}.{key} must be positive", field=f"{section}.{key}")
  padding = spec.get("padding", "same")
  if padding not in PADDINGS:
    raise ConfigError(f"{section}.padding must be one of {PADDINGS}, got {padding!r}",
                      field=f"{section}.padding")
  norm = {k: spec.get(k) for k in ("input_mean", "input_std")}
  for key, value in norm.items():
    if value is not None and (len(value) != 3 or (key == "input_std" and min(value) <= 0)):
      raise ConfigError(f"{section}.{key} must be 3 per-channel values (std > 0), got {value!r}",
                        field=f"{section}.{key}")
  if (norm["input_mean"] is None) != (norm["input_std"] is None):
    raise ConfigError(f"{section}.input_mean and input_std go together",
                      field=f"{section}.input_std")
  norm = {k: None if v is None else tuple(float(x) for x in v) for k, v in norm.items()}
  return ResNet(depth=depth, width_multiplier=int(spec.get("width_multiplier", 1)),
                small_stem=bool(spec.get("small_stem", False)),
                base_width=int(spec.get("base_width", 64)), dtype=DTYPES[dtype],
                num_classes=num_classes, layer4_stride=layer4_stride,
                zero_init_residual=zero_init_residual, padding=padding, **norm)
