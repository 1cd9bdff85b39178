"""`make demo`: train SINR and the logistic-regression baseline on the simulated world, evaluate
both against the true ranges, write metrics, curves and range maps.

  python -m sinr_jax.demo --workdir=runs/demo [--config=configs/sinr.py:demo] [--num_maps=6]
      [--config.<key>=<value> ...]   e.g. --config.data.world.seed=3
                                     --config.data.world.num_species=200

The overrides apply to the SINR run and to the logistic-regression baseline alike (same world).
"""
from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np

from ecorep import io
from ecorep.cli import parse_config_flags, run_cli
from ecorep.config import load_config
from ecorep.errors import ConfigError
from sinr_jax import load
from sinr_jax.maps import save_range_maps
from sinr_jax.scoring import evaluate_ranges
from sinr_jax.train import train
from sinr_jax.world import load_world

_log = logging.getLogger("sinr_jax.demo")
DEFAULT_CONFIG = "sinr_jax.configs.sinr:demo"  # carried by the package
FLAGS = ("workdir", "num_maps")


def pick_map_taxa(world, aps: dict, n: int) -> list[int]:
  """Species spread over range sizes, from small to continental."""
  sizes = np.asarray(world.presence.sum(axis=1)).ravel()
  order = [i for i in np.argsort(sizes) if int(world.taxa[i]) in aps]
  picks = np.linspace(0, len(order) - 1, n).round().astype(int)
  return [int(world.taxa[order[i]]) for i in dict.fromkeys(picks)]


def run_demo(workdir: str, config_spec: str = DEFAULT_CONFIG, overrides=(), num_maps: int = 6) -> dict:
  workdir = os.path.abspath(workdir)
  cfg = load_config(config_spec, overrides)
  lr_cfg = load_config(config_spec + ",lr", overrides)
  world_dir = cfg.data.world_dir or os.path.join(workdir, "world")  # an override is kept
  with cfg.unlocked(), lr_cfg.unlocked():
    cfg.data.world_dir = lr_cfg.data.world_dir = world_dir
  timings = {}
  t0 = time.perf_counter()
  sinr_run = train(cfg, workdir)
  timings["sinr_train_seconds"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  lr_dir = os.path.join(workdir, "baseline_lr")
  train(lr_cfg, lr_dir)
  timings["lr_train_seconds"] = time.perf_counter() - t0

  world = load_world(world_dir)
  sinr_model, lr_model = load(workdir), load(lr_dir)
  t0 = time.perf_counter()
  sinr_eval = evaluate_ranges(sinr_model, world.cell_lonlat, world.presence, world.taxa)
  lr_eval = evaluate_ranges(lr_model, world.cell_lonlat, world.presence, world.taxa)
  timings["eval_seconds"] = time.perf_counter() - t0

  taxa = pick_map_taxa(world, sinr_eval["per_species_ap"], num_maps)
  rows = {int(t): i for i, t in enumerate(world.taxa)}
  truth = {t: world.cell_lonlat[world.presence[rows[t]].indices] for t in taxa}
  obs = world.observations
  obs_by_taxon = {t: obs.loc[obs.taxon_id == t, ["longitude", "latitude"]].to_numpy() for t in taxa}
  names = dict(zip(world.taxa.tolist(), world.taxon_names()))
  map_paths = save_range_maps(sinr_model, taxa, os.path.join(workdir, "maps"),
                              truth_lonlat=truth, obs_lonlat=obs_by_taxon, names=names)

  summary = lambda e: {k: v for k, v in e.items() if k != "per_species_ap"}
  metrics = {
      "range_map": {"h3_res": int(world.config.h3_res), "sinr": summary(sinr_eval),
                    "logistic_regression": summary(lr_eval),
                    "map_gain_over_lr": sinr_eval["map"] - lr_eval["map"]},
      "train": {"sinr_steps": sinr_run.num_steps, "config": config_spec,
                "overrides": list(overrides),
                "observations_used": int(len(sinr_run.data.labels)),
                "species": int(len(sinr_run.data.class_index))},
      "timings": timings,
      "per_species_ap": {"sinr": sinr_eval["per_species_ap"], "logistic_regression": lr_eval["per_species_ap"]},
      "maps": [os.path.relpath(p, workdir) for p in map_paths],
      "world_dir": world_dir,
  }
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  return metrics


def main(argv: list[str]) -> int:
  def body(argv):
    spec, overrides, flags = parse_config_flags(argv, FLAGS, DEFAULT_CONFIG)
    workdir = os.path.abspath(flags.get("workdir", "runs/demo"))
    try:
      num_maps = int(flags.get("num_maps", 6))
    except ValueError:
      raise ConfigError(f"--num_maps={flags['num_maps']} is not an integer",
                        field="num_maps") from None
    t0 = time.perf_counter()
    metrics = run_demo(workdir, spec, overrides, num_maps=num_maps)
    rm = metrics["range_map"]
    print("\n=== ecorep-jax demo: SINR range maps on the simulated world ===")
    print(f"range-map MAP over {rm['sinr']['num_species_evaluated']} species, "
          f"{rm['sinr']['num_cells']} H3 res-{rm['h3_res']} land cells:")
    print(f"  SINR (AN-full, ResidualFCNet)  {rm['sinr']['map']:.4f}")
    print(f"  logistic regression baseline   {rm['logistic_regression']['map']:.4f}")
    print(f"metrics:         {os.path.join(workdir, 'metrics.json')}")
    print(f"checkpoint:      {os.path.join(workdir, 'checkpoints')} (rerun to resume)")
    print(f"training curves: {os.path.join(workdir, 'plots', 'training_curves.png')}")
    print(f"range maps:      {os.path.join(workdir, 'maps')} ({len(metrics['maps'])} species)")
    print(f"world data:      {metrics['world_dir']}")
    print(f"total time:      {time.perf_counter() - t0:.0f} s")

  return run_cli(argv, body, __doc__, flags=("config", "config.<key>", *FLAGS),
                 configs=("sinr_jax.configs.sinr",))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
