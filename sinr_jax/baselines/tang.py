"""Tang et al. (ICCV 2015) baseline of seed Table 7.1: location features fed with the image
classifier's features into a trained output layer.

  logits(I, x) = φ(I)·W + Σ_r T_r[cell_r(x)] + b

φ(I) is the classifier's feature vector, or, when the classifier file has none, its
log-probabilities over all classes clipped at log 1e-3 and shifted by −log 1e-3 (so a class
outside an image's candidates contributes exactly 0; unshifted, Adam's per-weight steps on the
large constant floor scramble the logits); then W starts at the identity, so training starts from
the classifier's own ranking. The location features are
one-hot H3 cells at resolutions 0, 1 and 2 (Tang et al.'s multi-scale "GPS encoding"; cells not
seen in training and images without a location share one "unknown" row per resolution).
Softmax cross-entropy + l2/2·(‖W − W₀‖² + Σ‖T_r‖²), Adam, trained by the shared runtime
(ecorep.trainer, in memory) on images the classifier labelled that are not test images.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ecorep import trainer
from ecorep.mesh import data_mesh, replicated
from ecorep.pipeline import batch_iterator, gather_rows
from ecorep.sampler import EpochSampler
from sinr_jax import grid as h3grid
from sinr_jax.errors import SinrInputError

RESOLUTIONS = (0, 1, 2)
L2_GRID = (1e-5, 1e-4, 1e-3)
FLOOR = 1e-3


def classifier_features(dense_log_probs: np.ndarray) -> np.ndarray:
  """φ(I) from (N, C) log-probabilities: max(log p, log FLOOR) − log FLOOR, in [0, 6.9]."""
  return (np.maximum(dense_log_probs, np.log(FLOOR)) - np.log(FLOOR)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class CellVocabulary:
  cells: tuple[np.ndarray, ...]   # per resolution: sorted cells seen in training

  @classmethod
  def fit(cls, lonlat: np.ndarray, resolutions: Sequence[int] = RESOLUTIONS) -> "CellVocabulary":
    known = np.isfinite(lonlat).all(1)
    return cls(tuple(np.unique(h3grid.lonlat_to_cells(lonlat[known], r)) if known.any()
                     else np.zeros(0, np.uint64) for r in resolutions))

  @property
  def sizes(self) -> tuple[int, ...]:
    return tuple(len(c) + 1 for c in self.cells)  # + the unknown row

  def indices(self, lonlat: np.ndarray) -> np.ndarray:
    """(N, R) int32 row of each image's cell per resolution (unknown: the last row)."""
    out = np.empty((len(lonlat), len(self.cells)), np.int32)
    known = np.isfinite(lonlat).all(1)
    for j, (cells, res) in enumerate(zip(self.cells, RESOLUTIONS)):
      out[:, j] = len(cells)
      if known.any() and len(cells):
        q = h3grid.lonlat_to_cells(lonlat[known], res)
        at = np.minimum(np.searchsorted(cells, q), len(cells) - 1)
        out[known, j] = np.where(cells[at] == q, at, len(cells))
    return out


@jax.jit
def logits(params, feats, loc):
  out = feats @ params["w"] + params["b"]
  for j, table in enumerate(params["tables"]):
    out = out + table[loc[:, j]]
  return out


def _init(num_features: int, num_classes: int, sizes, identity: bool) -> dict:
  # numpy: building the start on the host compiles nothing
  w = np.eye(num_features, num_classes) if identity else np.zeros((num_features, num_classes))
  return {"w": w.astype(np.float32), "b": np.zeros(num_classes, np.float32),
          "tables": [np.zeros((s, num_classes), np.float32) for s in sizes]}


def _step_fn(tx, w0):
  def step(state, batch, key):
    del key

    def objective(params):
      ce = optax.softmax_cross_entropy_with_integer_labels(
          logits(params, batch["feats"], batch["loc"]), batch["label"]).mean()
      reg = jnp.sum((params["w"] - w0) ** 2) + sum(jnp.sum(t ** 2) for t in params["tables"])
      return ce + 0.5 * state.extra["l2"] * reg
    loss, grads = jax.value_and_grad(objective)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), {"loss": loss}
  return step


class TangBaseline:
  name = "tang"

  def __init__(self, num_classes: int, *, epochs: int = 20, lr: float = 1e-2,
               batch_size: int = 256, seed: int = 0, mesh=None):
    self.num_classes, self.epochs, self.lr = num_classes, epochs, lr
    self.batch_size, self.seed = batch_size, seed
    self.mesh = data_mesh() if mesh is None else mesh
    self.vocab = self.params = None

  def fit(self, feats: np.ndarray, lonlat: np.ndarray, labels: np.ndarray, *,
          identity: bool, l2_grid: Sequence[float] = L2_GRID,
          holdout: float = 0.2) -> dict[str, float]:
    """Chooses l2 on a held-out part of these images, then keeps that fit; returns the held-out
    top-1 per l2."""
    n = len(labels)
    devices = self.mesh.devices.size
    rng = np.random.default_rng(self.seed)
    order = rng.permutation(n)
    n_hold = int(round(holdout * n))
    fit_rows, hold_rows = order[n_hold:], order[:n_hold]
    batch = min(self.batch_size, len(fit_rows)) // devices * devices
    if batch == 0 or n_hold == 0:
      raise SinrInputError(f"{n} images are too few to train the Tang et al. layer",
                           field="tang")
    self.vocab = CellVocabulary.fit(lonlat[fit_rows])
    loc = self.vocab.indices(lonlat)
    arrays = {"feats": feats[fit_rows].astype(np.float32), "loc": loc[fit_rows],
              "label": labels[fit_rows].astype(np.int32)}
    sampler = EpochSampler(len(fit_rows), batch, seed=self.seed)
    params0 = _init(feats.shape[1], self.num_classes, self.vocab.sizes, identity)
    tx = optax.adam(self.lr)
    step = trainer.compile_step(_step_fn(tx, params0["w"]))   # one compilation for every l2
    start = jax.jit(lambda p, l2: trainer.new_state(p, tx, extra={"l2": l2}),
                    out_shardings=replicated(self.mesh))
    scores, fits = {}, {}
    for l2 in l2_grid:
      state = start(params0, np.float32(l2))  # a fresh state: each fit donates its own
      task = trainer.Task(
          name="tang", state=state, step=step,
          batches=lambda s: batch_iterator(sampler, gather_rows(arrays), state=s),
          total_steps=self.epochs * sampler.steps_per_epoch,
          steps_per_epoch=sampler.steps_per_epoch, batch_size=batch,
          key=jax.random.key(self.seed), mesh=self.mesh)
      big = 1 << 30
      result = trainer.fit(task, None, trainer.Options(log_every=big, checkpoint_every=big,
                                                       progress=False))
      fits[l2] = jax.device_get(result.state.params)
      pred = np.asarray(logits(fits[l2], feats[hold_rows], loc[hold_rows])).argmax(1)
      scores[f"l2={l2:g}"] = float(np.mean(pred == labels[hold_rows]))
    best = max(l2_grid, key=lambda l2: scores[f"l2={l2:g}"])
    self.params, self.l2 = fits[best], best
    return scores

  def logits(self, feats: np.ndarray, lonlat: np.ndarray) -> np.ndarray:
    return np.asarray(logits(self.params, jnp.asarray(feats, jnp.float32),
                             jnp.asarray(self.vocab.indices(lonlat))))
