"""LocationScores: a range model's scores at a fixed, modest set of locations (S&T's surveyed
sites, geo-prior images), embedded once and shared by the evaluators; dense (N, species) blocks.
All-cells AP of models with a linear head goes through the streaming CellScorer instead.

Ranking metrics (AP) use the logits h_φ(f_θ(x)) when the predictor exposes them, as the reference
does: float32 sigmoids saturate at 1.0 for logits above ~17 and would turn distinct scores into
ties. A predictor without a linear species head (e.g. a baseline) is scored by `predict`.
"""
from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ecorep import ranking

_BLOCK_ELEMENTS = 1 << 25  # cells x species per block of scores (128 MB of float32)


def _head(predictor) -> np.ndarray | None:
  """The (S, D) species-embedding matrix of a RangePredictor-like model, or None."""
  params = getattr(predictor, "params", None)
  if isinstance(params, Mapping) and "species_embedding" in params and hasattr(predictor, "embed"):
    return params["species_embedding"]
  return None


@jax.jit
def _logits(emb, w):
  return emb @ w.T


class LocationScores:
  """Scores of one predictor at fixed locations (N, 2), the location embedding computed once."""

  def __init__(self, predictor, lonlat: np.ndarray):
    self.predictor = predictor
    self.lonlat = np.asarray(lonlat, np.float32)
    self.head = _head(predictor)
    self.head_j = None if self.head is None else jnp.asarray(self.head)  # on device once
    self.emb = (None if self.head is None or len(self.lonlat) == 0
                else jnp.asarray(predictor.embed(self.lonlat[:, 0], self.lonlat[:, 1])))

  @property
  def uses_logits(self) -> bool:
    return self.head is not None

  def scores(self, taxa: np.ndarray) -> np.ndarray:
    """(N, len(taxa)) float32 ranking scores: logits, or probabilities without a linear head."""
    taxa = np.asarray(taxa, np.int64)
    if len(self.lonlat) == 0 or len(taxa) == 0:
      return np.zeros((len(self.lonlat), len(taxa)), np.float32)
    if self.head is None:
      return np.asarray(self.predictor.predict(self.lonlat[:, 0], self.lonlat[:, 1], taxa=taxa),
                        np.float32)
    cols = jnp.asarray(self.predictor.columns(taxa))
    return np.asarray(_logits(self.emb, self.head_j[cols]))

  def block_size(self, limit: int = 256) -> int:
    return int(max(1, min(limit, _BLOCK_ELEMENTS // max(len(self.lonlat), 1))))

  def column_ap(self, taxa: np.ndarray, positives: list[np.ndarray]) -> np.ndarray:
    """(len(taxa),) exact AP of every taxon over all N locations (NaN without a positive), from
    dense score blocks: for predictors without a linear head (the streaming scorer needs one).

    `positives[i]` holds the indices of taxon i's positive locations; the rest are negatives.
    Species go through in fixed-size blocks (the last one padded) so one compilation serves all.
    """
    taxa = np.asarray(taxa, np.int64)
    n, out = len(self.lonlat), np.full(len(taxa), np.nan)
    block = self.block_size()
    for start in range(0, len(taxa), block):
      sel = np.arange(start, min(start + block, len(taxa)))
      labels = np.zeros((n, block), bool)
      for j, i in enumerate(sel):
        labels[positives[i], j] = True
      padded = np.concatenate([sel, np.full(block - len(sel), sel[0])])
      ap = ranking.average_precision_columns(labels, self.scores(taxa[padded]))
      out[sel] = np.asarray(ap)[:len(sel)]
    return out

  def log_presence(self, taxa: np.ndarray, rows: np.ndarray | None = None,
                   chunk: int = 8192) -> np.ndarray:
    """log P(presence) of taxa[i, j] at location rows[i] → (M, k); `taxa` (M, k) must be known."""
    taxa = np.asarray(taxa, np.int64)
    rows = np.arange(len(taxa)) if rows is None else np.asarray(rows)
    out = np.zeros(taxa.shape, np.float32)
    for start in range(0, len(taxa), chunk):
      t, r = taxa[start:start + chunk], rows[start:start + chunk]
      if self.head is None:
        uniq, inv = np.unique(t, return_inverse=True)
        p = np.asarray(self.predictor.predict(self.lonlat[r, 0], self.lonlat[r, 1], taxa=uniq))
        with np.errstate(divide="ignore"):
          out[start:start + len(t)] = np.log(np.take_along_axis(p, inv.reshape(t.shape), 1))
      else:
        cols = self.predictor.columns(t.ravel()).reshape(t.shape)
        out[start:start + len(t)] = np.asarray(
            _log_sigmoid_rows(self.emb[jnp.asarray(r)], self.head_j,
                              jnp.asarray(cols)))
    return out


@jax.jit
def _log_sigmoid_rows(emb, head, cols):
  return jax.nn.log_sigmoid(jnp.einsum("md,mkd->mk", emb, head[cols]))
