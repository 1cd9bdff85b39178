"""Accuracy at coarser levels of a label hierarchy (seed chapter 3, Fig. 3.5).

Given frozen features, leaf (finest) labels and an ecorep.taxonomy.Taxonomy over them:

  rescored   one linear probe (vision_jax.probe.linear_probe) trained on the leaves; its class
             probabilities are summed over every node's leaves (Taxonomy.coarsen_scores) and
             scored at each level: no retraining
  retrained  a linear probe trained on the coarsened labels c_k(y) of each level

Both report top-1 per level, finest first. Test images without features count as errors.
"""
from __future__ import annotations

import numpy as np

from ecorep.taxonomy import Taxonomy
from vision_jax import probe
from vision_jax.errors import VisionInputError
from vision_jax.image_sets import TrainTest


def check_taxonomy(taxonomy: Taxonomy, class_names) -> None:
  """The hierarchy's leaves must be the data set's classes, in label order."""
  names = [str(n) for n in class_names]
  if list(taxonomy.leaf_names) != names:
    raise VisionInputError(
        f"the hierarchy's {taxonomy.num_leaves} leaves are not the data set's {len(names)} "
        "classes in label order (read it with label_set=class names)", file=taxonomy.source,
        field=taxonomy.levels[-1])


def evaluate(data: TrainTest, taxonomy: Taxonomy, *, probe_kwargs: dict | None = None,
             levels=None) -> dict:
  """{"levels": [{"level", "steps_up", "num_classes", "rescored_top1", "retrained_top1"}]}."""
  kwargs = dict(probe_kwargs or {})
  total = len(data.y_test) + data.failed_test
  if total == 0:
    raise VisionInputError("no test images", field="split")
  leaf = probe.linear_probe(data.x_train, data.y_train, data.x_test, data.y_test,
                            num_classes=taxonomy.num_leaves, return_test_probs=True, **kwargs)
  names = list(levels) if levels else list(taxonomy.levels[::-1])
  rows = []
  for level in names:
    col = taxonomy.level(level)
    k = len(taxonomy.levels) - 1 - col
    y_train, y_test = taxonomy.coarsen(data.y_train, level), taxonomy.coarsen(data.y_test, level)
    rescored = np.argmax(taxonomy.coarsen_scores(leaf["test_probs"], level), axis=1)
    if k == 0:
      retrained = leaf["top1"] * len(data.y_test) / total
    else:
      fit = probe.linear_probe(data.x_train, y_train, data.x_test, y_test,
                               num_classes=taxonomy.num_classes(level), **kwargs)
      retrained = fit["top1"] * len(data.y_test) / total
    rows.append({"level": taxonomy.levels[col], "steps_up": k,
                 "num_classes": taxonomy.num_classes(level),
                 "rescored_top1": float(np.sum(rescored == y_test) / total),
                 "retrained_top1": float(retrained)})
  return {"levels": rows, "num_train": int(len(data.y_train)), "num_test": int(total),
          "failed_test": data.failed_test}
