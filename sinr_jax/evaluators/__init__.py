"""The SINR paper's four range-model benchmarks, by name.

  ev = evaluators.make("iucn", data_dir)        # reads and validates the task's files
  metrics = ev.run(predictor)                   # flat {name: float}

Each evaluator is built from a data directory in the published layout (see readers.py) and run on
anything shaped like `sinr_jax.RangePredictor` (`.taxa`, `.columns`, `.predict`; `.embed` for
geo_feature; logits are used when `.params["species_embedding"]` is there).
`simulated.ensure_simulated` writes equivalents of all four from a simulated world.
"""
from __future__ import annotations

from sinr_jax.errors import SinrInputError
from sinr_jax.evaluators.geo_feature import GeoFeature
from sinr_jax.evaluators.geo_prior import GeoPrior
from sinr_jax.evaluators.iucn import IUCN
from sinr_jax.evaluators.snt import SnT

REGISTRY = {"snt": SnT, "iucn": IUCN, "geo_prior": GeoPrior, "geo_feature": GeoFeature}
TASKS = tuple(REGISTRY)


def make(name: str, data_dir: str, **options):
  """The evaluator `name` on `data_dir`; options go to its constructor (e.g. allow_pickle)."""
  if name not in REGISTRY:
    raise SinrInputError(f"unknown task {name!r}; choose from {', '.join(TASKS)}", field="tasks")
  return REGISTRY[name](data_dir, **options)


__all__ = ["REGISTRY", "TASKS", "make", "SnT", "IUCN", "GeoPrior", "GeoFeature"]
