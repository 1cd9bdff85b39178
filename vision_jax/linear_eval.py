"""Measures a pretrained representation: linear probe on frozen features, or fine-tuning.

  python -m vision_jax.linear_eval --run=runs/X --dataset=mnist_5k
      [--label_fraction=0.1 | --labels_per_class=10] [--finetune] [--step=N]
      [--config=configs/linear_eval.py:demo] [--config.probe.epochs=30 ...]

--dataset: a bundled set (vision_jax.datasets: mnist_5k, sklearn_digits, skimage_photos,
fashion_mnist), `folder:<root>` (root/train and root/val or root/test class folders) or
`tfds:<name>` (a prepared TFDS dataset; config data.tfds_*). Prints the metrics and merges them
into <run>/metrics.json under "<linear|finetune>/<dataset>[/frac<f>|/per_class<k>]".
"""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Sequence

import ml_collections

from ecorep import io
from ecorep.cli import run_cli
from ecorep.config import parse_cli
from ecorep.mesh import is_main_process
from vision_jax import datasets, probe, sources
from vision_jax.errors import VisionInputError

DEFAULT_CONFIG = "vision_jax.configs.linear_eval"  # carried by the package
FLAGS = ("run", "dataset", "step", "label_fraction", "labels_per_class", "finetune")


def build_sources(dataset: str, cfg: ml_collections.ConfigDict) -> tuple[Any, Any]:
  """(train source, test source) for a --dataset value."""
  kind, _, arg = dataset.partition(":")
  if kind == "folder":
    val = next((os.path.join(arg, d) for d in ("val", "test")
                if os.path.isdir(os.path.join(arg, d))), None)
    if not os.path.isdir(os.path.join(arg, "train")) or val is None:
      raise VisionInputError("folder datasets need <root>/train and <root>/val (or test)",
                             file=arg)
    train = sources.ImageFolderSource(os.path.join(arg, "train"))
    return train, sources.ImageFolderSource(val, class_names=train.class_names,
                                            skip_empty_classes=True)
  if kind == "tfds":
    data_dir = cfg.data.tfds_data_dir or None
    return (sources.TfdsSource(arg, cfg.data.tfds_train_split, data_dir),
            sources.TfdsSource(arg, cfg.data.tfds_test_split, data_dir))
  return (sources.ArraySource(*datasets.load(dataset, "train")),
          sources.ArraySource(*datasets.load(dataset, "test")))


def evaluate(run: str, dataset: str, cfg: ml_collections.ConfigDict, *, step: int | None = None,
             label_fraction: float | None = None, labels_per_class: int | None = None,
             finetune: bool = False, encoder=None) -> dict[str, Any]:
  """Runs one evaluation and returns its metrics (also merged into <run>/metrics.json)."""
  if encoder is None:
    from vision_jax.encoder import load_encoder
    encoder = load_encoder(run, step)
  train, test = build_sources(dataset, cfg)
  small = None if cfg.data.small_image < 0 else bool(cfg.data.small_image)
  tag = dataset.replace(":", "_").replace("/", "_")
  subset = {"label_fraction": label_fraction, "labels_per_class": labels_per_class}
  if finetune:
    f = cfg.finetune
    metrics = probe.fine_tune(
        encoder, train, test, epochs=f.epochs, batch_size=f.batch_size,
        lr=None if f.lr < 0 else f.lr, momentum=f.momentum, weight_decay=f.weight_decay,
        small_image=small, seed=cfg.seed, worker_count=f.worker_count, **subset)
  else:
    feats = {}
    for split, source in (("train", train), ("test", test)):
      cache = (os.path.join(run, "features", f"{tag}_{split}_step{encoder.step}.npz")
               if cfg.cache_features else None)
      feats[split] = probe.extract_features(encoder, source, cfg.feature_batch_size, cache,
                                            dataset=f"{dataset}/{split}", run_dir=run,
                                            small_image=small)
    p = cfg.probe
    metrics = probe.linear_probe(
        feats["train"], train.labels, feats["test"], test.labels, method=p.method,
        epochs=p.epochs, lr=None if p.lr < 0 else p.lr, batch_size=p.batch_size,
        momentum=p.momentum, l2=p.l2, max_iter=p.max_iter, seed=cfg.seed, **subset)
  key = f"{'finetune' if finetune else 'linear'}/{tag}"
  if label_fraction is not None:
    key += f"/frac{label_fraction:g}"
  elif labels_per_class is not None:
    key += f"/per_class{labels_per_class}"
  metrics = {"step": encoder.step, **metrics}
  if is_main_process():
    _merge_metrics(os.path.join(run, "metrics.json"), key, metrics)
  return {"key": key, **metrics}


def _merge_metrics(path: str, key: str, metrics: dict) -> None:
  table = {}
  if os.path.isfile(path):
    try:
      with open(path, encoding="utf-8") as f:
        table = json.load(f)
    except json.JSONDecodeError:
      logging.getLogger(__name__).warning("%s is not JSON; starting it afresh", path)
  table[key] = metrics
  io.write_json(path, table)


def _number(flags: dict, name: str, kind: type):
  if name not in flags:
    return None
  try:
    return kind(flags[name])
  except ValueError:
    raise VisionInputError(f"--{name}={flags[name]} is not a {kind.__name__}",
                           field=name) from None


def main(argv: Sequence[str] | None = None) -> int:
  def body(argv):
    if not any(a.startswith("--config=") for a in argv):
      argv.insert(0, f"--config={DEFAULT_CONFIG}")
    cfg, flags = parse_cli(argv, allowed=FLAGS)
    if "run" not in flags or "dataset" not in flags:
      raise VisionInputError("--run=<pretraining run dir> and --dataset=<name> are required")
    metrics = evaluate(
        flags["run"], flags["dataset"], cfg, step=_number(flags, "step", int),
        label_fraction=_number(flags, "label_fraction", float),
        labels_per_class=_number(flags, "labels_per_class", int),
        finetune=flags.get("finetune", "false").lower() in ("true", "1", "yes"))
    print(f"{metrics['key']} (step {metrics['step']}): top-1 {100 * metrics['top1']:.2f}%  "
          f"top-5 {100 * metrics['top5']:.2f}%  ({metrics['num_train']} train / "
          f"{metrics['num_test']} test images)")
    print(json.dumps(metrics, sort_keys=True, default=float))

  return run_cli(list(sys.argv[1:] if argv is None else argv), body, __doc__,
                 flags=("config", "config.<key>", *FLAGS), configs=("vision_jax.configs.linear_eval",))


if __name__ == "__main__":
  sys.exit(main())
