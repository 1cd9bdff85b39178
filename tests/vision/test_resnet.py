"""ResNet backbones: sizes against the published parameter counts, shapes, and global BN."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecorep.mesh import batch_sharding, data_mesh
from vision_jax.errors import VisionInputError
from vision_jax.resnet import ResNet, conv2d, feature_dim, kernel_grad_gemm
from vision_jax.ssl.base import init_key


def _abstract_variables(model, size=224):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                           train=False))


# torchvision's resnet18/50 have 11,689,512 / 25,557,032 parameters, of which the 1000-way fc
# layer holds 513,000 / 2,049,000; SimCLR reports 375M for ResNet-50 (4×).
@pytest.mark.parametrize("depth,width,count,dim", [(18, 1, 11_176_512, 512),
                                                   (50, 1, 23_508_032, 2048),
                                                   (50, 4, 375_378_176, 8192)])
def test_parameter_counts_match_published_models(depth, width, count, dim):
  model = ResNet(depth=depth, width_multiplier=width)
  variables = _abstract_variables(model)
  assert sum(x.size for x in jax.tree.leaves(variables["params"])) == count
  assert feature_dim(depth, width) == dim
  feats, extras = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 224, 224, 3)),
                                                       train=False), variables)
  assert feats.shape == extras["pre_logits"].shape == (2, dim)
  assert extras["feature_map"].shape == (2, 7, 7, dim)


def test_stems_strides_heads_and_dtypes():
  shape = lambda model, size, **kw: jax.tree.map(lambda a: (a.shape, a.dtype), jax.eval_shape(
      lambda v: model.apply(v, jnp.zeros((2, size, size, 3)), train=False, **kw),
      _abstract_variables(model, size)))
  # Layer-4 stride 1 (WSOL/CAM): 14x14 maps at 224 px.
  assert shape(ResNet(depth=50, layer4_stride=1), 224)[1]["feature_map"][0] == (2, 14, 14, 2048)
  # The small stem keeps full resolution into stage 1: 32 px -> 4x4 maps.
  assert shape(ResNet(depth=18, small_stem=True), 32)[1]["feature_map"][0] == (2, 4, 4, 512)
  logits, extras = shape(ResNet(depth=18, num_classes=10), 64)
  assert logits[0] == (2, 10) and extras["pre_logits"][0] == (2, 512)
  assert extras["feature_map"][0] == (2, 2, 2, 512)
  feats, extras = shape(ResNet(depth=10, base_width=8, dtype=jnp.bfloat16), 32)
  assert feats == ((2, 64), jnp.float32) and extras["feature_map"][1] == jnp.bfloat16
  with pytest.raises(VisionInputError, match="depth 20"):
    feature_dim(20)


def test_last_bn_of_every_block_starts_at_zero_scale():
  params = _abstract_variables(ResNet(depth=18), 32)["params"]
  concrete = _init(ResNet(depth=10, base_width=4, small_stem=True))["params"]
  for name, block in concrete.items():
    if name.startswith("stage"):
      assert np.all(np.asarray(block["BatchNorm_1"]["scale"]) == 0)
      assert np.all(np.asarray(block["BatchNorm_0"]["scale"]) == 1)
  assert "BatchNorm_1" in params["stage4_block2"]


def _init(model, size=16):
  return jax.jit(lambda k: model.init(k, jnp.zeros((1, size, size, 3)), train=False))(
      init_key(0))


def _numpy_conv3x3_same(x, kernel):
  """float64 reference 'SAME' 3×3 convolution, stride 1 (cross-correlation as XLA's conv)."""
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
  for dy in range(3):
    for dx in range(3):
      patch = padded[:, dy:dy + x.shape[1], dx:dx + x.shape[2], :]
      out += patch @ kernel[dy, dx]
  return out


def test_batch_norm_statistics_are_global_over_the_sharded_batch():
  model = ResNet(depth=10, base_width=4, small_stem=True)
  images = np.random.default_rng(0).uniform(0, 1, (16, 16, 16, 3)).astype(np.float32)
  images[8:] *= 0.25  # the second half of the batch (other devices) has other statistics
  variables = _init(model)

  @jax.jit
  def forward(variables, x):
    return model.apply(variables, x, train=True, mutable=["batch_stats"])

  (feats_1, _), stats_1 = forward(variables, jax.device_put(images, jax.devices()[0]))
  sharded = jax.device_put(images, batch_sharding(data_mesh()))
  (feats_8, _), stats_8 = forward(variables, sharded)
  assert len(sharded.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(feats_8), np.asarray(feats_1), rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(stats_8), jax.tree.leaves(stats_1)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)

  # Running statistics after one step = 0.9·init + 0.1·(biased) moments of the global batch.
  conv = _numpy_conv3x3_same(images.astype(np.float64),
                             np.asarray(variables["params"]["stem_conv"]["kernel"], np.float64))
  mean, var = conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2))
  stem = stats_8["batch_stats"]["stem_bn"]
  np.testing.assert_allclose(stem["mean"], 0.1 * mean, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(stem["var"], 0.9 + 0.1 * var, rtol=1e-5)
  per_device_mean = conv[:2].mean(axis=(0, 1, 2))  # what per-device BN would use on device 0
  assert np.abs(per_device_mean - mean).max() > 10 * np.abs(stem["mean"] / 0.1 - mean).max()


@pytest.mark.parametrize("shape,kernel,stride", [((2, 9, 9, 5), 3, 1), ((2, 9, 8, 20), 3, 2),
                                                 ((2, 8, 8, 20), 1, 2), ((2, 16, 16, 3), 7, 2)])
def test_cpu_kernel_gradient_equals_xla_and_float64(shape, kernel, stride):
  rng = np.random.default_rng(0)
  x = rng.normal(size=shape).astype(np.float32)
  k = rng.normal(size=(kernel, kernel, shape[-1], 6)).astype(np.float32)
  dn = ("NHWC", "HWIO", "NHWC")
  loss = lambda fn: jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(fn(  # noqa: E731
      x, k, (stride, stride), "SAME", dimension_numbers=dn))), (0, 1)))
  ours = loss(conv2d)(x, k)
  xla = loss(jax.lax.conv_general_dilated)(x, k)
  for a, b in zip(ours, xla):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  # The kernel gradient for an all-ones upstream gradient: Σ over windows of the padded input.
  pads = jax.lax.padtype_to_pads(shape[1:3], (kernel, kernel), (stride, stride), "SAME")
  dy = np.ones((shape[0], -(-shape[1] // stride), -(-shape[2] // stride), 6), np.float32)
  xp = np.pad(x.astype(np.float64), ((0, 0), pads[0], pads[1], (0, 0)))
  ho, wo = dy.shape[1:3]
  want = np.zeros((kernel, kernel, shape[-1], 6))
  for i in range(kernel):
    for j in range(kernel):
      window = xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
      want[i, j] = window.sum(axis=(0, 1, 2))[:, None]
  got = kernel_grad_gemm(jnp.asarray(x), jnp.asarray(dy), k.shape, (stride, stride), pads)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_one_builder_for_configs_and_run_specs():
  from ecorep.errors import ConfigError
  from vision_jax.resnet import build_resnet
  model = build_resnet({"depth": 18, "width_multiplier": 1, "small_stem": True,
                        "base_width": 16, "dtype": "bfloat16"})
  assert (model.depth, model.small_stem, model.base_width, model.dtype) == (
      18, True, 16, jnp.bfloat16)
  assert build_resnet({"depth": 50}, num_classes=5, layer4_stride=1).layer4_stride == 1
  with pytest.raises(ConfigError, match="model.depth 20") as e:
    build_resnet({"depth": 20})
  assert e.value.field == "model.depth"
  with pytest.raises(ConfigError, match="backbone.dtype"):
    build_resnet({"depth": 18, "dtype": "float16"}, section="backbone")


def test_linear_head_inits():
  from vision_jax.heads import LinearHead
  x = jnp.ones((3, 64))
  zeros = LinearHead(4).init(jax.random.key(0), x)["params"]
  assert set(zeros) == {"kernel", "bias"} and not np.any(np.asarray(zeros["kernel"]))
  torch = LinearHead(4, initializer="torch").init(jax.random.key(0), x)["params"]
  for leaf in (torch["kernel"], torch["bias"]):  # U(±1/√fan_in), as torch.nn.Linear
    assert 0.8 / 8 < np.abs(np.asarray(leaf)).max() <= 1 / 8
  np.testing.assert_allclose(LinearHead(4, initializer="torch").apply({"params": torch}, x),
                             np.asarray(x) @ np.asarray(torch["kernel"]) + np.asarray(torch["bias"]),
                             rtol=1e-6)
