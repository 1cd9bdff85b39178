import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecorep.errors import ConfigError
from sinr_jax.models import RangeModel, param_count


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_param_count_full_scale():
  # Hand count for S = 47,375, coords input (4), width 256, depth 4:
  # input 4·256 + 256 = 1,280; each block 2·(256·256 + 256) = 131,584, ×4 = 526,336;
  # head 256·47,375 = 12,128,000 (no bias). Total 12,655,616.
  model = RangeModel(num_species=47_375, input_dim=4)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 4)))["params"])
  assert _count(shapes) == 12_655_616 == param_count(47_375, 4)
  assert shapes["species_embedding"].shape == (47_375, 256)
  lr = RangeModel(num_species=100, input_dim=9, encoder="linear")
  lr_shapes = jax.eval_shape(lambda: lr.init(jax.random.key(0), jnp.zeros((1, 9)))["params"])
  assert _count(lr_shapes) == 900 == param_count(100, 9, encoder="linear")


def _numpy_forward(p, x):
  relu = lambda v: np.maximum(v, 0)
  h = relu(x @ p["location_encoder"]["input"]["kernel"] + p["location_encoder"]["input"]["bias"])
  for i in range(2):
    b = p["location_encoder"][f"block{i}"]
    y = relu(h @ b["w1"]["kernel"] + b["w1"]["bias"])
    h = h + relu(y @ b["w2"]["kernel"] + b["w2"]["bias"])
  return h, h @ p["species_embedding"].T


def test_forward_matches_numpy_architecture():
  model = RangeModel(num_species=7, input_dim=4, width=16, depth=2)
  x = np.random.default_rng(0).uniform(-1, 1, (5, 4)).astype(np.float32)
  params = model.init(jax.random.key(1), jnp.asarray(x))["params"]
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  emb, logits = _numpy_forward(p, x.astype(np.float64))
  np.testing.assert_allclose(model.apply({"params": params}, x, method=RangeModel.embed), emb,
                             rtol=1e-5, atol=1e-6)
  out, extras = model.apply({"params": params}, x)  # (outputs, extras), as every model
  np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(extras["pre_logits"], emb, rtol=1e-5, atol=1e-6)


def test_torch_default_init_bounds():
  model = RangeModel(num_species=50, input_dim=4, width=64, depth=1)
  p = model.init(jax.random.key(2), jnp.zeros((1, 4)))["params"]
  enc = p["location_encoder"]
  for leaf, fan_in in [(enc["input"]["kernel"], 4), (enc["input"]["bias"], 4),
                       (enc["block0"]["w1"]["kernel"], 64), (p["species_embedding"], 64)]:
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(leaf).max() <= bound and np.abs(leaf).max() > 0.8 * bound


def test_dropout_only_in_training():
  model = RangeModel(num_species=3, input_dim=4, width=32, depth=2, dropout=0.5)
  x = jnp.ones((4, 4))
  p = model.init(jax.random.key(0), x)
  a, _ = model.apply(p, x, train=True, rngs={"dropout": jax.random.key(1)})
  b, _ = model.apply(p, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(model.apply(p, x)[0], model.apply(p, x)[0])


def test_unknown_encoder():
  with pytest.raises(ConfigError, match="unknown encoder 'mlp'"):
    RangeModel(num_species=3, input_dim=4, encoder="mlp").init(jax.random.key(0), jnp.ones((1, 4)))
