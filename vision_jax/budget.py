"""Label-budget curves (seed chapter 3, Fig. 3.2): accuracy against the number of labelled
training images per class, for a linear probe on frozen features and for fine-tuning, over
several seeds (each seed draws its own class-stratified subset: vision_jax.probe.label_subset).

Each curve is {"budgets": [k, ...], "runs": [[top-1 per seed] per k], "mean", "std" (sample
standard deviation over seeds; 0 with one seed), "min", "max", "num_train": [images used per
k]}. Test images without features count as errors.
"""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from vision_jax import probe
from vision_jax.errors import VisionInputError
from vision_jax.image_sets import ImageSet, TrainTest
from vision_jax.sources import SubsetSource


def _check(budgets: Sequence[int], seeds: Sequence[int]) -> tuple[list[int], list[int]]:
  budgets, seeds = [int(b) for b in budgets], [int(s) for s in seeds]
  if not budgets or min(budgets) < 1:
    raise VisionInputError(f"budgets must be positive image counts per class, got {budgets}",
                           field="budget.labels_per_class")
  if not seeds:
    raise VisionInputError("at least one seed", field="budget.seeds")
  return sorted(set(budgets)), seeds


def _curve(budgets, runs, sizes) -> dict:
  runs = np.asarray(runs, np.float64)
  std = runs.std(axis=1, ddof=1) if runs.shape[1] > 1 else np.zeros(len(budgets))
  return {"budgets": list(budgets), "runs": runs.tolist(), "mean": runs.mean(1).tolist(),
          "std": std.tolist(), "min": runs.min(1).tolist(), "max": runs.max(1).tolist(),
          "num_train": list(sizes)}


def linear_curve(data: TrainTest, budgets: Sequence[int], seeds: Sequence[int], *,
                 probe_kwargs: dict | None = None, num_classes: int | None = None) -> dict:
  budgets, seeds = _check(budgets, seeds)
  total = len(data.y_test) + data.failed_test
  runs, sizes = [], []
  for k in budgets:
    row = []
    for seed in seeds:
      fit = probe.linear_probe(data.x_train, data.y_train, data.x_test, data.y_test,
                               labels_per_class=k, seed=seed, num_classes=num_classes,
                               **(probe_kwargs or {}))
      row.append(fit["top1"] * len(data.y_test) / total)
    runs.append(row)
    sizes.append(fit["num_train"])
  return _curve(budgets, runs, sizes)


def finetune_curve(encoder, image_set: ImageSet, budgets: Sequence[int], seeds: Sequence[int],
                   ok: np.ndarray | None = None, *, finetune_kwargs: dict | None = None) -> dict:
  """Fine-tunes `encoder` (vision_jax.probe.fine_tune, on the shared training loop) on each
  budget and seed; training images that could not be read (`ok` False) are left out."""
  budgets, seeds = _check(budgets, seeds)
  ok = np.ones(len(image_set), bool) if ok is None else np.asarray(ok, bool)
  train_rows = np.flatnonzero((image_set.splits == "train") & ok)
  test_rows = np.flatnonzero((image_set.splits == "test") & ok)
  failed = int(np.sum((image_set.splits == "test") & ~ok))
  train, test = SubsetSource(image_set.source, train_rows), SubsetSource(image_set.source,
                                                                         test_rows)
  total = len(test_rows) + failed
  kwargs = {"small_image": image_set.small_image, "num_classes": image_set.num_classes,
            **(finetune_kwargs or {})}
  batch = int(kwargs.pop("batch_size", 256))
  devices = jax.device_count()
  runs, sizes = [], []
  for k in budgets:
    row = []
    for seed in seeds:
      # A budget smaller than a batch trains on full-budget batches (divisible by the devices).
      n = len(probe.label_subset(train.labels, labels_per_class=k, seed=seed))
      size = max(devices, min(batch, n) // devices * devices)
      fit = probe.fine_tune(encoder, train, test, labels_per_class=k, seed=seed,
                            batch_size=size, **kwargs)
      row.append(fit["top1"] * fit["num_test"] / total)
    runs.append(row)
    sizes.append(fit["num_train"])
  return _curve(budgets, runs, sizes)
