"""Presence-only losses of SINR ("assume negative" and maximum-entropy families).

All terms are computed from logits z: −log σ(z) = softplus(−z), −log(1 − σ(z)) = softplus(z),
and the Bernoulli entropy H(σ(z)) = σ(z)·softplus(−z) + σ(−z)·softplus(z). The reference computes
−log(p + 1e-5) on probabilities instead; the two agree to within log(1 + 1e-5/p) (below 1e-3 for
p > 0.01) and differ only where the reference saturates (p ≲ 1e-5): there its gradient vanishes,
while the logit form keeps pushing a confidently wrong prediction (tests/sinr/test_losses.py).

Every loss has the keyword signature
  loss(*, emb, emb_rand, species_emb, labels, key, pos_weight, block_size) -> scalar
with `emb` (B, D) embeddings of the observed locations, `emb_rand` (B, D) embeddings of random
locations (None for the SLDS losses, which do not use them), `species_emb` (S, D) the head,
`labels` (B,) class indices, `key` a PRNG key (SLDS draws its negative species with it).
`gp` (the geo prior's L_GP) also takes `photographer_emb` (U, D) and `photographers` (B,).
These shapes are asserted (chex) on entry: a mis-shaped `labels` such as (B, 1) would otherwise
broadcast into a wrong loss without an error. The checks read static shapes, so they cost nothing
under jit.
"""
from __future__ import annotations

import functools
from typing import Callable

import chex
import jax
import jax.numpy as jnp

from ecorep.errors import ConfigError


def neg_log_sigmoid(z):
  """−log σ(z)."""
  return jax.nn.softplus(-z)


def neg_log_one_minus_sigmoid(z):
  """−log(1 − σ(z))."""
  return jax.nn.softplus(z)


def bernoulli_entropy(z):
  """H(σ(z)) in nats."""
  return jax.nn.sigmoid(z) * jax.nn.softplus(-z) + jax.nn.sigmoid(-z) * jax.nn.softplus(z)


# Loss terms for unobserved (species, location) pairs: value and derivative with respect to z.
# The blocked full-head kernel needs the derivative in closed form.
def assume_negative_term(z):
  return jax.nn.softplus(z), jax.nn.sigmoid(z)


def max_entropy_term(z):
  # −H(σ(z)); d(−H)/dz = z·σ(z)·σ(−z) since dH/dp = log((1 − p)/p) = −z.
  p, q = jax.nn.sigmoid(z), jax.nn.sigmoid(-z)
  return -(p * jax.nn.softplus(-z) + q * jax.nn.softplus(z)), z * p * q


Term = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def full_head_sum(emb: jax.Array, species_emb: jax.Array, term: Term, block_size: int = 0):
  """Σ over all rows and species of term(emb · species_embᵀ).

  With `block_size` > 0 the species are visited in blocks inside one scan that also forms the
  gradients (the derivative of each term is local), so the (rows × species) logit matrix is never
  materialised: the three head matmuls run on cache-sized tiles, and memory stays O(rows·block).
  `block_size` = 0 computes the whole matrix and lets autodiff do the rest.
  """
  if not block_size or block_size >= species_emb.shape[0]:
    return jnp.sum(term(emb @ species_emb.T)[0])
  return _blocked_sum(emb, species_emb, term, int(block_size))


def _blocked_sum_and_grads(emb, species_emb, term, block_size, with_grads):
  num_species, dim = species_emb.shape
  num_blocks = -(-num_species // block_size)
  pad = num_blocks * block_size - num_species
  # Zero rows for padding: their logits are 0, so they add term(0) per row (subtracted below) and,
  # having zero weights, nothing to the embedding gradient.
  blocks = jnp.pad(species_emb, ((0, pad), (0, 0))).reshape(num_blocks, block_size, dim)

  def body(carry, w):
    total, d_emb = carry
    value, deriv = term(emb @ w.T)
    total = total + jnp.sum(value)
    if not with_grads:
      return (total, d_emb), None
    return (total, d_emb + deriv @ w), deriv.T @ emb

  init = (jnp.zeros((), emb.dtype), jnp.zeros_like(emb) if with_grads else None)
  (total, d_emb), d_blocks = jax.lax.scan(body, init, blocks)
  total = total - pad * emb.shape[0] * term(jnp.zeros((), emb.dtype))[0]
  if not with_grads:
    return total, None, None
  return total, d_emb, d_blocks.reshape(num_blocks * block_size, dim)[:num_species]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _blocked_sum(emb, species_emb, term, block_size):
  return _blocked_sum_and_grads(emb, species_emb, term, block_size, with_grads=False)[0]


def _blocked_sum_fwd(emb, species_emb, term, block_size):
  total, d_emb, d_species = _blocked_sum_and_grads(emb, species_emb, term, block_size, True)
  return total, (d_emb, d_species)


def _blocked_sum_bwd(term, block_size, residuals, g):
  d_emb, d_species = residuals
  return g * d_emb, g * d_species


_blocked_sum.defvjp(_blocked_sum_fwd, _blocked_sum_bwd)


def _pair_logits(emb, species_emb, species):
  """z_i = emb_i · species_emb[species_i] without forming the full logit matrix."""
  return jnp.sum(emb * species_emb[species], axis=-1)


def _check_shapes(emb, emb_rand, species_emb, labels):
  """emb (B, D), emb_rand (B, D) or None, species_emb (S, D), labels (B,) integer."""
  chex.assert_rank([emb, species_emb, labels], [2, 2, 1])
  chex.assert_axis_dimension(species_emb, 1, emb.shape[1])
  chex.assert_shape(labels, (emb.shape[0],))
  chex.assert_type(labels, int)
  if emb_rand is not None:
    chex.assert_equal_shape([emb, emb_rand])


def _ssdl(*, emb, emb_rand, species_emb, labels, key=None, pos_weight=None, block_size=0,
          term: Term):
  """−log ŷ_j(x) + term(ŷ_j(r)): the observed species at the data and at a random location."""
  del key, pos_weight, block_size
  _check_shapes(emb, emb_rand, species_emb, labels)
  z_pos = _pair_logits(emb, species_emb, labels)
  z_rand = _pair_logits(emb_rand, species_emb, labels)
  return jnp.mean(neg_log_sigmoid(z_pos)) + jnp.mean(term(z_rand)[0])


def _slds(*, emb, emb_rand=None, species_emb, labels, key, pos_weight=None, block_size=0,
          term: Term):
  """−log ŷ_j(x) + term(ŷ_j'(x)), j' a uniformly random species other than j."""
  del emb_rand, pos_weight, block_size
  _check_shapes(emb, None, species_emb, labels)
  other = jax.random.randint(key, labels.shape, 0, species_emb.shape[0] - 1)
  other = other + (other >= labels)
  z_pos = _pair_logits(emb, species_emb, labels)
  z_neg = _pair_logits(emb, species_emb, other)
  return jnp.mean(neg_log_sigmoid(z_pos)) + jnp.mean(term(z_neg)[0])


def _full(*, emb, emb_rand, species_emb, labels, key=None, pos_weight=2048.0, block_size=0,
          term: Term):
  """Mean over the B×S data entries [λ·(−log ŷ) at the observed species, term elsewhere] plus the
  mean over the B×S random-location entries of term."""
  del key
  _check_shapes(emb, emb_rand, species_emb, labels)
  batch, num_species = emb.shape[0], species_emb.shape[0]
  total = full_head_sum(jnp.concatenate([emb, emb_rand], axis=0), species_emb, term, block_size)
  # The head sum counted term() at the observed entries; swap in the weighted positive term.
  z_pos = _pair_logits(emb, species_emb, labels)
  total = total + jnp.sum(pos_weight * neg_log_sigmoid(z_pos) - term(z_pos)[0])
  return total / (batch * num_species)


def _gp(*, emb, emb_rand, species_emb, labels, key=None, pos_weight=None, block_size=0,
        photographer_emb=None, photographers=None):
  """L_GP of the geo prior (Mac Aodha et al. 2019; seed Eqs. 7.7–7.10), λ = number of classes:

    L_o_loc = mean over B×C of [λ·1(y)·(−log σ(f(x)·O_y)) + 1(not y)·(−log(1 − σ(f(x)·O_c)))]
              + mean over B×C of −log(1 − σ(f(r)·O_c))          (AN-full with λ = C)
    L_p_loc = mean over B of −log σ(f(x)·P_u) − log(1 − σ(f(r)·P_u))
    L_p_o   = mean over B×C of [λ·1(y)·(−log σ(P_u·O_y)) + 1(not y)·(−log(1 − σ(P_u·O_c)))]

  with u the photographer of each observation (`photographers` (B,), rows of
  `photographer_emb` (U, D)). Without photographers (SINR batches carry none: the coordinates-only
  row of Table 8.1) only L_o_loc remains. `pos_weight` is ignored: λ is the class count, as the
  reference sets it. The data, random-location and photographer rows go through the species head
  in one blocked scan, so with `block_size` > 0 no (B × C) matrix exists, as for an_full.
  """
  del key, pos_weight
  _check_shapes(emb, emb_rand, species_emb, labels)
  batch, num_classes = emb.shape[0], species_emb.shape[0]
  lam = float(num_classes)
  rows, users = [emb, emb_rand], None
  if photographer_emb is not None:
    chex.assert_rank(photographer_emb, 2)
    chex.assert_axis_dimension(photographer_emb, 1, emb.shape[1])
    chex.assert_shape(photographers, (batch,))
    chex.assert_type(photographers, int)
    users = photographer_emb[photographers]
    rows.append(users)
  total = full_head_sum(jnp.concatenate(rows, axis=0), species_emb, assume_negative_term,
                        block_size)
  # The head sum counted −log(1 − σ) at every observed pair; swap in the weighted positive term.
  for e in ([emb] if users is None else [emb, users]):
    z_pos = _pair_logits(e, species_emb, labels)
    total = total + jnp.sum(lam * neg_log_sigmoid(z_pos) - neg_log_one_minus_sigmoid(z_pos))
  loss = total / (batch * num_classes)
  if users is not None:
    loss = loss + jnp.mean(neg_log_sigmoid(jnp.sum(users * emb, axis=-1))) + jnp.mean(
        neg_log_one_minus_sigmoid(jnp.sum(users * emb_rand, axis=-1)))
  return loss


LOSSES = {
    "an_ssdl": functools.partial(_ssdl, term=assume_negative_term),
    "an_slds": functools.partial(_slds, term=assume_negative_term),
    "an_full": functools.partial(_full, term=assume_negative_term),
    "me_ssdl": functools.partial(_ssdl, term=max_entropy_term),
    "me_slds": functools.partial(_slds, term=max_entropy_term),
    "me_full": functools.partial(_full, term=max_entropy_term),
    "gp": _gp,
}
# Reference names for the maximum-entropy losses.
_ALIASES = {"an_full_me": "me_full", "an_ssdl_me": "me_ssdl", "an_slds_me": "me_slds"}
# Losses that need a forward pass over random locations.
USES_RANDOM_LOCATIONS = frozenset({"an_ssdl", "an_full", "me_ssdl", "me_full", "gp"})


def get_loss(name: str) -> tuple[str, Callable]:
  name = _ALIASES.get(name, name)
  if name not in LOSSES:
    raise ConfigError(f"unknown loss '{name}'; choose one of {', '.join(sorted(LOSSES))}",
                      field="train.loss")
  return name, LOSSES[name]
