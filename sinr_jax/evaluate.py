"""Evaluate a trained run on the SINR paper's four benchmarks.

  python -m sinr_jax.evaluate --run=runs/X [--tasks=snt,iucn,geo_prior,geo_feature]
      [--data_dir=DATA] [--allow_pickle] [--out=FILE] [--sim_dir=DIR] [--seed=0]

--data_dir is the published `data/` tree (eval/snt, eval/iucn, ..., masks/). Without it the run's
simulated world gets simulated equivalents of the four tasks, generated once into --sim_dir
(default <run>/eval_data) and reused. --allow_pickle is needed for the published S&T file, a
pickle; simulated files are read after their SHA-256 matches the generator's manifest. Writes
<run>/eval_metrics.json (or --out) and prints a table.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time

from ecorep.cli import flag_is_true, parse_flags, run_cli
from ecorep import io
from sinr_jax import evaluators, load, rundir
from sinr_jax.errors import SinrInputError
from sinr_jax.evaluators import simulated

_log = logging.getLogger("sinr_jax.evaluate")
FLAGS = ("run", "tasks", "data_dir", "allow_pickle", "out", "sim_dir", "seed")
HEADLINE = {"snt": "test_map", "iucn": "map", "geo_prior": "delta_top1",
            "geo_feature": "mean_test_r2"}


def world_dir_of(run_dir: str) -> str:
  """The simulated world a run was trained on (regenerated from its config if it is missing)."""
  from sinr_jax.data import ensure_world
  path = os.path.join(run_dir, rundir.CONFIG_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)["data"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise SinrInputError(f"cannot read the run's config ({e!r})", file=path) from e
  if data.get("train_file"):
    raise SinrInputError(
        f"this run was trained on {data['train_file']}, not the simulated world, so there are no "
        "simulated tasks for it: pass --data_dir with the published evaluation files", file=path)
  return ensure_world(data.get("world_dir") or os.path.join(run_dir, "world"), data["world"])


def evaluate_run(run_dir: str, tasks=evaluators.TASKS, *, data_dir: str | None = None,
                 allow_pickle: bool = False, sim_dir: str | None = None, seed: int = 0,
                 out: str | None = None, predictor=None) -> dict:
  """Runs `tasks` on the run's model and writes the metrics JSON; returns what it wrote."""
  run_dir = os.path.abspath(run_dir)
  for t in tasks:
    if t not in evaluators.REGISTRY:
      raise SinrInputError(f"unknown task {t!r}; choose from {', '.join(evaluators.TASKS)}",
                           field="tasks")
  predictor = predictor or load(run_dir)
  if data_dir is None:
    data_dir = sim_dir or os.path.join(run_dir, "eval_data")
    t0 = time.perf_counter()
    simulated.ensure_simulated(world_dir_of(run_dir), data_dir, seed=seed)
    _log.info("simulated tasks ready in %s (%.1f s)", data_dir, time.perf_counter() - t0)
  data_dir = os.path.abspath(data_dir)
  is_sim = simulated.verified_simulated(data_dir) is not None
  results, seconds = {}, {}
  for task in tasks:
    t0 = time.perf_counter()
    options = {"allow_pickle": allow_pickle or is_sim} if task == "snt" else {}
    results[task] = evaluators.make(task, data_dir, **options).run(predictor)
    seconds[task] = time.perf_counter() - t0
    _log.info("%s: %s = %.4f (%.1f s)", task, HEADLINE[task], results[task][HEADLINE[task]],
              seconds[task])
  report = {"run": run_dir, "step": getattr(predictor, "step", None), "data_dir": data_dir,
            "simulated": is_sim, "tasks": results, "seconds": seconds}
  io.write_json(out or os.path.join(run_dir, "eval_metrics.json"), _json_safe(report))
  return report


def _json_safe(x):
  """NaN (an undefined metric) becomes null: JSON has no NaN."""
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  return None if isinstance(x, float) and math.isnan(x) else x


def format_table(report: dict) -> str:
  lines = [f"{'task':<12} {'metric':<36} {'value':>10}"]
  for task, metrics in report["tasks"].items():
    head = HEADLINE[task]
    shown = [head] + [k for k in metrics if k != head and not k.startswith(("train_r2_", "alpha_"))]
    for k in shown:
      v = metrics[k]
      value = f"{v:10.0f}" if (k.startswith("num_") or k == "k") and v == v else f"{v:10.4f}"
      lines.append(f"{task if k == head else '':<12} {k:<36} {value}")
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  def body(argv):
    flags = parse_flags(argv, FLAGS, required=("run",))
    tasks = [t.strip() for t in flags.get("tasks", ",".join(evaluators.TASKS)).split(",")
             if t.strip()]
    report = evaluate_run(flags["run"], tasks, data_dir=flags.get("data_dir"),
                          allow_pickle=flag_is_true(flags, "allow_pickle"),
                          sim_dir=flags.get("sim_dir"), seed=int(flags.get("seed", 0)),
                          out=flags.get("out"))
    kind = "simulated tasks" if report["simulated"] else "evaluation data"
    print(f"\n=== SINR evaluation of {report['run']} (step {report['step']}) on {kind} in "
          f"{report['data_dir']} ===")
    print(format_table(report))
    print(f"metrics: {flags.get('out') or os.path.join(report['run'], 'eval_metrics.json')}")
  return run_cli(argv, body, __doc__, errors=(ValueError,))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
