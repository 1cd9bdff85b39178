"""A simulated image classifier that confuses look-alikes (the geo prior's input).

Species are grouped into "genera" of look-alikes: species adjacent along the first principal axis of
their niche centroids (mean environment over the true range), so look-alikes live in similar
climates, often on different continents. Each image of species y gets classifier scores
  s_c = a·[c = y] + b·[genus(c) = genus(y)] + b_p·[c, y partners] + ε_c,   ε_c ~ N(0, 1) i.i.d.,
probabilities softmax(s), and the top-k of them (top-1 last). `a` is set from the drawn noise so
that the classifier's top-1 equals `target_top1`; most of its mistakes are genus-mates. Partners
(optional) pair each migrant with the resident that overlaps its wintering range most and the one
that overlaps its breeding range most: look-alikes that a date-less prior cannot tell apart in
the season the migrant is away.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from sinr_jax.world import assets

_CHUNK = 2048  # images per block of the (images x classes) score matrix


def genera(world, genus_size: int) -> np.ndarray:
  """(S,) genus id: rank along the main axis of the species' niche centroids // genus_size."""
  rows, cols = assets.raster_index(world.cell_lonlat[:, 0], world.cell_lonlat[:, 1])
  cell_env = np.nan_to_num(world.env[rows, cols].astype(np.float64))
  p = world.presence.astype(np.float64)
  centroid = (p @ cell_env) / np.maximum(np.asarray(p.sum(1)), 1.0)
  centred = centroid - centroid.mean(0)
  axis = np.linalg.svd(centred, full_matrices=False)[2][0]
  order = np.lexsort((world.taxa, centred @ axis))
  genus = np.empty(len(order), np.int64)
  genus[order] = np.arange(len(order)) // genus_size
  return genus


def lookalike_partners(seasons) -> sp.csr_matrix:
  """(S, S) symmetric bool: each migrant and the residents overlapping its wintering and its
  breeding range most (ties: the lower index; none where no resident overlaps)."""
  mig = np.flatnonzero(seasons.migratory)
  res = np.flatnonzero(~seasons.migratory)
  s = len(seasons.migratory)
  rows, cols = [], []
  if len(mig) and len(res):
    resident_range = seasons.summer[res].astype(np.float32).T.tocsc()
    for part in (seasons.winter, seasons.summer):
      overlap = np.asarray((part[mig].astype(np.float32) @ resident_range).todense())
      best = overlap.argmax(1)
      ok = overlap[np.arange(len(mig)), best] > 0
      rows.append(mig[ok])
      cols.append(res[best[ok]])
  r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
  c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
  a = sp.csr_matrix((np.ones(2 * len(r), bool), (np.concatenate([r, c]), np.concatenate([c, r]))),
                    shape=(s, s))
  a.sum_duplicates()
  return a.astype(bool).tocsr()


def class_scores(rng, labels, genus, a, b, partners=None, partner_affinity=0.0):
  """(N, C) scores of images of `labels` (see the module docstring)."""
  s = rng.standard_normal((len(labels), len(genus)))
  s += b * (genus[None, :] == genus[labels][:, None])
  if partners is not None and partner_affinity:
    s += partner_affinity * partners[labels].toarray()
  s[np.arange(len(labels)), labels] += a
  return s


def classify(rng: np.random.Generator, labels: np.ndarray, genus: np.ndarray, *,
             target_top1: float, genus_affinity: float, top_k: int, partners=None,
             partner_affinity: float = 0.0) -> tuple[np.ndarray, np.ndarray, float]:
  """(probs (N, k) ascending with the top-1 last, their class indices (N, k), a) of the
  simulated classifier on images of `labels`, with `a` making its top-1 exactly target_top1."""
  # Pass 1: the margin a must beat for each image to be right; pass 2 replays the same noise.
  seeds = [g.bit_generator.seed_seq for g in rng.spawn(-(-len(labels) // _CHUNK))]
  extra = dict(partners=partners, partner_affinity=partner_affinity)
  margin = []
  for i, seed in enumerate(seeds):
    lab = labels[i * _CHUNK:(i + 1) * _CHUNK]
    s = class_scores(np.random.default_rng(seed), lab, genus, 0.0, genus_affinity, **extra)
    own = s[np.arange(len(lab)), lab].copy()
    s[np.arange(len(lab)), lab] = -np.inf
    margin.append(s.max(1) - own)
  a = float(np.quantile(np.concatenate(margin), target_top1)) if len(labels) else 0.0
  k = min(top_k, len(genus))
  probs, inds = [], []
  for i, seed in enumerate(seeds):
    lab = labels[i * _CHUNK:(i + 1) * _CHUNK]
    s = class_scores(np.random.default_rng(seed), lab, genus, a, genus_affinity, **extra)
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    logp = np.take_along_axis(s, top, 1) - logsumexp(s, axis=1, keepdims=True)
    asc = np.argsort(logp, axis=1, kind="stable")  # ascending: the top-1 ends up last
    probs.append(np.exp(np.take_along_axis(logp, asc, 1)).astype(np.float32))
    inds.append(np.take_along_axis(top, asc, 1).astype(np.int64))
  if not probs:
    return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64), a
  return np.concatenate(probs), np.concatenate(inds), a
