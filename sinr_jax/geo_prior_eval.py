"""Evaluate a geo prior with an image classifier: P(y|I)·P(y|x), next to the baselines (seed
Table 7.1).

  python -m sinr_jax.geo_prior_eval --run=runs/gp [--predictions=test_preds.npz
      [--meta=test_meta.csv] [--val_predictions=val_preds.npz [--val_meta=val_meta.csv]]]
      [--baselines=nn_num,nn_spatial,grid,kde,tang|none] [--val_fraction=0.5] [--seed=0]
      [--bad_dates=drop|error] [--max_date=YYYY-MM-DD] [--out=FILE] [--plots[=DIR]]
      [--sim_dir=DIR]

--predictions is the classifier file (dense (N, C) probabilities, or top-k probabilities with
their class indices: sinr_jax/geo_prior/classifier_file.py) and --meta its per-image latitude,
longitude and observed_on (default: the predictions' name with _preds.npz → _meta.csv).
Hyperparameters (the baselines', β of the tempered product) are chosen on --val_predictions, or
on a seeded --val_fraction of the images when there is none (the rest is the test split).
Without --predictions, a run trained on the simulated world is evaluated on simulated classifier
outputs generated once into --sim_dir (default <run>/geo_prior_eval_data). Prints the table and
writes <run>/geo_prior_eval.json (or --out); --plots writes the seed's figures (PNG) into
<run>/plots/geo_prior (or the given folder).
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys

import ml_collections
import numpy as np

from ecorep import io
from ecorep.cli import parse_flags, run_cli
from sinr_jax.errors import SinrInputError
from sinr_jax.geo_prior import dates as date_rules
from sinr_jax.geo_prior import evaluate, simulated
from sinr_jax.geo_prior.classifier_file import read_classifier
from sinr_jax.geo_prior.predictor import load

_log = logging.getLogger("sinr_jax.geo_prior_eval")
FLAGS = ("run", "predictions", "meta", "val_predictions", "val_meta", "baselines",
         "val_fraction", "seed", "bad_dates", "max_date", "out", "plots", "sim_dir")
REPORT_FILE = "geo_prior_eval.json"
SIM_DIR = "geo_prior_eval_data"


def run_config(run_dir: str) -> ml_collections.ConfigDict:
  path = os.path.join(run_dir, "config.json")
  try:
    with open(path, encoding="utf-8") as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise SinrInputError(f"cannot read the run's config ({e!r})", file=path) from e


def _meta_beside(preds: str, given: str | None) -> str:
  if given:
    return given
  if preds.endswith("_preds.npz"):
    return preds[:-len("_preds.npz")] + "_meta.csv"
  raise SinrInputError("pass --meta with the images' latitude, longitude and observed_on (it "
                       "cannot be derived from a file name not ending in _preds.npz)",
                       field="meta")


def classifier_splits(run_dir: str, cfg, flags: dict, *, bad_dates: str, max_date):
  """(validation outputs, test outputs, where they came from)."""
  read = lambda p, m: read_classifier(p, m, bad_dates=bad_dates, max_date=max_date)
  if "predictions" not in flags:
    if cfg.data.train_file:
      raise SinrInputError("this run was trained on a data file, not the simulated world: pass "
                           "--predictions with your classifier's outputs", field="predictions")
    from sinr_jax.data import world_directory
    sim_dir = flags.get("sim_dir") or os.path.join(run_dir, SIM_DIR)
    simulated.ensure_simulated(world_directory(cfg, run_dir), sim_dir,
                               seed=int(flags.get("seed", 0)))
    return (read(*simulated.split_files(sim_dir, "val")),
            read(*simulated.split_files(sim_dir, "test")), f"simulated ({sim_dir})")
  preds = flags["predictions"]
  test = read(preds, _meta_beside(preds, flags.get("meta")))
  if "val_predictions" in flags:
    vp = flags["val_predictions"]
    return read(vp, _meta_beside(vp, flags.get("val_meta"))), test, preds
  fraction = float(flags.get("val_fraction", 0.5))
  if not 0 < fraction < 1:
    raise SinrInputError(f"must be in (0, 1), got {fraction}", field="val_fraction")
  order = np.random.default_rng(int(flags.get("seed", 0))).permutation(len(test))
  n_val = int(round(fraction * len(test)))
  if n_val == 0 or n_val == len(test):
    raise SinrInputError(f"{len(test)} images cannot be split into validation and test",
                         field="val_fraction")
  return (test.take(np.sort(order[:n_val])), test.take(np.sort(order[n_val:])),
          f"{preds} (validation: a {fraction:g} split, seed {flags.get('seed', 0)})")


def evaluate_run(run_dir: str, flags: dict) -> dict:
  run_dir = os.path.abspath(run_dir)
  baselines = [b.strip() for b in flags.get("baselines", ",".join(evaluate.BASELINES)).split(",")
               if b.strip() and b.strip() != "none"]
  unknown = [b for b in baselines if b not in evaluate.BASELINES]
  if unknown:
    raise SinrInputError(f"unknown baseline {unknown[0]!r}; choose from "
                         f"{', '.join(evaluate.BASELINES)} or none", field="baselines")
  bad_dates = flags.get("bad_dates", "drop")
  if bad_dates not in date_rules.POLICIES:
    raise SinrInputError(f"choose one of {', '.join(date_rules.POLICIES)}", field="bad_dates")
  max_date = date_rules.parse_max_date(flags.get("max_date"), field="max_date")
  prior = load(run_dir)
  cfg = run_config(run_dir)
  val, test, source = classifier_splits(run_dir, cfg, flags, bad_dates=bad_dates,
                                        max_date=max_date)
  train = None
  if any(b in evaluate.COUNT_BASELINES for b in baselines):
    from sinr_jax.geo_prior.data import load_geo_prior_data
    train = load_geo_prior_data(cfg, run_dir)
  report = evaluate.evaluate(prior, val, test, train=train, baselines=baselines,
                             seed=int(flags.get("seed", 0)))
  report["classifier"] = source
  io.write_json(flags.get("out") or os.path.join(run_dir, REPORT_FILE), _json_safe(report))
  if "plots" in flags:
    from sinr_jax.geo_prior import plots
    out = flags["plots"] if flags["plots"] not in ("", "true") else os.path.join(
        run_dir, "plots", "geo_prior")
    report["plots"] = plots.write_all(run_dir, out)
  return report


def _json_safe(x):
  if isinstance(x, dict):
    return {str(k): _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, (np.floating, float)):
    return None if math.isnan(x) else float(x)
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.bool_):
    return bool(x)
  return x


def main(argv: list[str]) -> int:
  def body(argv):
    flags = parse_flags(argv, FLAGS, required=("run",))
    report = evaluate_run(flags["run"], flags)
    c, img = report["classes"], report["images"]["test"]
    print(f"\n=== geo prior {report['prior']['run']} (step {report['prior']['step']}) with "
          f"{report['classifier']} ===")
    print(f"test images {img['num_images']} ({img['without_location']} without location, "
          f"{img['without_date']} without date: {img['uniform_prior']} get the uniform prior); "
          f"classes matched {c['num_matched']} of {c['num_classifier_classes']}"
          + (f", unmatched (kept without prior): {c['num_unmatched']} e.g. {c['unmatched_taxa']}"
             if c["num_unmatched"] else ""))
    print(evaluate.format_table(report))
    print(f"report: {flags.get('out') or os.path.join(report['prior']['run'], REPORT_FILE)}")
    for p in report.get("plots", []):
      print(f"figure: {p}")
  return run_cli(argv, body, __doc__, flags=FLAGS)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
