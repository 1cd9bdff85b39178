"""Geo prior: does multiplying an image classifier's probabilities by the range model's P(y|x) fix
its mistakes? Reported: top-1 (and top-3/top-5 where the file's k allows) of the classifier alone
and of the product, and their differences.

As in the reference, a class whose taxon the range model lacks keeps its vision probability
(P(y|x) = 1), and classes outside an image's top-k have probability 0 and cannot be chosen. We
rank by log p_vision + log P(y|x) (log_sigmoid of the logit, no underflow); ties go to the lower
class index, as the reference's argmax over the dense class vector does. An image without a
location (NaN or empty latitude/longitude) stays vision-only and is counted. The file's column
order is taken as the vision ranking (top-1 last), as the reference does.
"""
from __future__ import annotations

import numpy as np

from sinr_jax.evaluators.readers import GEO_PRIOR_META, GEO_PRIOR_PREDS, locate, read_geo_prior
from sinr_jax.scoring import LocationScores

TOP = (1, 3, 5)


def rank_candidates(log_vision: np.ndarray, inds: np.ndarray, log_prior: np.ndarray | None = None,
                    beta: float = 1.0) -> np.ndarray:
  """(N, k) class indices best first by log p_vision + β·log P(y|x) (P(y|I)·P(y|x)^β); ties go to
  the lower class index, as an argmax over a dense class vector does. `log_prior` None (or 0 for
  a row): the classifier's own ranking. −inf (probability 0) sorts last."""
  combined = log_vision if log_prior is None else log_vision + beta * log_prior
  # Descending combined score, ties by ascending class index (lexsort: last key is primary).
  return np.take_along_axis(inds, np.lexsort((inds, -combined), axis=1), axis=1)


def topk_accuracy(ranked: np.ndarray, labels: np.ndarray, tops=TOP) -> dict[int, float]:
  """{m: fraction of rows whose label is among the first m of `ranked`} for m ≤ k."""
  hit = ranked == np.asarray(labels)[:, None]
  return {m: float(hit[:, :m].any(1).mean()) if len(labels) else float("nan")
          for m in tops if m <= ranked.shape[1]}


class GeoPrior:
  name = "geo_prior"

  def __init__(self, data_dir: str):
    self.data = read_geo_prior(locate(data_dir, "geo_prior", GEO_PRIOR_PREDS),
                               locate(data_dir, "geo_prior", GEO_PRIOR_META))

  def log_prior(self, predictor) -> np.ndarray:
    """(N, k) log P(y|x) of every top-k class at its image's location; 0 where unknown."""
    d = self.data
    taxa = d.model_to_taxa[d.inds]
    usable = np.isin(taxa, predictor.taxa) & np.isfinite(d.lonlat).all(1)[:, None]
    rows = np.flatnonzero(usable.any(1))
    out = np.zeros(taxa.shape, np.float32)
    if len(rows) == 0:
      return out
    stand_in = np.asarray(predictor.taxa)[0]  # any known taxon; masked out below
    lp = LocationScores(predictor, d.lonlat[rows]).log_presence(
        np.where(usable[rows], taxa[rows], stand_in))
    out[rows] = np.where(usable[rows], lp, 0.0)
    return out

  def run(self, predictor) -> dict[str, float]:
    d = self.data
    k = d.probs.shape[1]
    with np.errstate(divide="ignore"):
      ranked = rank_candidates(np.log(d.probs), d.inds, self.log_prior(predictor))
    vision = d.inds[:, ::-1]
    hit_v = vision == d.labels[:, None]
    out = {}
    for m, c in topk_accuracy(ranked, d.labels).items():
      v = float(hit_v[:, :m].any(1).mean())
      out.update({f"vision_top{m}": v, f"combined_top{m}": c, f"delta_top{m}": c - v})
    taxa = d.model_to_taxa
    out.update({
        "label_in_top_k": float(hit_v.any(1).mean()), "k": float(k),
        "num_images": float(len(d.labels)),
        "num_images_without_location": float((~np.isfinite(d.lonlat).all(1)).sum()),
        "num_classes": float(len(taxa)),
        "num_classes_unknown_to_model": float((~np.isin(taxa, predictor.taxa)).sum())})
    return out
