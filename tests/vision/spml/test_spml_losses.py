"""SPML losses against float64 numpy formulas (values and gradients), IUN by its definition, and
the bound on the difference from the reference's −log(p + 1e-5)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.errors import VisionInputError
from vision_jax.spml import losses

B, L, K = 12, 7, 2.3


def sig(z):
  return 1.0 / (1.0 + np.exp(-z))


def nlp(z):   # −log p, float64
  return -np.log(sig(z))


def nl1mp(z):  # −log(1 − p), float64
  return -np.log(1.0 - sig(z))


def reg(p, k, w):
  return ((np.sum(p.sum(1) * w) / w.sum() - k) / p.shape[1]) ** 2


def numpy_loss(name, z, obs, true, w, est=None, eps=0.1):
  """The definitions of the seed's chapter 5 (DESIGN §1) written out entry by entry."""
  pos, neg = obs == 1, obs == -1
  m = np.zeros_like(z)
  if name == "bce":
    m = np.where(true == 1, nlp(z), nl1mp(z))
  elif name == "bce_ls":
    m = np.where(true == 1, (1 - eps) * nlp(z) + eps * nl1mp(z),
                 (1 - eps) * nl1mp(z) + eps * nlp(z))
  elif name == "iun":
    m = np.where(pos, nlp(z), 0.0) + np.where(true == 0, nl1mp(z), 0.0)
  elif name == "iu":
    m = np.where(pos, nlp(z), np.where(neg, nl1mp(z), 0.0))
  elif name == "an":
    m = np.where(pos, nlp(z), nl1mp(z))
  elif name == "an_ls":
    m = np.where(pos, (1 - eps) * nlp(z) + eps * nl1mp(z), (1 - eps) * nl1mp(z) + eps * nlp(z))
  elif name == "wan":
    m = np.where(pos, nlp(z), nl1mp(z) / (z.shape[1] - 1))
  elif name == "epr":
    m = np.where(pos, nlp(z), 0.0)
  elif name == "me":
    p = sig(z)
    m = np.where(pos, nlp(z), np.where(neg, nl1mp(z), p * np.log(p) + (1 - p) * np.log(1 - p)))
  elif name == "role":
    p, q = sig(z), sig(est)
    m = 0.5 * (np.where(pos, nlp(z), 0) + np.where(pos, nlp(est), 0))
    m += 0.5 * (q * nlp(z) + (1 - q) * nl1mp(z) + p * nlp(est) + (1 - p) * nl1mp(est))
  value = np.sum(m * w[:, None]) / (w.sum() * z.shape[1])
  if name == "epr":
    value += reg(sig(z), K, w)
  if name == "role":
    value += 0.5 * (reg(sig(z), K, w) + reg(sig(est), K, w))
  return value


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  z = rng.normal(0, 3, (B, L))
  est = rng.normal(0, 2, (B, L))
  true = (rng.random((B, L)) < 0.4).astype(np.uint8)
  true[np.arange(B), rng.integers(0, L, B)] = 1
  obs = np.zeros((B, L), np.int8)
  for i in range(B):
    obs[i, rng.choice(np.flatnonzero(true[i]))] = 1
    negs = np.flatnonzero(true[i] == 0)
    if len(negs):
      obs[i, rng.choice(negs)] = -1
  w = np.ones(B)
  w[-3:] = 0.0  # padded rows
  return z, est, obs, true, w


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_loss_matches_float64_formula(name, batch):
  z, est, obs, true, w = batch
  fn = losses.get_loss(name, k=K)
  got, _ = fn(jnp.asarray(z, jnp.float32), jnp.asarray(obs), true=jnp.asarray(true),
              mask=jnp.asarray(w, jnp.float32), est_logits=jnp.asarray(est, jnp.float32))
  want = numpy_loss(name, z, obs, true, w, est)
  np.testing.assert_allclose(float(got), want, rtol=2e-5, atol=1e-6)
  # Padded rows do not count: dropping them gives the same value.
  got_unpadded, _ = fn(jnp.asarray(z[:-3], jnp.float32), jnp.asarray(obs[:-3]),
                       true=jnp.asarray(true[:-3]), est_logits=jnp.asarray(est[:-3], jnp.float32))
  np.testing.assert_allclose(float(got_unpadded), want, rtol=2e-5, atol=1e-6)


def test_role_gradients_use_stop_gradient_cross_terms(batch):
  """Classifier gradient = ∂/∂z of [pos_f + cross_f(q fixed)]/2 + reg_f/2, and the estimator's
  the mirror image: checked against float64 central differences of those halves."""
  z, est, obs, true, w = batch
  fn = losses.get_loss("role", k=K)
  gz, ge = jax.grad(lambda a, b: fn(a, jnp.asarray(obs), mask=jnp.asarray(w, jnp.float32),
                                    est_logits=b)[0], argnums=(0, 1))(
      jnp.asarray(z, jnp.float32), jnp.asarray(est, jnp.float32))
  pos = obs == 1
  n = w.sum() * L

  def half(a, fixed):  # one side of ROLE with the other side's probabilities held fixed
    q = sig(fixed)
    m = 0.5 * (np.where(pos, nlp(a), 0) + q * nlp(a) + (1 - q) * nl1mp(a))
    return np.sum(m * w[:, None]) / n + 0.5 * reg(sig(a), K, w)

  for grad, a, fixed in ((gz, z, est), (ge, est, z)):
    fd = np.zeros_like(a)
    h = 1e-6
    for i in range(B):
      for j in range(L):
        d = np.zeros_like(a)
        d[i, j] = h
        fd[i, j] = (half(a + d, fixed) - half(a - d, fixed)) / (2 * h)
    np.testing.assert_allclose(np.asarray(grad), fd, rtol=2e-3, atol=2e-7)


def test_iun_uses_true_negatives_unlike_the_reference(batch):
  """The reference's IUN compares {0, 1} true labels with −1, so its negative term is empty;
  ours adds −log(1 − p) on every true negative (and so differs from EPR's positive term)."""
  z, _, obs, true, w = batch
  zj, oj = jnp.asarray(z, jnp.float32), jnp.asarray(obs)
  iun, _ = losses.iun(zj, oj, true=jnp.asarray(true))
  positives_only = np.sum(np.where(obs == 1, nlp(z), 0.0)) / z.size
  negatives = np.sum(np.where(true == 0, nl1mp(z), 0.0)) / z.size
  np.testing.assert_allclose(float(iun), positives_only + negatives, rtol=1e-5)
  assert negatives > 0.1


def test_stable_forms_bound_the_reference_log_eps():
  """Ours: −log σ(z); reference: −log(σ(z) + 1e-5). Per entry 0 ≤ ours − ref ≤ 1e-5/p, so the
  AN loss differs by at most the mean of 1e-5/p over its terms."""
  z = np.linspace(-9, 9, 73).reshape(-1, 1) * np.ones((1, 4))
  obs = np.zeros(z.shape, np.int8)
  obs[::2, 0] = 1
  p = sig(z)
  ref_mtx = np.where(obs == 1, -np.log(p + 1e-5), -np.log(1 - p + 1e-5))
  ours, _ = losses.an(jnp.asarray(z, jnp.float32), jnp.asarray(obs))
  term_p = np.where(obs == 1, p, 1 - p)
  bound = np.mean(1e-5 / term_p)
  diff = float(ours) - ref_mtx.mean()
  assert -1e-6 <= diff <= bound + 1e-6
  # Entry-wise, in float64: the bound holds and is attained to first order.
  d = nlp(z) - (-np.log(p + 1e-5))
  assert np.all(d >= 0) and np.all(d <= 1e-5 / p)
  # At a confidently wrong prediction the reference saturates (cap log(1e5) ≈ 11.5), ours not.
  assert float(losses.an(jnp.full((1, 1), -30.0), jnp.ones((1, 1), jnp.int8))[0]) > 29.0


def test_unknown_loss_and_missing_k():
  from ecorep.errors import ConfigError
  with pytest.raises(ConfigError, match="unknown SPML loss 'focal'") as e:
    losses.get_loss("focal")
  assert e.value.field == "train.loss"  # the key the config spells (fault 8: was a KeyError)
  with pytest.raises(VisionInputError, match="needs the expected number"):
    losses.get_loss("epr")


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_shape_contract_is_asserted(name):
  z = jnp.zeros((B, L))
  obs = jnp.zeros((B, L), jnp.int8).at[:, 0].set(1)
  full = dict(true=jnp.zeros((B, L), jnp.uint8), mask=jnp.ones((B,)),
              est_logits=jnp.zeros((B, L)))
  fn = losses.get_loss(name, k=K)
  assert np.isfinite(fn(z, obs, **full)[0])
  bad = [(z[:, :-1], obs, full), (z, obs[:-1], full), (z[0], obs[0], full),
         (z, obs, {**full, "mask": jnp.ones((B, 1))})]
  if losses.needs_full_labels(name):
    bad.append((z, obs, {**full, "true": full["true"][:, :-1]}))
  if losses.needs_estimator(name):
    bad.append((z, obs, {**full, "est_logits": jnp.zeros((B, L + 1))}))
  for logits, observed, kw in bad:
    with pytest.raises(AssertionError):
      fn(logits, observed, **kw)
  if losses.needs_full_labels(name) or losses.needs_estimator(name):
    with pytest.raises(VisionInputError, match="needs"):
      fn(z, obs, mask=None)
