"""Seed Tables 7.1 and 7.2 (Mac Aodha, Cole & Perona, ICCV 2019) on the simulated world.

Trains the geo prior (configs/geo_prior.py) and its ablations on one simulated world with
migratory species and photographer habits, generates simulated classifier outputs for validation
and test images (sinr_jax/geo_prior/simulated.py: look-alike confusions, top-1 0.65), and reports
  Table 7.1  top-1/3/5 of the classifier alone, with each baseline prior (nearest neighbour num /
             spatial, discretized grid, adaptive KDE, Tang et al.; hyperparameters and uniform
             floor chosen on validation) and with the learned prior (β = 1, and β tuned)
  Table 7.2  the learned prior's variants: full, no date, no photographer, no wrap, with top-1 on
             all test images, on images of migrants and on the off-season split
and whether the seed's findings hold here. Also writes the seed's figures (PNGs) of the full
model to --figures.

  python benchmarks/geo_prior_table.py [--workdir=runs/geo_prior_table] [--epochs=30]
      [--species=500] [--variants=full,no_date,no_photographer,no_wrap]
      [--figures=<workdir>/s<species>_e<epochs>/figures] [--no_record] [--summary_json=F]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ecorep.config import load_config  # noqa: E402
from results import update_section  # noqa: E402
from sinr_jax.geo_prior import evaluate, plots, simulated  # noqa: E402
from sinr_jax.geo_prior.classifier_file import read_classifier  # noqa: E402
from sinr_jax.data import world_directory  # noqa: E402
from sinr_jax.geo_prior.data import load_geo_prior_data  # noqa: E402
from sinr_jax.geo_prior.predictor import load  # noqa: E402
from sinr_jax.train import train  # noqa: E402

VARIANTS = ("full", "no_date", "no_photographer", "no_wrap")
SUBSETS = ("migrant", "offseason")


def config(args, variant, world_dir):
  return load_config(os.path.join(ROOT, f"configs/geo_prior.py:{variant}"), [
      f"data.world_dir={world_dir}", f"data.world.num_species={args.species}",
      f"train.num_epochs={args.epochs}", "train.log_every=100", "train.checkpoint_every=500"])


def logged_seconds(run: str) -> float:
  """Training time of a run finished by an earlier invocation (resumed here as complete): the
  span of its metrics.jsonl timestamps, extrapolated from the first logged step back to step 0."""
  rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
  rows = [r for r in rows if "time" in r and "step" in r]
  first, last = rows[0], rows[-1]
  return (last["time"] - first["time"]) * last["step"] / max(last["step"] - first["step"], 1)


def pct(x) -> str:
  return "—" if x is None or x != x else f"{100 * x:.1f}"


def table_71(report) -> str:
  lines = ["| method | top-1 | top-3 | top-5 | Δ top-1 | chosen on validation |",
           "|---|---|---|---|---|---|"]
  for key, m in report["methods"].items():
    t = m["test"]
    gain = f"{100 * m['gain']['top1']:+.1f}" if "gain" in m else ""
    hyper = ", ".join(f"{k} {v}" for k, v in m.get("hyper", {}).items())
    lines.append(f"| {evaluate.NAMES[key]} | {pct(t['top1'])} | {pct(t.get('top3'))} | "
                 f"{pct(t.get('top5'))} | {gain} | {hyper} |")
  return "\n".join(lines)


def table_72(by_variant, base) -> str:
  head = ("| variant | top-1 | Δ top-1 | top-3 | " + " | ".join(f"{s} top-1" for s in SUBSETS)
          + " | train s |\n|" + "---|" * (5 + len(SUBSETS)) + "\n")
  rows = [f"| no prior | {pct(base['top1'])} | | {pct(base.get('top3'))} | "
          + " | ".join(pct(base.get(f"{s}/top1")) for s in SUBSETS) + " | |"]
  for v, (t, seconds) in by_variant.items():
    rows.append(f"| {v} | {pct(t['top1'])} | {100 * (t['top1'] - base['top1']):+.1f} | "
                f"{pct(t.get('top3'))} | " + " | ".join(pct(t.get(f"{s}/top1")) for s in SUBSETS)
                + f" | {seconds:.0f} |")
  return head + "\n".join(rows)


def findings(report, by_variant) -> list[str]:
  m = report["methods"]
  out = []
  gain = m["prior"]["gain"]["top1"]
  out.append(f"The prior raises top-1 substantially: {100 * gain:+.1f} points (β = 1) → "
             + ("holds" if gain >= 0.05 else "does not hold (threshold +5 points)"))
  baselines = {k: v["test"]["top1"] for k, v in m.items()
               if k not in ("no_prior", "prior", "prior_tuned")}
  if baselines:
    best = max(baselines, key=baselines.get)
    ours = m["prior"]["test"]["top1"]
    out.append(f"Ours ≥ every baseline: {pct(ours)} vs the best baseline "
               f"({evaluate.NAMES[best]}) {pct(baselines[best])} → "
               + ("holds" if ours >= baselines[best] else "does not hold"))
  t = {v: r[0] for v, r in by_variant.items()}
  if "full" in t and "no_date" in t:
    d = {s: t["full"].get(f"{s}/top1", float("nan")) - t["no_date"].get(f"{s}/top1", float("nan"))
         for s in SUBSETS}
    overall = t["full"]["top1"] - t["no_date"]["top1"]
    out.append(f"Date helps for migratory species: full − no date = {100 * d['migrant']:+.1f} "
               f"points on migrant images, {100 * d['offseason']:+.1f} on the off-season split, "
               f"{100 * overall:+.1f} overall → "
               + ("holds" if d["migrant"] > 0 and d["offseason"] > 0 else "does not hold"))
  if "full" in t and "no_photographer" in t:
    d = t["full"]["top1"] - t["no_photographer"]["top1"]
    out.append(f"The photographer term helps a little: full − no photographer = {100 * d:+.1f} "
               "points → " + ("holds" if 0 < d <= 0.02 else
                              "helps more than a little" if d > 0.02 else "does not hold"))
  if "full" in t and "no_wrap" in t:
    d = t["full"]["top1"] - t["no_wrap"]["top1"]
    out.append(f"Wrapped inputs vs raw (no wrap): {100 * d:+.1f} points")
  return out


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", default=os.path.join(ROOT, "runs", "geo_prior_table"))
  p.add_argument("--epochs", type=int, default=30)
  p.add_argument("--species", type=int, default=500)
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--figures", default="", help="where the PNGs go; default <workdir>/<size>/"
                 "figures (runs/ is git-ignored)")
  p.add_argument("--no_record", action="store_true")
  p.add_argument("--summary_json", default="")
  args = p.parse_args()
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
  logging.getLogger("sinr_jax").setLevel(logging.INFO)
  t_start = time.perf_counter()
  work = os.path.abspath(os.path.join(args.workdir, f"s{args.species}_e{args.epochs}"))
  world_dir = os.path.join(work, "world")
  variants = [v.strip() for v in args.variants.split(",") if v.strip()]
  args.figures = os.path.abspath(args.figures or os.path.join(work, "figures"))
  seconds, earlier = {}, []
  for v in variants:
    run, t = os.path.join(work, v), time.perf_counter()
    done = os.path.isdir(os.path.join(run, "inference"))
    train(config(args, v, world_dir), run)
    seconds[v] = logged_seconds(run) if done else time.perf_counter() - t
    earlier += [v] if done else []
    print(f"trained {v} in {seconds[v]:.0f} s" + (" (earlier invocation)" if done else ""),
          flush=True)
  cfg = config(args, variants[0], world_dir)
  sim_dir = os.path.join(work, "eval_data")
  manifest = simulated.ensure_simulated(world_directory(cfg, work), sim_dir)
  val = read_classifier(*simulated.split_files(sim_dir, "val"))
  test = read_classifier(*simulated.split_files(sim_dir, "test"))
  main_run = os.path.join(work, variants[0])
  t = time.perf_counter()
  report = evaluate.evaluate(load(main_run), val, test,
                             train=load_geo_prior_data(cfg, main_run))
  eval_s = time.perf_counter() - t
  print(evaluate.format_table(report), flush=True)
  by_variant = {}
  for v in variants:
    r = report if v == variants[0] else evaluate.evaluate(load(os.path.join(work, v)), val, test,
                                                          baselines=())
    by_variant[v] = (r["methods"]["prior"]["test"], seconds[v])
  figures = plots.write_all(main_run, args.figures)
  total = time.perf_counter() - t_start
  data = load_geo_prior_data(cfg, main_run)
  s = manifest["summary"]["test"]
  world = json.load(open(os.path.join(world_dir, "world.json")))["summary"]
  body = (
      f"Simulated world: {world['num_species']} species ({world.get('num_migratory', 0)} "
      f"migratory), {world['num_observations']:,} training observations by "
      f"{world['num_users']} photographers (home ranges, taxon preferences), truth on H3 res-3 "
      f"cells; {len(data.photographers) - 1} photographers with ≥ "
      f"{cfg.data.min_photographer_obs} observations get their own embedding. Each model: "
      f"{args.epochs} epochs of at most {cfg.data.cap} observations per class re-drawn each "
      f"epoch, batch {cfg.train.batch_size}, Adam 5e-4 ×0.98 per epoch, D {cfg.model.width}. "
      f"Classifier: simulated, look-alike confusions (genera of 5 + each migrant's resident "
      f"look-alikes), top-10 kept, top-1 {pct(s['vision_top1'])}% on {s['images']:,} test "
      f"images (another {manifest['summary']['val']['images']:,} for validation; "
      f"{s.get('num_migrant', 0)} migrant images, {s.get('num_offseason', 0)} in the off-season "
      f"split). Evaluation {eval_s / 60:.1f} min; whole run {total / 60:.1f} min"
      + (f" (trained by an earlier invocation in the same workdir and resumed complete here: "
         f"{', '.join(earlier)}; their train s come from metrics.jsonl timestamps)"
         if earlier else "") + ".\n\n"
      "**Table 7.1** (test, %):\n\n" + table_71(report)
      + "\n\n**Table 7.2** (test top-1 %, β = 1):\n\n"
      + table_72(by_variant, report["methods"]["no_prior"]["test"])
      + "\n\n**The seed's findings on these numbers**\n\n"
      + "\n".join(f"- {f}" for f in findings(report, by_variant))
      + "\n\nFigures (" + os.path.relpath(args.figures, ROOT) + "): "
      + ", ".join(os.path.basename(f) for f in figures) + ".")
  print("\n" + body)
  if not args.no_record:
    update_section("Geo prior Tables 7.1 and 7.2 on the simulated world (cpu)", body)
  if args.summary_json:
    with open(args.summary_json, "w") as f:
      json.dump({"report": report, "variants": {k: v[0] for k, v in by_variant.items()},
                 "seconds": seconds, "minutes": total / 60}, f, indent=1, default=float)


if __name__ == "__main__":
  main()
