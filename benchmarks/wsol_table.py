"""The structure of the seed's Table 4.2 and Figs. 4.3–4.5 (WSOL and label granularity) on the
real-pixel set: real MNIST digits pasted on real photographs (vision_jax.wsol.synthetic), with a
four-level hierarchy kingdom > order > family > species whose species are look-alike digits.

1. Initialisation: a SimCLR run of this project on the 4,000 training digits of mnist_5k
   (labels unused) with the WSOL backbone (ResNet-10, base width 8, small stem; 24 px), or
   --init=<encoder run>. Every WSOL run starts from it.
2. Table 4.2: CAM, HaS, ADL and CutMix trained at each level (species, family, order; c_k(y)),
   each (method, level) with its own learning-rate search on D_f; CAM-Agg of the species CAM
   model at family, order and kingdom; the Center and FSL-Seg baselines. Test MaxBoxAccV2 (and
   its IoU 0.3/0.5/0.7 parts), PxAP (the set has exact masks) and top-1 at the level.
3. Fig. 4.3: MaxBoxAccV2 of CAM against the training level (the table's CAM rows).
4. Fig. 4.4: data efficiency, CAM at each level with 50/100/200 D_w images per category at that
   level, --seeds seeds each (the level's learning rate from step 2, --steps steps for every
   size), mean ± std.
5. Fig. 4.5: at each level, the predicted / true box-area ratio, the activation inside and
   outside the box, and connected components per binarised map (vision_jax.wsol.analysis).
6. Whether the seed's four findings hold here; overlay PNGs (CAM, true and predicted boxes)
   for every level in <workdir>/overlays/.

  python benchmarks/wsol_table.py [--workdir=runs/wsol_table]
      [--seeds=2] [--steps=100] [--batch=32] [--quick] [--smoke] [--init=<run>] [--no_record]
Every run trains --steps steps of --batch images (CPU time: ~10 min on 2 cores with the
defaults); no data-efficiency run starts after --budget_min minutes (seed 0 of every cell
first). Runs are cached in --workdir (a rerun restores finished runs instead of retraining
them; change the sizes only with a new --workdir).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from ecorep import io  # noqa: E402
from ecorep.config import load_config  # noqa: E402
from results import update_section  # noqa: E402
from vision_jax.encoder import load_encoder  # noqa: E402
from vision_jax.wsol import train  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "wsol.py")
LEVELS = ("species", "family", "order")          # training levels, fine to coarse
WSOL = ("cam", "has", "adl", "cutmix")
FAR = 5.0      # "far above CAM": more than this many MaxBoxAccV2 points
SIZES = (50, 100, 200)  # D_w images per category (Fig. 4.4)
SIMCLR = ["--config=configs/simclr.py:demo", "--config.model.depth=10",
          "--config.model.base_width=8", "--config.model.small_stem=true",
          "--config.data.image_size=24", "--config.train.max_steps=250"]


def pretrain(workdir: str) -> str:
  from vision_jax import pretrain as pretrain_lib
  run = os.path.join(workdir, "simclr_init")
  if not os.path.isdir(os.path.join(run, "checkpoints")) or "250" not in os.listdir(
      os.path.join(run, "checkpoints")):
    cfg = load_config(SIMCLR[0].split("=", 1)[1],
                      [a[len("--config."):] for a in SIMCLR[1:]])
    pretrain_lib.train(cfg, run)
  return run


def config(tokens: str, args, **over):
  o = {"init.run": args.init, "train.lr": args.lr, "fsl.lr": args.lr,
       "train.num_epochs": 1e6, "train.max_steps": args.steps, "train.batch_size": args.batch,
       "fsl.batch_size": args.batch, "data.synthetic.train_per_class": args.per_class,
       "data.synthetic.val_per_class": args.val_per_class,
       "data.synthetic.test_per_class": args.test_per_class, **args.extra, **over}
  return load_config(f"{CONFIG}:{tokens}", o)


def pct(x) -> str:
  return "–" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def run(name: str, cfg, ds, enc, args, optional: bool = False) -> dict | None:
  if args.report_only:   # the results a finished run wrote (None: an optional run never ran)
    path = os.path.join(args.workdir, name, "results.json")
    if optional and not os.path.exists(path):
      return None
    with open(path) as f:
      return json.load(f)
  t = time.perf_counter()
  r = train.run(cfg, os.path.join(args.workdir, name), dataset=ds, encoder=enc)
  print(f"{name}: {train.describe(r)} ({time.perf_counter() - t:.0f} s)", flush=True)
  if r.get("overlays"):
    os.makedirs(os.path.join(args.workdir, "overlays"), exist_ok=True)
    shutil.copy(r["overlays"], os.path.join(args.workdir, "overlays", f"{name}.png"))
  return r


def main(argv=None) -> int:
  p = argparse.ArgumentParser()
  p.add_argument("--workdir", default=os.path.join(ROOT, "runs", "wsol_table"))
  p.add_argument("--init", default="")
  p.add_argument("--seeds", type=int, default=2)
  p.add_argument("--lr", default="(0.03, 0.1)", help="the grid searched on D_f")
  p.add_argument("--search", choices=("cam", "all"), default="cam",
                 help="cam: HaS/ADL/CutMix take CAM's learning rate at their level (CPU time); "
                      "all: every (method, level) searches the grid")
  p.add_argument("--steps", type=int, default=100, help="SGD steps of every run")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--per_class", type=int, default=100, help="D_w images per species")
  p.add_argument("--val_per_class", type=int, default=20, help="D_f images per species")
  p.add_argument("--test_per_class", type=int, default=30, help="D_test images per species")
  p.add_argument("--quick", action="store_true", help="CAM rows and baselines only")
  p.add_argument("--smoke", action="store_true", help="2 steps per run: checks the pipeline")
  p.add_argument("--no_record", action="store_true")
  p.add_argument("--budget_min", type=float, default=14.0,
                 help="start no data-efficiency run after this many minutes (0: no limit); "
                      "seeds run one after the other, so every cell gets its first seed first")
  p.add_argument("--report_only", action="store_true",
                 help="rebuild the report from the finished runs of --workdir (no training)")
  args = p.parse_args(argv)
  if args.smoke:
    args.extra = {"fsl.num_epochs": 0.1}
    args.steps, args.batch, args.seeds = 2, 8, 1
    args.per_class, args.val_per_class, args.test_per_class = 4, 3, 3
  else:
    args.extra = {}
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  t0 = time.perf_counter()
  summary_path = os.path.join(args.workdir, "summary.json")
  if args.report_only:
    saved = {}   # a run killed before the end wrote none: sizes and times from the runs
    if os.path.exists(summary_path):
      with open(summary_path) as f:
        saved = json.load(f)
    args.init = saved.get("init", os.path.join(args.workdir, "simclr_init"))
    enc, ds = None, None
  else:
    args.init = args.init or pretrain(args.workdir)
    enc = load_encoder(args.init)
    ds = train.load_dataset(config("cam", args))
  methods = ("cam",) if args.quick else WSOL
  seeds = args.seeds

  rows = {}                                           # (method, level) -> results
  for level in LEVELS:
    for method in methods:
      over = {}
      if method != "cam" and args.search == "cam":
        over["train.lr"] = (rows["cam", level]["selected"]["lr"],)
      rows[method, level] = run(f"{method}_{level}", config(f"{method},{level}", args, **over),
                                ds, enc, args)
  for level in ("family", "order", "kingdom"):   # the species CAM runs, restored
    cfg = config(f"cam_agg,{level}", args,
                 **{"train.runs_dir": os.path.join(args.workdir, "cam_species")})
    rows["cam_agg", level] = run(f"cam_agg_{level}", cfg, ds, enc, args)
  rows["center", "-"] = run("center", config("center", args), ds, None, args)
  rows["fsl_seg", "-"] = run("fsl_seg", config("fsl_seg", args), ds, enc, args)

  # Data efficiency: n images per category at the training level, drawn from a D_w of 200 per
  # species (same D_f and D_test); each level's learning rate from the table; every size gets
  # the table's number of steps.
  t_table = time.perf_counter() - t0
  eff_ds = None if args.report_only else train.load_dataset(
      config("cam", args, **{"data.synthetic.train_per_class": 200}))
  eff, skipped = {}, 0
  for seed in range(seeds):
    for level in LEVELS:
      for n in SIZES:
        if (not args.report_only and args.budget_min > 0
                and time.perf_counter() - t0 > 60 * args.budget_min):
          skipped += 1
          continue
        cfg = config(f"cam,{level}", args, **{
            "train.lr": (rows["cam", level]["selected"]["lr"],), "data.per_class": n,
            "data.subset_seed": seed, "seed": seed, "eval.overlays": 0,
            "data.synthetic.train_per_class": 200})
        r = run(f"eff_{level}_{n}_s{seed}", cfg, eff_ds, enc, args, optional=True)
        if r is not None:
          eff.setdefault((level, n), []).append(r["test"]["maxboxacc"])
  if args.report_only:
    sizes = saved.get("sizes", {"image_size": 32, "train": 10 * args.per_class,
                                "val": 10 * args.val_per_class,
                                "test": 10 * args.test_per_class})
    seconds = saved.get("seconds") or _run_seconds(rows, eff, args)
  else:
    sizes = {"image_size": ds.image_size, "train": len(ds.train), "val": len(ds.val),
             "test": len(ds.test)}
    seconds = (t_table, time.perf_counter() - t0, os.getloadavg()[0])
    io.write_json(summary_path, {
        "init": args.init, "sizes": sizes, "seconds": seconds,
        "rows": {f"{m}|{l}": {k: v for k, v in r.items() if k != "search"}
                 for (m, l), r in rows.items()},
        "efficiency": {f"{l}|{n}": v for (l, n), v in eff.items()}})
  if skipped:
    print(f"time budget ({args.budget_min:g} min) spent: {skipped} data-efficiency runs "
          "not started", flush=True)
  body = report(rows, eff, methods, args, seconds, sizes)
  print(body)
  if not args.no_record:
    update_section("wsol", body)
  return 0


def _run_seconds(rows, eff, args) -> tuple[float, float, float]:
  """(table, all, load) from the runs' own timings (a summary written without them)."""
  table = sum(r["seconds"] for r in rows.values())
  names = [f"eff_{l}_{n}_s{s}" for (l, n), v in eff.items() for s in range(len(v))]
  effs = sum(run(n, None, None, None, args)["seconds"] for n in names)
  return table, table + effs, float("nan")


def report(rows, eff, methods, args, seconds, sizes) -> str:
  t = lambda m, l: rows[m, l]["test"]  # noqa: E731
  lines = [
      f"Real-pixel set (vision_jax.wsol.synthetic): {sizes['image_size']} px canvases, one "
      "real MNIST digit on a crop of a (slightly blurred) scikit-image photograph; D_w "
      f"{sizes['train']} ({args.per_class} per species), D_f {sizes['val']}, D_test "
      f"{sizes['test']} images with exact boxes and masks; hierarchy kingdom (1) > order (2) > "
      "family (5) > species (10, look-alike digits). ResNet-10 (base width 8, small stem, "
      f"layer 4 at stride 1: {sizes['image_size'] // 4}x{sizes['image_size'] // 4} CAMs) from "
      "a SimCLR run "
      f"on mnist_5k (`{os.path.relpath(args.init, ROOT)}`); SGD (momentum 0.9, cosine), "
      f"{args.steps} steps of {args.batch} images per run; the learning rate picked on D_f "
      f"from {args.lr} per "
      + ("level for CAM (HaS, ADL and CutMix take CAM's at their level: CPU time)"
         if args.search == "cam" else "(method, level)")
      + ". Numbers are test-set percentages.", "",
      "**Table 4.2 (shape): test MaxBoxAccV2 by training level**", "",
      "| method | " + " | ".join(LEVELS) + " |", "|---|" + "---|" * len(LEVELS)]
  for m in methods:
    lines.append(f"| {m.upper() if m != 'cutmix' else 'CutMix'} | " + " | ".join(
        pct(t(m, l)["maxboxacc"]) for l in LEVELS) + " |")
  lines.append(f"| CAM-Agg (species model; kingdom {pct(t('cam_agg', 'kingdom')['maxboxacc'])})"
               " | " + pct(t("cam", "species")["maxboxacc"]) + " | "
               + " | ".join(pct(t("cam_agg", l)["maxboxacc"]) for l in ("family", "order"))
               + " |")
  lines.append(f"| Center (σ {rows['center', '-']['selected']['sigma']:g}) | "
               + " | ".join([pct(t("center", "-")["maxboxacc"])] * len(LEVELS)) + " |")
  lines.append("| FSL-Seg (D_f boxes only) | "
               + " | ".join([pct(t("fsl_seg", "-")["maxboxacc"])] * len(LEVELS)) + " |")
  lines += ["", "Details (test): MaxBoxAccV2 = mean of BoxAcc at IoU 0.3/0.5/0.7; PxAP; top-1 "
            "at the level; selected learning rate.", "",
            "| run | MaxBoxAccV2 | IoU .3 / .5 / .7 | PxAP | top-1 | selected |",
            "|---|---|---|---|---|---|"]
  for (m, l), r in rows.items():
    x = r["test"]
    sel = ", ".join(f"{k} {v:g}" for k, v in r["selected"].items())
    lines.append(f"| {m} @ {l} | {pct(x['maxboxacc'])} | {pct(x['boxacc@30'])} / "
                 f"{pct(x['boxacc@50'])} / {pct(x['boxacc@70'])} | {pct(x.get('pxap'))} | "
                 f"{pct(x.get('top1'))} | {sel} |")
  lines += ["", "**Fig. 4.4 (shape): data efficiency, CAM test MaxBoxAccV2 (mean ± std over "
            f"seeds, their number in brackets: {args.seeds} asked, fewer where the time budget "
            "ran out) by D_w images per category at the training level**", "",
            "| level | 50 | 100 | 200 |", "|---|---|---|---|"]
  for l in LEVELS:
    cells = []
    for n in SIZES:
      v = 100 * np.asarray(eff.get((l, n), []))
      cells.append(f"{v.mean():.1f} ± {v.std():.1f} ({len(v)})" if len(v) > 1
                   else f"{v.mean():.1f} (1)" if len(v) else "– (not run)")
    lines.append(f"| {l} | " + " | ".join(cells) + " |")
  lines += ["", "**Fig. 4.5 (shape): CAM maps at the IoU-0.5 operating threshold τ**", "",
            "| training level | τ | box area ratio (median) | activation inside / outside "
            "the box | components per map |", "|---|---|---|---|---|"]
  for l in LEVELS:
    a = rows["cam", l].get("analyses", {})
    lines.append(f"| {l} | {a.get('tau', float('nan')):.2f} | "
                 f"{a.get('box_area_ratio_median', float('nan')):.2f} | "
                 f"{pct(a.get('inside_share_mean'))} / {pct(a.get('outside_share_mean'))} | "
                 f"{a.get('components_mean', float('nan')):.2f} |")
  lines += ["", "**The seed's findings here**", ""] + findings(rows, methods, sizes["test"])
  lines += ["", f"Overlays (image with true box in green and predicted box in red | CAM): "
            f"`{os.path.relpath(os.path.join(args.workdir, 'overlays'), ROOT)}/<run>.png`. "
            f"Time: {seconds[0] / 60:.1f} min for the table, {seconds[1] / 60:.1f} min in all "
            + (f"(1-min load average {seconds[2]:.1f} at the end on {os.cpu_count()} cores: "
               "other jobs shared the machine when it is above the core count)."
               if np.isfinite(seconds[2]) else "(the sum of the runs' own times).")]
  return "\n".join(lines)


def findings(rows, methods, num_test: int) -> list[str]:
  """Each finding: holds / does not hold, or 'within noise' when the deciding difference is
  below two binomial standard errors of an accuracy on `num_test` images (at 50%: the largest)."""
  acc = lambda m, l: 100 * rows[m, l]["test"]["maxboxacc"]  # noqa: E731
  noise = 2 * 100 * np.sqrt(0.25 / num_test)       # two standard errors, in points

  def verdict(gap: float, holds: bool) -> str:
    if abs(gap) < noise:
      return f"within noise (|{gap:+.1f}| < {noise:.1f} points, 2 SE on {num_test} images)"
    return "holds" if holds else "does not hold"
  out = [f"(A difference below {noise:.1f} points, two binomial standard errors on "
         f"{num_test} test images, cannot be told apart at this scale.)", ""]
  if len(methods) > 1:
    gaps = {(m, l): acc(m, l) - acc("cam", l) for m in methods if m != "cam" for l in LEVELS}
    worst = max(gaps, key=gaps.get)
    out.append(f"- No WSOL method far above CAM (> {FAR:g} points): "
               f"{'holds' if gaps[worst] <= FAR else 'does not hold'} (largest gain "
               f"{gaps[worst]:+.1f}: {worst[0]} at {worst[1]}).")
  best = max(((m, l) for m in methods for l in LEVELS), key=lambda k: acc(*k))
  fsl = acc("fsl_seg", "-")
  out.append(f"- FSL-Seg beats WSOL: {verdict(fsl - acc(*best), fsl > acc(*best))} (FSL-Seg "
             f"{fsl:.1f} vs the best WSOL row, {best[0]} at {best[1]}, {acc(*best):.1f}).")
  cams = [acc("cam", l) for l in LEVELS]
  k = 1 + int(np.argmax(cams[1:]))                  # the best coarser level
  gain = cams[k] - cams[0]
  text = ("(CAM species / family / order: " + " / ".join(f"{c:.1f}" for c in cams)
          + f"; the best coarser level: {LEVELS[k]})")
  if gain < noise:
    out.append(f"- Coarser training labels localise better: {verdict(gain, gain > 0)} {text}.")
  elif k < len(LEVELS) - 1:
    drop = cams[k] - cams[-1]
    out.append(f"- Coarser training labels localise better, up to a point: holds up to "
               f"{LEVELS[k]}; beyond it, {verdict(-drop, False)} {text}.")
  else:
    out.append(f"- Coarser training labels localise better: holds {text}; 'up to a point' "
               "cannot be checked here: the next level, kingdom, has one class (nothing to "
               "train).")
  agg = {l: acc("cam_agg", l) for l in ("family", "order", "kingdom")}
  level = max(agg, key=agg.get)
  out.append(f"- CAM-Agg helps: {verdict(agg[level] - cams[0], agg[level] > cams[0])} "
             f"(species CAM {cams[0]:.1f}; CAM-Agg of that model at family / order / kingdom "
             + " / ".join(f"{v:.1f}" for v in agg.values()) + ").")
  return out


if __name__ == "__main__":
  sys.exit(main())
