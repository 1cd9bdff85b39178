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
      combined = np.log(d.probs) + self.log_prior(predictor)
    # Descending combined score, ties by ascending class index (lexsort: last key is primary).
    ranked = np.take_along_axis(d.inds, np.lexsort((d.inds, -combined), axis=1), axis=1)
    vision = d.inds[:, ::-1]
    hit_v = vision == d.labels[:, None]
    hit_c = ranked == d.labels[:, None]
    out = {}
    for m in (t for t in TOP if t <= k):
      v, c = float(hit_v[:, :m].any(1).mean()), float(hit_c[:, :m].any(1).mean())
      out.update({f"vision_top{m}": v, f"combined_top{m}": c, f"delta_top{m}": c - v})
    taxa = d.model_to_taxa
    out.update({
        "label_in_top_k": float(hit_v.any(1).mean()), "k": float(k),
        "num_images": float(len(d.labels)),
        "num_images_without_location": float((~np.isfinite(d.lonlat).all(1)).sum()),
        "num_classes": float(len(taxa)),
        "num_classes_unknown_to_model": float((~np.isin(taxa, predictor.taxa)).sum())})
    return out
