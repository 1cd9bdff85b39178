"""L_GP (seed Eqs. 7.7–7.10): against a float64 numpy transcription of the reference's dense form,
a hand-computed case, blocked vs unblocked values and gradients, and no (batch × classes) array in
the blocked program."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sinr_jax import losses


def softplus(z):
  return np.logaddexp(0.0, z)


def numpy_gp(emb, emb_rand, w, labels, users=None, user_ids=None):
  """The reference's embedding_loss (full_loss_user) in float64, −log σ(z) = softplus(−z)."""
  b, c = len(labels), w.shape[0]
  rows = np.arange(b)
  z, z_rand = emb @ w.T, emb_rand @ w.T
  loss_pos = softplus(z)
  loss_pos[rows, labels] = c * softplus(-z[rows, labels])
  loss = loss_pos.mean() + softplus(z_rand).mean()
  if users is None:
    return loss
  u = users[user_ids]
  z_uc = u @ w.T
  user_class = softplus(z_uc)
  user_class[rows, labels] = c * softplus(-z_uc[rows, labels])
  return (loss + softplus(-(u * emb).sum(1)).mean() + softplus((u * emb_rand).sum(1)).mean()
          + user_class.mean())


def inputs(seed, batch=12, dim=6, classes=17, num_users=5):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal((batch, dim)), rng.standard_normal((batch, dim)),
          rng.standard_normal((classes, dim)) / np.sqrt(dim), rng.integers(0, classes, batch),
          rng.standard_normal((num_users, dim)), rng.integers(0, num_users, batch))


def gp(emb, emb_rand, w, labels, users=None, user_ids=None, block=0):
  return losses.LOSSES["gp"](
      emb=emb, emb_rand=emb_rand, species_emb=w, labels=jnp.asarray(labels), key=None,
      pos_weight=123.0, block_size=block, photographer_emb=users,
      photographers=None if user_ids is None else jnp.asarray(user_ids))


def _value_and_grads(emb, emb_rand, w, users, labels, ids, block):
  return jax.value_and_grad(lambda e, er, ww, uu: gp(e, er, ww, labels, uu, ids, block),
                            argnums=(0, 1, 2, 3))(emb, emb_rand, w, users)


@jax.jit
def _everything(emb, emb_rand, w, users, labels, ids):
  """One compiled program: unblocked and blocked (5) values with gradients, and the value
  without photographers."""
  return (_value_and_grads(emb, emb_rand, w, users, labels, ids, 0),
          _value_and_grads(emb, emb_rand, w, users, labels, ids, 5),
          gp(emb, emb_rand, w, labels))


@pytest.fixture(scope="module")
def case():
  emb, emb_rand, w, labels, users, ids = inputs(0, batch=16)
  f32 = [jnp.asarray(a, jnp.float32) for a in (emb, emb_rand, w, users)]
  return (emb, emb_rand, w, labels, users, ids), f32, _everything(*f32, labels, ids)


def test_matches_float64_reference_blocked_or_not(case):
  (emb, emb_rand, w, labels, users, ids), _, ((v0, g0), (v5, g5), plain) = case
  np.testing.assert_allclose(float(v0), numpy_gp(emb, emb_rand, w, labels, users, ids),
                             rtol=2e-6)
  np.testing.assert_allclose(float(plain), numpy_gp(emb, emb_rand, w, labels), rtol=2e-6)
  np.testing.assert_allclose(v5, v0, rtol=1e-5)
  for a, b in zip(g5, g0):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_reference_transcription_on_a_hand_computed_case():
  # Every logit 0, every p = 1/2, each entry log 2: with C = 2 classes (λ = 2) the data term is
  # (2 + 1)·log 2 / 2 per row, the random term log 2, the photographer–location terms 2·log 2 and
  # the photographer–class term again (2 + 1)·log 2 / 2.
  z = np.zeros((3, 4))
  got = numpy_gp(z, z, np.ones((2, 4)), np.array([0, 1, 1]), np.zeros((4, 4)),
                 np.array([0, 3, 3]))
  np.testing.assert_allclose(got, 6 * np.log(2), rtol=1e-12)


def test_batch_sharded_over_eight_devices_gives_the_same_loss_and_gradients(case):
  """The batch split over the 8-device mesh (embeddings, labels, photographer ids) and the head
  and P replicated, as in training: the same value and gradients as on one device."""
  from jax.sharding import NamedSharding, PartitionSpec as P
  from ecorep.mesh import data_mesh
  (_, _, _, labels, _, ids), (emb, emb_rand, w, users), ((v0, g0), _, _) = case
  mesh = data_mesh()
  rows, rep = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  sharded = jax.jit(lambda e, er, ww, uu, y, u: _value_and_grads(e, er, ww, uu, y, u, 5),
                    in_shardings=(rows, rows, rep, rep, rows, rows))
  v8, g8 = sharded(emb, emb_rand, w, users, jnp.asarray(labels), jnp.asarray(ids))
  assert jax.device_count() == 8
  np.testing.assert_allclose(v8, v0, rtol=1e-5)
  for a, b in zip(g8, g0):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _avals(jaxpr):
  for eqn in jaxpr.eqns:
    for v in (*eqn.invars, *eqn.outvars):
      if hasattr(v, "aval") and hasattr(v.aval, "shape"):
        yield v.aval.shape
    for p in eqn.params.values():
      for sub in (p if isinstance(p, (list, tuple)) else [p]):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          yield from _avals(inner)


@pytest.mark.parametrize("block,has_matrix", [(8, False), (0, True)])
def test_no_batch_by_class_matrix_when_blocked(block, has_matrix):
  batch, classes, dim = 24, 40, 4
  emb, emb_rand, w, labels, users, ids = [jnp.asarray(a, jnp.float32) if a.dtype.kind == "f"
                                          else a for a in inputs(2, batch, dim, classes, 7)]
  program = jax.make_jaxpr(jax.value_and_grad(
      lambda e, er, ww, uu: gp(e, er, ww, labels, uu, ids, block), argnums=(0, 1, 2, 3)))(
          emb, emb_rand, w, users)
  largest = max(int(np.prod(s)) for s in _avals(program.jaxpr))
  assert (largest >= batch * classes) == has_matrix, largest


def test_photographer_shapes_are_asserted():
  emb, emb_rand, w, labels, users, ids = [jnp.asarray(a, jnp.float32) if a.dtype.kind == "f"
                                          else a for a in inputs(3)]
  with pytest.raises(AssertionError):
    gp(emb, emb_rand, w, labels, users, ids[:-1])
  with pytest.raises(AssertionError):
    gp(emb, emb_rand, w, labels, users[:, :-1], ids)
