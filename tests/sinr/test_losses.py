"""Losses against float64 numpy formulas, blocked vs unblocked head, extreme logits, and the
bound on the difference from the reference's log(p + 1e-5) form."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sinr_jax import losses

EPS = 1e-5


def softplus(z):
  return np.logaddexp(0.0, z)


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def entropy(z):
  p = sigmoid(z)
  return p * softplus(-z) + (1 - p) * softplus(z)


def numpy_loss(name, emb, emb_rand, w, labels, other, pos_weight):
  """Float64 reference of the DESIGN.md definitions, in exact −log σ form."""
  if name == "gp":  # without photographers L_GP is AN-full with λ = number of classes
    name, pos_weight = "an_full", w.shape[0]
  neg = (lambda z: softplus(z)) if name.startswith("an") else (lambda z: -entropy(z))
  z = emb @ w.T
  rows = np.arange(len(labels))
  z_pos = z[rows, labels]
  if name.endswith("ssdl"):
    z_rand = (emb_rand @ w.T)[rows, labels]
    return np.mean(softplus(-z_pos)) + np.mean(neg(z_rand))
  if name.endswith("slds"):
    return np.mean(softplus(-z_pos)) + np.mean(neg(z[rows, other]))
  data = neg(z)
  data[rows, labels] = pos_weight * softplus(-z_pos)
  return data.mean() + neg(emb_rand @ w.T).mean()


def reference_form_loss(name, emb, emb_rand, w, labels, other, pos_weight):
  """The published code's form: sigmoid, then −log(p + 1e-5) (entropy likewise)."""
  if name == "gp":
    name, pos_weight = "an_full", w.shape[0]
  nl = lambda x: -np.log(x + EPS)
  if name.startswith("an"):
    neg = lambda p: nl(1 - p)
  else:
    neg = lambda p: -(p * nl(p) + (1 - p) * nl(1 - p))
  p = sigmoid(emb @ w.T)
  rows = np.arange(len(labels))
  if name.endswith("ssdl"):
    return np.mean(nl(p[rows, labels])) + np.mean(neg(sigmoid(emb_rand @ w.T)[rows, labels]))
  if name.endswith("slds"):
    return np.mean(nl(p[rows, labels])) + np.mean(neg(p[rows, other]))
  data = neg(p)
  data[rows, labels] = pos_weight * nl(p[rows, labels])
  return data.mean() + neg(sigmoid(emb_rand @ w.T)).mean()


def random_inputs(seed, batch=16, dim=8, species=37, scale=1.0):
  rng = np.random.default_rng(seed)
  emb = rng.standard_normal((batch, dim)) * scale
  emb_rand = rng.standard_normal((batch, dim)) * scale
  w = rng.standard_normal((species, dim)) / np.sqrt(dim)
  labels = rng.integers(0, species, batch)
  return emb, emb_rand, w, labels


def slds_other(key, labels, species):
  other = np.asarray(jax.random.randint(key, labels.shape, 0, species - 1))
  return other + (other >= labels)


def jax_loss(name, emb, emb_rand, w, labels, key, pos_weight, block_size=0):
  fn = losses.LOSSES[name]
  return fn(emb=jnp.asarray(emb, jnp.float32), emb_rand=jnp.asarray(emb_rand, jnp.float32),
            species_emb=jnp.asarray(w, jnp.float32), labels=jnp.asarray(labels), key=key,
            pos_weight=pos_weight, block_size=block_size)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_matches_float64_formula(name, seed):
  emb, emb_rand, w, labels = random_inputs(seed, scale=2.0)
  key = jax.random.key(seed)
  other = slds_other(key, labels, w.shape[0])
  assert np.all(other != labels) and other.max() < w.shape[0]
  expected = numpy_loss(name, emb, emb_rand, w, labels, other, 7.5)
  got = float(jax_loss(name, emb, emb_rand, w, labels, key, 7.5))
  np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-6)


def test_hand_computed_an_full():
  # One location, two species, zero embeddings: every p = 1/2, so each entry costs log 2
  # and the observed one pos_weight·log 2: ((λ + 1)·log 2)/2 for data + log 2 for random.
  emb = np.zeros((1, 3)); w = np.ones((2, 3))
  got = float(jax_loss("an_full", emb, emb, w, np.array([1]), None, 4.0))
  np.testing.assert_allclose(got, (5 * np.log(2)) / 2 + np.log(2), rtol=1e-6)


@pytest.mark.parametrize("name", ["an_full", "me_full"])
@pytest.mark.parametrize("block", [1, 5, 8, 36, 37, 64])
def test_blocked_head_equals_unblocked(name, block):
  emb, emb_rand, w, labels = random_inputs(3, scale=1.5)
  args = [jnp.asarray(a, jnp.float32) for a in (emb, emb_rand, w)]

  def f(e, er, ww, blk):
    return losses.LOSSES[name](emb=e, emb_rand=er, species_emb=ww, labels=jnp.asarray(labels),
                               key=None, pos_weight=3.0, block_size=blk)
  v0, g0 = jax.value_and_grad(f, argnums=(0, 1, 2))(*args, 0)
  v1, g1 = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)), static_argnums=3)(*args, block)
  np.testing.assert_allclose(v1, v0, rtol=1e-5)
  for a, b in zip(g1, g0):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  # The primal (no gradient) path of the blocked kernel gives the same value.
  np.testing.assert_allclose(jax.jit(f, static_argnums=3)(*args, block), v0, rtol=1e-5)


def test_full_head_gradient_matches_float64_numpy():
  # d/dz of Σ softplus(z) is σ(z): dE = σ(Z) W, dW = σ(Z)ᵀ E, computed here in float64.
  emb, _, w, _ = random_inputs(4)
  z = emb @ w.T
  d_emb, d_w = jax.grad(lambda e, ww: losses.full_head_sum(
      e, ww, losses.assume_negative_term, block_size=4), argnums=(0, 1))(
          jnp.asarray(emb, jnp.float32), jnp.asarray(w, jnp.float32))
  np.testing.assert_allclose(d_emb, sigmoid(z) @ w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(d_w, sigmoid(z).T @ emb, rtol=1e-5, atol=1e-6)


def test_max_entropy_derivative_matches_autodiff():
  z = jnp.linspace(-30, 30, 101)
  _, deriv = losses.max_entropy_term(z)
  auto = jax.vmap(jax.grad(lambda t: losses.max_entropy_term(t)[0]))(z)
  np.testing.assert_allclose(deriv, auto, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
@pytest.mark.parametrize("block", [0, 7])
def test_gradients_finite_for_extreme_logits(name, block):
  emb, emb_rand, w, labels = random_inputs(5, scale=1e4)  # logits of order ±1e4
  args = [jnp.asarray(a, jnp.float32) for a in (emb, emb_rand, w)]
  value, grads = jax.value_and_grad(
      lambda e, er, ww: losses.LOSSES[name](emb=e, emb_rand=er, species_emb=ww,
                                            labels=jnp.asarray(labels), key=jax.random.key(0),
                                            pos_weight=2048.0, block_size=block),
      argnums=(0, 1, 2))(*args)
  assert np.isfinite(value)
  for g in grads:
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_difference_from_reference_form_is_bounded(name):
  """Elementwise, −log p and −log(p + ε) differ by log(1 + ε/p); for the entropy by at most 2ε.

  For moderate logits (|z| ≤ 6, p ≥ 0.0025) the losses differ by less than 1e-4 relative.
  """
  emb, emb_rand, w, labels = random_inputs(6, scale=1.0)
  key = jax.random.key(6)
  other = slds_other(key, labels, w.shape[0])
  z_all = np.concatenate([emb @ w.T, emb_rand @ w.T])
  assert np.abs(z_all).max() < 6
  ours = numpy_loss(name, emb, emb_rand, w, labels, other, 2048.0)
  ref = reference_form_loss(name, emb, emb_rand, w, labels, other, 2048.0)
  p = sigmoid(z_all)
  elementwise_bound = np.log1p(EPS / np.minimum(p, 1 - p)).max() if name.startswith("an") else 2 * EPS
  weight = 2048.0 + 2 if name.endswith("full") or name == "gp" else 2
  assert abs(ours - ref) <= weight * elementwise_bound
  assert ours >= ref if name.startswith("an") else True  # −log p ≥ −log(p + ε)
  assert abs(ours - ref) / abs(ours) < 1e-4


def test_reference_form_saturates_where_logit_form_does_not():
  # A confidently wrong positive (p ≈ e^-20): the reference loss stops at −log(1e-5) ≈ 11.5 and
  # its gradient vanishes; the logit form keeps a gradient of about −1.
  z = jnp.float32(-20.0)
  ref_grad = jax.grad(lambda t: -jnp.log(jax.nn.sigmoid(t) + EPS))(z)
  ours_grad = jax.grad(losses.neg_log_sigmoid)(z)
  assert abs(float(ref_grad)) < 1e-3
  np.testing.assert_allclose(float(ours_grad), -1.0, rtol=1e-6)


def test_unknown_loss_name():
  from ecorep.errors import ConfigError
  with pytest.raises(ConfigError, match="unknown loss 'an_fulll'"):
    losses.get_loss("an_fulll")
  assert losses.get_loss("an_full_me")[0] == "me_full"


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_shape_contract_is_asserted(name):
  """A (B, 1) label column would broadcast into a (B, B) loss without these (chex) checks."""
  b, d, s = 6, 4, 5
  emb, emb_rand = jnp.ones((b, d)), jnp.ones((b, d))
  species_emb = jnp.ones((s, d))
  labels = jnp.arange(b) % s
  args = dict(emb=emb, emb_rand=emb_rand, species_emb=species_emb, key=jax.random.key(0),
              pos_weight=2.0, block_size=0)
  assert np.isfinite(losses.LOSSES[name](labels=labels, **args))
  bad = [dict(labels=labels[:, None]), dict(labels=labels[:-1]),
         dict(labels=labels.astype(jnp.float32)),
         dict(labels=labels, species_emb=jnp.ones((s, d + 1))), dict(labels=labels, emb=emb[0])]
  if name in losses.USES_RANDOM_LOCATIONS:
    bad.append(dict(labels=labels, emb_rand=emb_rand[:-1]))
  for change in bad:
    with pytest.raises(AssertionError):
      losses.LOSSES[name](**{**args, **change})
    with pytest.raises(AssertionError):  # shapes are static: the check runs while tracing
      jax.jit(lambda kw: losses.LOSSES[name](**kw))({**args, **change, "key": args["key"]})
