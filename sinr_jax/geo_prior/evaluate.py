"""Seed Table 7.1 for one prior: top-1/3/5 of a classifier alone, times the learned prior, and
times each baseline prior, with every hyperparameter chosen on a validation split.

  report = evaluate(prior, val, test, train=training_observations)

Methods (report["methods"], in table order):
  no_prior     the classifier alone
  nn_num, nn_spatial, grid, kde   count-based priors (sinr_jax/baselines), each with its
               hyperparameter and uniform floor ε chosen for validation top-1
  tang         Tang et al.'s trained output layer (sinr_jax/baselines/tang.py), trained on the
               validation images (l2 chosen on a held-out fifth of them)
  prior        the learned prior, P(y|I)·P(y|x) (β = 1: the seed's number)
  prior_tuned  P(y|I)·P(y|x)^β with β chosen for validation top-1 (beyond the seed)
Each entry holds the test top-k (and per `subset_*` of the meta file), its gain over no_prior,
the chosen hyperparameters and their validation top-1.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from sinr_jax.baselines.class_prior import FLOORS, GridPrior
from sinr_jax.baselines.kde import AdaptiveKDEPrior
from sinr_jax.baselines.neighbours import NeighbourPrior
from sinr_jax.baselines.tang import TangBaseline, classifier_features
from sinr_jax.errors import SinrInputError
from sinr_jax.geo_prior.combine import (accuracy, count_log_prior, logits_accuracy, match_classes,
                                        sigmoid_log_prior, usable_rows)

_log = logging.getLogger(__name__)
BETAS = (1.0, 0.0, 0.25, 0.5, 0.75, 1.25, 1.5, 2.0)  # 1 first: it wins ties
COUNT_BASELINES = ("nn_num", "nn_spatial", "grid", "kde")
BASELINES = (*COUNT_BASELINES, "tang")
NAMES = {"no_prior": "No prior", "nn_num": "Nearest neighbour (num)",
         "nn_spatial": "Nearest neighbour (spatial)", "grid": "Discretized grid",
         "kde": "Adaptive kernel density (Berg et al.)", "tang": "Tang et al.",
         "prior": "Geo prior, β = 1", "prior_tuned": "Geo prior, β tuned"}


def _entry(test_acc: dict, base: dict | None, **extra) -> dict:
  out = {"test": test_acc, **extra}
  if base is not None:
    out["gain"] = {k: v - base[k] for k, v in test_acc.items()
                   if k in base and not k.endswith("num_images")}
  return out


def _count_baseline(name, train, class_index, num_classes):
  if name in ("nn_num", "nn_spatial"):
    return NeighbourPrior(train.lonlat, train.labels, num_classes, name[3:])
  if name == "grid":
    return GridPrior(train.lonlat, train.labels, class_index)
  return AdaptiveKDEPrior(train.lonlat, train.labels, num_classes)


def _baseline_scores(model, outputs, prior_col):
  rows = np.flatnonzero(usable_rows(outputs, uses_date=False))
  cols = prior_col[outputs.inds]
  return rows, cols, model.scores(outputs.lonlat[rows], cols[rows])


def evaluate(prior, val, test, *, train=None, baselines=BASELINES, betas=BETAS,
             floors=FLOORS, seed: int = 0, mesh=None) -> dict:
  """`prior`: a GeoPriorPredictor; `val`, `test`: ClassifierOutputs with the same classes;
  `train`: the prior's training observations (GeoPriorData), needed by the count baselines."""
  if not np.array_equal(val.model_to_taxa, test.model_to_taxa):
    raise SinrInputError("the validation and test classifier files have different class lists",
                         file=val.path, field="model_to_taxa")
  prior_col, classes = match_classes(test.model_to_taxa, prior.taxa, test.path)
  num_prior = len(prior.taxa)
  base = accuracy(test)
  methods = {"no_prior": _entry(base, None, val_top1=accuracy(val)["top1"])}
  seconds = {}

  for name in baselines:
    t0 = time.perf_counter()
    if name == "tang":
      feats_val = (val.features if val.features is not None
                   else classifier_features(val.dense_log_probs()))
      feats_test = (test.features if test.features is not None
                    else classifier_features(test.dense_log_probs()))
      tang = TangBaseline(len(test.model_to_taxa), seed=seed, mesh=mesh)
      held = tang.fit(feats_val, val.lonlat, val.labels, identity=val.features is None)
      methods[name] = _entry(logits_accuracy(test, tang.logits(feats_test, test.lonlat)), base,
                             hyper={"l2": tang.l2}, val_top1=held[f"l2={tang.l2:g}"],
                             validation=held)
    else:
      if train is None:
        raise SinrInputError(f"the {name} baseline needs the prior's training observations",
                             field="baselines")
      if not np.array_equal(train.class_index.taxa, prior.taxa):
        raise SinrInputError("the training observations' classes differ from the prior's",
                             field="train")
      model = _count_baseline(name, train, train.class_index, num_prior)
      rows, cols, scores = _baseline_scores(model, val, prior_col)
      grid = {}
      for label, p in scores.items():
        for eps in floors:
          lp = count_log_prior(p, rows, cols, eps, num_prior)
          grid[f"{label},eps={eps:g}"] = (accuracy(val, lp)["top1"], label, eps)
      best = max(grid, key=lambda k: grid[k][0])  # first of equals: the grid's order
      _, label, eps = grid[best]
      rows_t, cols_t, scores_t = _baseline_scores(model, test, prior_col)
      lp = count_log_prior(scores_t[label], rows_t, cols_t, eps, num_prior)
      methods[name] = _entry(accuracy(test, lp), base, hyper={"setting": label, "eps": eps},
                             val_top1=grid[best][0],
                             validation={k: v[0] for k, v in grid.items()})
    seconds[name] = time.perf_counter() - t0
    _log.info("%s: test top-1 %.4f (%.1f s)", name, methods[name]["test"]["top1"], seconds[name])

  t0 = time.perf_counter()
  lp_val = sigmoid_log_prior(prior, val, prior_col)
  lp_test = sigmoid_log_prior(prior, test, prior_col)
  by_beta = {b: accuracy(val, lp_val, b)["top1"] for b in betas}
  best_beta = max(betas, key=lambda b: by_beta[b])
  methods["prior"] = _entry(accuracy(test, lp_test, 1.0), base, hyper={"beta": 1.0},
                            val_top1=by_beta.get(1.0, accuracy(val, lp_val)["top1"]))
  methods["prior_tuned"] = _entry(accuracy(test, lp_test, best_beta), base,
                                  hyper={"beta": best_beta}, val_top1=by_beta[best_beta],
                                  validation={f"beta={b:g}": v for b, v in by_beta.items()})
  seconds["prior"] = time.perf_counter() - t0
  images = {}
  for split, o in (("val", val), ("test", test)):
    has_loc = np.isfinite(o.lonlat).all(1)
    images[split] = {"num_images": len(o), "without_location": int((~has_loc).sum()),
                     "without_date": int((~np.isfinite(o.day)).sum()),
                     "uniform_prior": int((~usable_rows(o, prior.use_date)).sum()),
                     "bad_dates": o.bad_dates, "dense": o.dense,
                     "subsets": {k: int(v.sum()) for k, v in o.subsets.items()}}
  return {"classes": classes, "images": images, "methods": methods, "seconds": seconds,
          "prior": {"run": getattr(prior, "run_dir", None), "step": getattr(prior, "step", None),
                    "uses_date": bool(prior.use_date)}}


def format_table(report: dict, subsets=True) -> str:
  """Seed Table 7.1's layout: top-1/3/5 and the top-1 gain over no prior, per method."""
  methods = report["methods"]
  sub = sorted({k.split("/")[0] for m in methods.values() for k in m["test"] if "/" in k}) if (
      subsets) else []
  head = f"{'method':<40} {'top-1':>7} {'top-3':>7} {'top-5':>7} {'Δtop-1':>7}" + "".join(
      f" {s + ' top-1':>18}" for s in sub) + "  chosen on validation"
  lines = [head]
  for key, m in methods.items():
    t = m["test"]
    cell = lambda k: f"{t[k]:7.4f}" if k in t else f"{'—':>7}"
    gain = f"{m['gain']['top1']:+7.4f}" if "gain" in m else f"{'':>7}"
    hyper = ", ".join(f"{k}={v}" for k, v in m.get("hyper", {}).items())
    lines.append(f"{NAMES.get(key, key):<40} {cell('top1')} {cell('top3')} {cell('top5')} {gain}"
                 + "".join(f" {t.get(s + '/top1', float('nan')):18.4f}" for s in sub)
                 + f"  {hyper}")
  return "\n".join(lines)
