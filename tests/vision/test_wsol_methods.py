"""HaS, CutMix, ADL, CAMs and CAM-Agg against numpy formulas; the CAM read off the trained
logits path (its mean plus the bias is the logit)."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.resnet import BasicBlock
from vision_jax.wsol import cam, methods, synthetic
from vision_jax.wsol import model as model_lib
from vision_jax.wsol.evaluate import CamLocalizer, center_map


def test_hide_and_seek_hides_whole_patches_with_the_mean():
  hide = jax.jit(methods.hide_patches, static_argnums=(2, 3))
  x = jax.random.uniform(jax.random.key(0), (4, 12, 12, 3))
  out, xs = np.asarray(hide(jax.random.key(1), x, 4, 0.5)), np.asarray(x)
  fill = xs.mean(axis=(0, 1, 2))
  hidden = 0
  for b in range(4):
    for i in range(3):
      for j in range(3):
        cell, orig = (a[b, 4 * i:4 * i + 4, 4 * j:4 * j + 4] for a in (out, xs))
        if np.allclose(cell, fill):
          hidden += 1
        else:
          np.testing.assert_array_equal(cell, orig)
  share = np.mean([np.all(np.isclose(np.asarray(hide(jax.random.key(k), x, 4, 0.5)), fill),
                          -1).mean() for k in range(2, 12)])
  assert 8 <= hidden <= 28 and share == pytest.approx(0.5, abs=0.08)  # 36 (360) cells, p = 0.5


def test_cutmix_pastes_one_box_and_weighs_by_its_exact_area():
  mix = jax.jit(methods.cutmix)
  b, h, w = np.meshgrid(np.arange(4), np.arange(10), np.arange(9), indexing="ij")
  x = np.repeat((1000 * b + 10 * h + w)[..., None], 3, -1).astype(np.float32)  # unique pixels
  checked = 0
  for k in range(8):
    mixed, perm, lam = (np.asarray(a) for a in mix(jax.random.key(k), jnp.asarray(x), 1.0, 1.0))
    changed = mixed[..., 0] != x[..., 0]
    for i in range(4):
      np.testing.assert_array_equal(mixed[i][changed[i]], x[perm[i]][changed[i]])
      if perm[i] != i:
        ys, xs = np.nonzero(changed[i]) if changed[i].any() else ([0], [0])
        box = np.zeros_like(changed[i])
        box[min(ys):max(ys) + 1, min(xs):max(xs) + 1] = changed[i].any()
        np.testing.assert_array_equal(changed[i], box)       # one rectangle
        assert float(lam) == pytest.approx(1 - changed[i].mean())
        checked += 1
  assert checked > 0
  _, _, lam = mix(jax.random.key(0), jnp.asarray(x), 1.0, 0.0)
  assert float(lam) == 1.0


class _Blocks(nn.Module):
  """Two residual blocks named like the ResNet's: ADL must act on stage3_block1 only."""

  def setup(self):
    conv = functools.partial(nn.Conv, use_bias=False, padding="SAME")
    norm = functools.partial(nn.BatchNorm, use_running_average=True)
    self.stage3_block1 = BasicBlock(4, 1, conv, norm)
    self.stage2_block1 = BasicBlock(4, 1, conv, norm)

  def __call__(self, x):
    return self.stage3_block1(x) + self.stage2_block1(x)

  def parts(self, x):
    return self.stage3_block1(x), self.stage2_block1(x)


def test_adl_acts_on_the_named_blocks_only():
  x = jax.random.normal(jax.random.key(0), (3, 6, 6, 4))
  net = _Blocks()
  variables = jax.jit(net.init)(jax.random.key(1), x)
  key = jax.random.key(5)
  out, other = (np.asarray(a) for a in jax.jit(
      lambda v, x: net.apply(v, x, method=_Blocks.parts))(variables, x))

  @jax.jit
  def adl_forward(variables, x, drop_rate):
    with methods.adl(key, 10, drop_rate, 0.6):
      return net.apply(variables, x)
  attention = out.mean(-1, keepdims=True)
  for drop_rate in (0.0, 1.0):
    got = np.asarray(adl_forward(variables, x, drop_rate))
    if drop_rate == 1.0:
      scale = (attention < 0.6 * attention.max(axis=(1, 2), keepdims=True)).astype(np.float32)
    else:
      scale = 1 / (1 + np.exp(-attention))
    np.testing.assert_allclose(got, out * scale + other, rtol=1e-5, atol=1e-6)
  assert methods.adl_block_names(50) == ("stage3_block1", "stage4_block1", "stage4_block3")
  assert methods.adl_block_names(10) == ("stage3_block1", "stage4_block1")


def test_cams_come_from_the_trained_logits_path_and_cam_agg_averages_leaves():
  # the tiny config's network (its compiled programs are shared with test_wsol_train)
  net = model_lib.build({"depth": 10, "base_width": 4, "small_stem": True}, 10)
  params, stats = model_lib.init_variables(net, 16, 0)
  rng = np.random.default_rng(0)
  params["head"] = {"kernel": jnp.asarray(rng.normal(size=(32, 10)), jnp.float32),
                    "bias": jnp.asarray(rng.normal(size=10), jnp.float32)}
  images = rng.integers(0, 256, (2, 16, 16, 3), np.uint8)
  logits, extras = jax.jit(lambda v, x: net.apply(v, x, train=False))(
      {"params": params, "batch_stats": stats}, images.astype(np.float32) / 255)
  fmap = np.asarray(extras["feature_map"], np.float64)
  kernel = np.asarray(params["head"]["kernel"], np.float64)
  weights = params["head"]["kernel"].T[np.array([3, 7])]
  raw = np.asarray(cam.raw_cams(extras["feature_map"], weights))
  np.testing.assert_allclose(raw, np.einsum("bhwc,bc->bhw", fmap, kernel.T[[3, 7]]), rtol=1e-5,
                             atol=1e-5)
  bias = np.asarray(params["head"]["bias"])
  np.testing.assert_allclose(raw.mean(axis=(1, 2)) + bias[[3, 7]],
                             np.asarray(logits)[[0, 1], [3, 7]], rtol=1e-5, atol=1e-5)
  tax = synthetic.taxonomy()
  agg = cam.aggregate_kernel(kernel, tax, "family")
  bellies = tax.names[2].index("bellies")
  per_leaf = [np.einsum("hwc,c->hw", fmap[0], kernel[:, d]) for d in (3, 5, 8)]
  np.testing.assert_allclose(np.einsum("hwc,c->hw", fmap[0], agg[:, bellies]),
                             np.mean(per_leaf, axis=0), rtol=1e-5, atol=1e-5)
  # the localiser: normalised maps in [0, 1], leaf probabilities summed per family
  loc = CamLocalizer(net, {"params": params, "batch_stats": stats}, agg, 16,
                     logit_groups=tax.index[:, 2], batch_size=16)
  maps, scores = loc(images, np.array([bellies, 0]))
  assert maps.shape == (2, 16, 16) and maps.min() == 0.0 and maps.max() == pytest.approx(1.0)
  probs = np.exp(np.asarray(logits, np.float64))
  probs /= probs.sum(1, keepdims=True)
  np.testing.assert_allclose(np.exp(scores), tax.coarsen_scores(probs, "family"), rtol=1e-5)
  flat = cam.upsample_normalize(jnp.ones((1, 3, 3)), 6)
  assert float(jnp.abs(flat).max()) == 0.0
  centre = center_map(9, 0.2)
  assert centre[4, 4] == 1.0 and centre.min() == 0.0 and np.allclose(centre, centre.T)
