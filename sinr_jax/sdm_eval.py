"""Species distribution model evaluation on a user's own data: spatial block cross-validation and
held-out presence–background metrics (ROC AUC, PR AUC, Boyce index, TSS/F1 at a threshold).

  # k-fold spatial block CV, 3 seeds per fold (and their ensemble), a map from all the data:
  python -m sinr_jax.sdm_eval --config=sinr_jax.configs.sinr:single_species,env_coords \
      --config.data.train_file=presences.csv --config.data.background_file=background.csv \
      --config.data.covariates=bio1,bio12 --config.train.random_locations=background \
      --folds=kmeans:5 --seeds=0,1,2 --workdir=runs/cv --map=runs/cv/map.png
  # a trained run (or a directory of seed_<n> runs) on held-out files:
  python -m sinr_jax.sdm_eval --run=runs/x --presences=test.csv --background=test_bg.csv

Folds (sinr_jax.blocks): kmeans:K, grid:K:CELL_DEG, or user (a --fold_column in both files).
Every fold trains through sinr_jax.train (ecorep.trainer) on its training presences, with its
training background as pseudo-absences (train.random_locations=background) or the region's
draws, then scores its held-out presences against its held-out background. The threshold of
TSS/F1 is chosen by --threshold on the model's training presences and background (max_tss:
maximum TSS there; p10: 10th percentile of training presences; or a number), never on the
held-out points. Without data.background_file the evaluation background is drawn in the region.
Writes <workdir>/sdm_eval.json (every fold × seed, the ensemble, and the summary).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os

import ml_collections
import numpy as np

from ecorep import io
from ecorep.cli import parse_config_flags, run_cli
from ecorep.config import load_config
from ecorep.errors import NonFiniteLossError
from sinr_jax import blocks, sdm_metrics
from sinr_jax.data import TrainingData, load_training_data, training_subset
from sinr_jax.ensemble import Ensemble, load_ensemble, parse_seeds, train_ensemble
from sinr_jax.errors import SinrInputError

_log = logging.getLogger(__name__)
RESULT_FILE = "sdm_eval.json"
EVAL_BACKGROUND = 10_000   # region draws used as evaluation background without a background file


@dataclasses.dataclass
class CVResult:
  rows: list[dict]             # one per (fold, member): "fold", "seed" (or "ensemble"), metrics
  folds: blocks.Folds
  threshold_rule: str

  def auc_table(self) -> dict:
    """{seed or 'ensemble': [AUC of each fold]}."""
    out: dict = {}
    for r in self.rows:
      out.setdefault(r["seed"], [None] * self.folds.k)[r["fold"]] = r["roc_auc"]
    return out

  def summary(self) -> dict:
    """Mean ± sd over folds of each metric per member; the seeds' spread of the fold means."""
    metrics = ("roc_auc", "pr_auc", "boyce", "tss", "f1")
    out = {}
    for seed in dict.fromkeys(r["seed"] for r in self.rows):
      rows = [r for r in self.rows if r["seed"] == seed]
      out[str(seed)] = {m: _mean_sd([r[m] for r in rows]) for m in metrics}
    seeds = [s for s in out if s != "ensemble"]
    if len(seeds) > 1:
      out["seed_spread"] = {m: _mean_sd([out[s][m]["mean"] for s in seeds]) for m in metrics}
    return out

  def to_json(self) -> dict:
    return {"threshold_rule": self.threshold_rule, "folds": {
        "method": self.folds.method, "k": self.folds.k, "counts": self.folds.counts()},
        "rows": self.rows, "summary": self.summary()}


def _mean_sd(values) -> dict:
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
  if not len(v):
    return {"mean": float("nan"), "sd": float("nan"), "n": 0}
  return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
          "n": int(len(v))}


def column_covariates(data: TrainingData, covariates: np.ndarray | None):
  """The covariate-column part of raw covariates (what a predictor is given; rasters it samples)."""
  spec = data.covariate_spec
  if spec is None or not spec.columns or covariates is None:
    return None
  return covariates[:, :len(spec.columns)]


def evaluation_background(data: TrainingData, seed: int = 0):
  """(lon/lat, raw covariates) of the background the metrics compare presences with."""
  if data.background is not None:
    return data.background.lonlat, data.background_covariates
  if data.pool_lonlat is not None:
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data.pool_lonlat), min(EVAL_BACKGROUND, len(data.pool_lonlat)),
                      replace=False)
    cov = None if data.pool_covariates is None else data.pool_covariates[rows]
    return data.pool_lonlat[rows], cov
  raise SinrInputError("evaluation needs background points: set data.background_file, or a "
                       "study region (data.region.*) to draw them in", field="data.background_file")


def score(model, lonlat, covariates, data: TrainingData) -> np.ndarray:
  """P(presence) of the (single or first) species at the points."""
  lonlat = np.asarray(lonlat)
  cov = column_covariates(data, covariates)
  # Padded to a power of two: the folds' point sets then share a few compiled shapes.
  n = len(lonlat)
  pad = (1 << max(n - 1, 1).bit_length()) - n
  lonlat = np.concatenate([lonlat, np.repeat(lonlat[:1], pad, axis=0)])
  cov = None if cov is None else np.concatenate([cov, np.repeat(cov[:1], pad, axis=0)])
  return model.predict(lonlat[:, 0], lonlat[:, 1], [int(data.class_index.taxa[0])],
                       covariates=cov)[:n, 0]


def evaluate_model(model, data: TrainingData, test_p, test_b, train_p, train_b,
                   threshold_rule) -> dict:
  """Metrics on the held-out points (test_*) with the threshold the rule picks on train_*;
  each argument a (lonlat, covariates) pair."""
  sets = (test_p, test_b, train_p, train_b)
  lonlat = np.concatenate([s[0] for s in sets])
  cov = None if sets[0][1] is None else np.concatenate([s[1] for s in sets])
  scores = np.split(score(model, lonlat, cov, data), np.cumsum([len(s[0]) for s in sets])[:-1])
  t = sdm_metrics.choose_threshold(scores[2], scores[3], threshold_rule)
  return sdm_metrics.evaluate(scores[0], scores[1], t)


def cross_validate(cfg: ml_collections.ConfigDict, workdir: str, *, folds="kmeans:5",
                   seeds=(0,), threshold="max_tss", fold_column: str = "fold",
                   data: TrainingData | None = None, mesh=None) -> CVResult:
  """Spatial block cross-validation of the config's model; one run per fold × seed under
  workdir/fold_<k>/seed_<s> (resumable like any run). `folds` is a spec or a blocks.Folds."""
  data = load_training_data(cfg, workdir) if data is None else data
  if len(data.class_index) > 1:
    raise SinrInputError(f"cross-validation scores one species; {data.source} holds "
                         f"{len(data.class_index)} (use data.taxa_file to pick one)",
                         file=data.source, field="taxon_id")
  bg_lonlat, bg_cov = evaluation_background(data, cfg.seed)
  if not isinstance(folds, blocks.Folds):
    folds = blocks.make_folds(
        folds, data.lonlat, bg_lonlat, seed=cfg.seed,
        presence_labels=data.extra.get(fold_column),
        background_labels=None if data.background is None else data.background.extra.get(
            fold_column))
  if len(folds.presence) != len(data.lonlat) or len(folds.background) != len(bg_lonlat):
    raise SinrInputError("the folds do not match the presences and background points",
                         field="folds")
  _log.info("%s folds: (presences, background) per fold %s", folds.method, folds.counts())
  rows = []
  for f in range(folds.k):
    tr_p, te_p, tr_b, te_b = folds.split(f)
    sub = training_subset(data, cfg, tr_p, tr_b if data.background is not None else
                          np.zeros(0, bool))
    ens = train_ensemble(cfg, os.path.join(workdir, f"fold_{f}"), seeds, data=sub, mesh=mesh,
                         plots=False)
    pts = [(data.lonlat[m], None if data.covariates is None else data.covariates[m])
           for m in (te_p, tr_p)]
    bgs = [(bg_lonlat[m], None if bg_cov is None else bg_cov[m]) for m in (te_b, tr_b)]
    if not len(bgs[0][0]):
      raise SinrInputError(f"fold {f} holds no background point to evaluate against; use "
                           "fewer folds or more background", field="folds")
    members = [(s, m) for s, m in zip(ens.seeds, ens.members)]
    if len(members) > 1:
      members.append(("ensemble", ens))
    for seed, model in members:
      metrics = evaluate_model(model, data, pts[0], bgs[0], pts[1], bgs[1], threshold)
      rows.append({"fold": f, "seed": seed, **metrics})
      _log.info("fold %d, seed %s: AUC %.3f, PR AUC %.3f, Boyce %.3f, TSS %.3f", f, seed,
                metrics["roc_auc"], metrics["pr_auc"], metrics["boyce"], metrics["tss"])
  return CVResult(rows=rows, folds=folds, threshold_rule=str(threshold))


def evaluate_run(run: str, presences: str, background: str, *, threshold="max_tss") -> dict:
  """Held-out metrics of a trained run (or seed_<n> ensemble directory) on the user's files,
  read with the run's data settings; the threshold rule is applied to its training data."""
  from sinr_jax.predictor import load
  seed_dirs = os.path.isdir(os.path.join(run, "seed_0")) or not os.path.isfile(
      os.path.join(run, "model.json"))
  model = load_ensemble(run) if seed_dirs else load(run)
  first = model.members[0].run_dir if isinstance(model, Ensemble) else run
  cfg = _saved_config(first)
  train_data = load_training_data(cfg, first)
  test = cfg.copy_and_resolve_references()   # the same data settings, for other files:
  test.data.train_file, test.data.background_file = presences, background
  test.data.cap = -1                           # every held-out row counts
  test.data.region.hull_buffer_km = -1.0       # a hull would be grown round the held-out points
  test.train.random_locations = "background"
  test.train.batch_size = 1
  held = load_training_data(test, first)
  bg = evaluation_background(held)
  tr_bg = evaluation_background(train_data)
  return evaluate_model(model, held, (held.lonlat, held.covariates), bg,
                        (train_data.lonlat, train_data.covariates), tr_bg, threshold)


def _saved_config(run: str) -> ml_collections.ConfigDict:
  from sinr_jax.rundir import CONFIG_FILE
  path = os.path.join(run, CONFIG_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise SinrInputError(f"cannot read the run's training config ({e})", file=path) from e


def format_table(result: CVResult) -> str:
  """Markdown: AUC per fold for every seed and the ensemble, with mean ± sd."""
  table = result.auc_table()
  head = "| model | " + " | ".join(f"fold {f}" for f in range(result.folds.k)) + " | mean ± sd |"
  lines = [head, "|" + "---|" * (result.folds.k + 2)]
  for seed, aucs in table.items():
    s = _mean_sd(aucs)
    name = "ensemble" if seed == "ensemble" else f"seed {seed}"
    lines.append(f"| {name} | " + " | ".join(f"{a:.3f}" for a in aucs)
                 + f" | {s['mean']:.3f} ± {s['sd']:.3f} |")
  return "\n".join(lines)


USAGE = """usage: python -m sinr_jax.sdm_eval --config=sinr_jax.configs.sinr:<variant>
           [--config.<key>=...] --workdir=<dir> [--folds=kmeans:5|grid:K:CELL_DEG|user]
           [--seeds=0,1,2] [--threshold=max_tss|p10|<number>] [--fold_column=fold] [--map=<png>]
       python -m sinr_jax.sdm_eval --run=<run or ensemble dir> --presences=<file>
           --background=<file> [--threshold=...]"""
FLAGS = ("workdir", "folds", "seeds", "threshold", "fold_column", "map", "run", "presences",
         "background")


def main(argv: list[str]) -> int:
  def body(argv):
    spec, overrides, flags = parse_config_flags(argv, FLAGS, "sinr_jax.configs.sinr:single_species")
    threshold = flags.get("threshold", "max_tss")
    sdm_metrics.choose_threshold([1.0], [0.0], threshold)   # an unknown rule fails before training
    if "run" in flags:
      missing = [f"--{k}" for k in ("presences", "background") if k not in flags]
      if missing:
        raise SinrInputError(f"--run needs {' and '.join(missing)}", field="run")
      metrics = evaluate_run(flags["run"], flags["presences"], flags["background"],
                             threshold=threshold)
      print(json.dumps(metrics, indent=2))
      return 0
    cfg = load_config(spec, overrides)
    workdir = flags.get("workdir") or os.path.join("runs", cfg.get("name", "sdm") + "_cv")
    seeds = parse_seeds(flags.get("seeds", "0"))
    folds_spec = flags.get("folds", "kmeans:5")
    result = cross_validate(cfg, workdir, folds=folds_spec, seeds=seeds, threshold=threshold,
                            fold_column=flags.get("fold_column", "fold"))
    io.write_json(os.path.join(workdir, RESULT_FILE), result.to_json())
    print(format_table(result))
    if "map" in flags:
      from sinr_jax.maps import save_sdm_map
      data = load_training_data(cfg, workdir)
      ens = train_ensemble(cfg, os.path.join(workdir, "final"), seeds, data=data)
      bg_lonlat, bg_cov = evaluation_background(data, cfg.seed)
      t = sdm_metrics.choose_threshold(score(ens, data.lonlat, data.covariates, data),
                                       score(ens, bg_lonlat, bg_cov, data), threshold)
      save_sdm_map(ens, flags["map"], region=data.region, obs_lonlat=data.lonlat, threshold=t,
                   threshold_rule=f"{threshold} on the training data")
      print(f"map written to {flags['map']}")
    print(f"results written to {os.path.join(os.path.abspath(workdir), RESULT_FILE)}")
  return run_cli(argv, body, USAGE, errors=(NonFiniteLossError,),
                 flags=("config", "config.<key>", *FLAGS), configs=("sinr_jax.configs.sinr",))


if __name__ == "__main__":
  import sys
  sys.exit(main(sys.argv[1:]))
