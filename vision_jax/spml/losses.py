"""Single-positive multi-label losses as pure functions of logits.

Every loss is `fn(logits, observed, *, true=None, mask=None, est_logits=None, **hyper)` and
returns `(loss, aux)` where `aux` holds the unweighted parts for logging. Conventions (as the
reference, elijahcole/single-positive-multi-label):
- `observed` (B, L) in {-1: observed negative, 0: unobserved, +1: observed positive};
  `true` (B, L) in {0, 1} (the full labels; only BCE, BCE-LS and IUN read them).
- The per-entry loss matrix is summed and divided by (valid rows) × L ("mean over all N×L
  entries"); the EPR regulariser ((mean over rows of Σ_j p_j) − k)² / L² is added with weight λ.
- `mask` (B,) in {0, 1} marks real rows of a padded batch (None = all real).

Numerics: log p and log(1 − p) are `log_sigmoid(±z)`, exact to float precision, where the
reference computes −log(p + 1e-5). The two differ by log(1 + 1e-5/p) ≤ 1e-5/p per entry: < 1e-4
for p > 0.1, but the reference caps −log p at 11.5 while ours keeps growing (so ours gives a
gradient where the reference's saturates). tests/vision/spml/test_losses.py bounds the difference.

IUN follows its definition (the observed positive + every true negative); the reference compares
the {0, 1} true labels with −1, so its negative term never fires and its "IUN" equals EPR without
the regulariser. IU uses observed positives and observed negatives (draw one negative per row
with `labels.draw_observed(num_neg=1)`).

`get_loss` asserts the shapes on entry (chex; static, free under jit): logits (B, L), and
observed, the full labels (where read) and est_logits (ROLE) of the same shape, mask (B,).
"""
from __future__ import annotations

import difflib
import functools
from typing import Callable

import chex
import jax
import jax.numpy as jnp

from ecorep.errors import ConfigError
from vision_jax.errors import VisionInputError

LS_COEF = 0.1  # label smoothing ε of BCE-LS and AN-LS

# loss name -> (needs full labels, needs the label estimator, uses k)
LOSSES = {
    "bce": (True, False, False),
    "bce_ls": (True, False, False),
    "iun": (True, False, False),
    "iu": (False, False, False),
    "an": (False, False, False),
    "an_ls": (False, False, False),
    "wan": (False, False, False),
    "epr": (False, False, True),
    "role": (False, True, True),
    "me": (False, False, False),
}
# Losses that read observed negatives (the others assert none in the reference).
USES_OBSERVED_NEGATIVES = ("iu",)


def _log_p(z):
  return jax.nn.log_sigmoid(z)


def _log_1mp(z):
  return jax.nn.log_sigmoid(-z)


def _bce_soft(z, q):
  """−[q log σ(z) + (1 − q) log(1 − σ(z))] for soft targets q."""
  return -(q * _log_p(z) + (1.0 - q) * _log_1mp(z))


def _row_weights(mask, batch):
  w = jnp.ones((batch,), jnp.float32) if mask is None else mask.astype(jnp.float32)
  return w, jnp.maximum(jnp.sum(w), 1.0)


def _mean_matrix(loss_mtx, mask):
  """Σ over valid rows and all L columns / (valid rows · L), the reference's normalisation."""
  w, n = _row_weights(mask, loss_mtx.shape[0])
  return jnp.sum(loss_mtx * w[:, None]) / (n * loss_mtx.shape[1])


def expected_positive_reg(probs, k, mask=None):
  """((mean over valid rows of Σ_j p_j) − k)² / L²: the EPR regulariser of the reference."""
  w, n = _row_weights(mask, probs.shape[0])
  k_hat = jnp.sum(jnp.sum(probs, axis=1) * w) / n
  return ((k_hat - k) / probs.shape[1]) ** 2


def _pos(observed):
  return (observed == 1).astype(jnp.float32)


def _neg(observed):
  return (observed == -1).astype(jnp.float32)


def _unobserved(observed):
  return (observed == 0).astype(jnp.float32)


def bce(logits, observed, *, true, mask=None, **_):
  y = true.astype(jnp.float32)
  return _mean_matrix(_bce_soft(logits, y), mask), {}


def bce_ls(logits, observed, *, true, mask=None, ls_coef=LS_COEF, **_):
  y = true.astype(jnp.float32)
  return _mean_matrix(_bce_soft(logits, (1.0 - ls_coef) * y + ls_coef * (1.0 - y)), mask), {}


def iun(logits, observed, *, true, mask=None, **_):
  pos = _pos(observed)
  true_neg = (true == 0).astype(jnp.float32)
  mtx = -pos * _log_p(logits) - true_neg * _log_1mp(logits)
  return _mean_matrix(mtx, mask), {}


def iu(logits, observed, *, mask=None, **_):
  mtx = -_pos(observed) * _log_p(logits) - _neg(observed) * _log_1mp(logits)
  return _mean_matrix(mtx, mask), {}


def an(logits, observed, *, mask=None, **_):
  pos = _pos(observed)
  return _mean_matrix(-pos * _log_p(logits) - (1.0 - pos) * _log_1mp(logits), mask), {}


def an_ls(logits, observed, *, mask=None, ls_coef=LS_COEF, **_):
  pos = _pos(observed)
  target = (1.0 - ls_coef) * pos + ls_coef * (1.0 - pos)
  return _mean_matrix(_bce_soft(logits, target), mask), {}


def wan(logits, observed, *, mask=None, **_):
  pos = _pos(observed)
  gamma = 1.0 / (logits.shape[1] - 1)
  return _mean_matrix(-pos * _log_p(logits) - gamma * (1.0 - pos) * _log_1mp(logits), mask), {}


def epr(logits, observed, *, k, mask=None, epr_weight=1.0, **_):
  main = _mean_matrix(-_pos(observed) * _log_p(logits), mask)
  reg = expected_positive_reg(jax.nn.sigmoid(logits), k, mask)
  return main + epr_weight * reg, {"reg": reg}


def role(logits, observed, *, est_logits, k, mask=None, epr_weight=1.0, **_):
  """ROLE: classifier and label estimator each fit the observed positives, the other's
  (stop-gradient) predictions as soft targets, and the EPR regulariser; the two are averaged."""
  pos = _pos(observed)
  probs, est = jax.nn.sigmoid(logits), jax.nn.sigmoid(est_logits)
  pos_f = -pos * _log_p(logits)
  pos_g = -pos * _log_p(est_logits)
  cross_f = _bce_soft(logits, jax.lax.stop_gradient(est))
  cross_g = _bce_soft(est_logits, jax.lax.stop_gradient(probs))
  reg = 0.5 * (expected_positive_reg(probs, k, mask) + expected_positive_reg(est, k, mask))
  main = _mean_matrix(0.5 * (pos_f + pos_g) + 0.5 * (cross_f + cross_g), mask)
  return main + epr_weight * reg, {"reg": reg}


def me(logits, observed, *, mask=None, me_weight=1.0, **_):
  """Maximum entropy: −log p on observed positives, −H(p) on unobserved labels (pushes them to
  p = 0.5, the most uncertain value, instead of assuming them negative); observed negatives, if
  any, get −log(1 − p). `me_weight` scales the entropy term (1 = the SINR ME-* losses)."""
  pos, neg, unk = _pos(observed), _neg(observed), _unobserved(observed)
  p = jax.nn.sigmoid(logits)
  neg_entropy = p * _log_p(logits) + (1.0 - p) * _log_1mp(logits)  # −H(p) ≤ 0
  mtx = -pos * _log_p(logits) - neg * _log_1mp(logits) + me_weight * unk * neg_entropy
  return _mean_matrix(mtx, mask), {}


_FUNCTIONS = {"bce": bce, "bce_ls": bce_ls, "iun": iun, "iu": iu, "an": an, "an_ls": an_ls,
              "wan": wan, "epr": epr, "role": role, "me": me}


def _checked(name: str, fn: Callable) -> Callable:
  """`fn` behind the shape contract of the module docstring."""
  needs_true, needs_est, _ = LOSSES[name]

  @functools.wraps(fn)
  def loss(logits, observed, *, true=None, mask=None, est_logits=None, **hyper):
    chex.assert_rank(logits, 2)
    chex.assert_equal_shape([logits, observed])
    for arg, needed, what in ((true, needs_true, "true"), (est_logits, needs_est, "est_logits")):
      if needed:
        if arg is None:
          raise VisionInputError(f"loss '{name}' needs {what}=(B, L) array", field=what)
        chex.assert_equal_shape([logits, arg])
    if mask is not None:
      chex.assert_shape(mask, (logits.shape[0],))
    return fn(logits, observed, true=true, mask=mask, est_logits=est_logits, **hyper)
  return loss


def check_loss_name(name: str) -> str:
  """`name` if it is a loss of this family, else a ConfigError naming train.loss."""
  if name not in _FUNCTIONS:
    hint = difflib.get_close_matches(str(name), list(_FUNCTIONS), n=1)
    raise ConfigError(f"unknown SPML loss '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint
                                                       else "")
                      + f"; one of {', '.join(sorted(_FUNCTIONS))}", field="train.loss")
  return name


def get_loss(name: str, *, k: float | None = None, ls_coef: float = LS_COEF,
             epr_weight: float = 1.0, me_weight: float = 1.0) -> Callable:
  """The loss `name` with its hyper-parameters bound: `fn(logits, observed, *, true, mask,
  est_logits) -> (loss, aux)`."""
  check_loss_name(name)
  if LOSSES[name][2] and k is None:
    raise VisionInputError(f"loss '{name}' needs the expected number of positives k",
                           field="train.k")
  return functools.partial(_checked(name, _FUNCTIONS[name]), k=k, ls_coef=ls_coef,
                           epr_weight=epr_weight, me_weight=me_weight)


def needs_full_labels(name: str) -> bool:
  return LOSSES[check_loss_name(name)][0]


def needs_estimator(name: str) -> bool:
  return LOSSES[check_loss_name(name)][1]


def uses_k(name: str) -> bool:
  return LOSSES[check_loss_name(name)][2]
