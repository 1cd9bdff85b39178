"""P(y|I)·P(y|x)^β: matching a classifier's classes to a prior's, the log prior at every image's
candidate classes, and the top-k of the product (ranking by sinr_jax.evaluators.geo_prior, the one
home of the combination rule and its tie-breaking).

Classes are matched by taxon id, never by position. A classifier class whose taxon the prior does
not know keeps its vision probability: its log prior is 0 for the learned prior (P(y|x) = 1, the
reference's rule) and log(1/C) for a count-based one (the uniform value). An image without a
location, or without a date when the prior uses dates, gets the uniform prior: the classifier's
own ranking.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from sinr_jax.baselines.class_prior import with_floor
from sinr_jax.errors import SinrInputError
from sinr_jax.evaluators.geo_prior import TOP, rank_candidates, topk_accuracy

_SHOW = 10


def match_classes(model_to_taxa: np.ndarray, prior_taxa: np.ndarray,
                  source=None) -> tuple[np.ndarray, dict]:
  """(prior column of every classifier class, −1 where unmatched; a report of the matching)."""
  prior_taxa = np.asarray(prior_taxa, np.int64)
  at = np.minimum(np.searchsorted(prior_taxa, model_to_taxa), len(prior_taxa) - 1)
  matched = prior_taxa[at] == model_to_taxa
  if not matched.any():
    raise SinrInputError(
        f"none of the classifier's {len(model_to_taxa)} classes is a taxon of the prior (its "
        f"taxa start {model_to_taxa[:5].tolist()}, the prior's {prior_taxa[:5].tolist()}): the "
        "class list does not belong to this prior", file=source, field="model_to_taxa")
  unmatched = model_to_taxa[~matched]
  report = {"num_classifier_classes": int(len(model_to_taxa)),
            "num_matched": int(matched.sum()), "num_unmatched": int(len(unmatched)),
            "unmatched_taxa": unmatched[:_SHOW].tolist(),
            "num_prior_classes_not_in_classifier": int(
                len(prior_taxa) - len(np.unique(at[matched])))}
  return np.where(matched, at, -1).astype(np.int64), report


def usable_rows(outputs, uses_date: bool) -> np.ndarray:
  """Images the prior can score: a location, and a date when the prior uses dates."""
  ok = np.isfinite(outputs.lonlat).all(1)
  return ok & np.isfinite(outputs.day) if uses_date else ok


def sigmoid_log_prior(predictor, outputs, prior_col: np.ndarray) -> np.ndarray:
  """(N, k) log σ(f(x)·O_c) of the learned prior at every candidate; 0 where unusable."""
  cols = prior_col[outputs.inds]
  out = np.zeros(cols.shape)
  rows = np.flatnonzero(usable_rows(outputs, predictor.use_date))
  if len(rows):
    lp = predictor.log_prior(outputs.lonlat[rows, 0], outputs.lonlat[rows, 1],
                             outputs.day[rows] if predictor.use_date else None,
                             np.maximum(cols[rows], 0))
    out[rows] = np.where(cols[rows] >= 0, lp, 0.0)
  return out


def count_log_prior(p_candidates: np.ndarray, rows: np.ndarray, cols: np.ndarray, eps: float,
                    num_prior_classes: int) -> np.ndarray:
  """(N, k) log((1 − ε)·P(c|x) + ε/C) from P at the usable `rows`; log(1/C) elsewhere."""
  out = np.full(cols.shape, -np.log(num_prior_classes))
  if len(rows):
    lp = np.log(with_floor(p_candidates, eps, num_prior_classes))
    out[rows] = np.where(cols[rows] >= 0, lp, out[rows])
  return out


def accuracy(outputs, log_prior: np.ndarray | None = None, beta: float = 1.0) -> dict:
  """{"top1", "top3", "top5"} of the product over all images, plus per `subset_*` of the meta."""
  ranked = rank_candidates(outputs.log_probs, outputs.inds, log_prior, beta)
  out = {f"top{m}": v for m, v in topk_accuracy(ranked, outputs.labels, TOP).items()}
  for name, rows in outputs.subsets.items():
    out.update({f"{name}/top{m}": v for m, v in
                topk_accuracy(ranked[rows], outputs.labels[rows], TOP).items()})
    out[f"{name}/num_images"] = int(rows.sum())
  return out


def logits_accuracy(outputs, logits: np.ndarray) -> dict:
  """The same table for a model that scores every class itself (Tang et al.)."""
  inds = np.broadcast_to(np.arange(logits.shape[1]), logits.shape)
  return accuracy(dataclasses.replace(outputs, log_probs=logits, inds=inds))
