"""Everything a training run reads: observations (capped), class index, environmental raster.

`data.train_file` names a published-format CSV/Parquet; left empty, the run uses the simulated
default world, generated once into `data.world_dir` (default `<workdir>/world`) and reused.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from sinr_jax.env import load_raster
from sinr_jax.errors import CheckpointMismatchError, SinrInputError
from sinr_jax.features import canonical_kind
from sinr_jax.observations import ClassIndex, cap_per_class, read_observations

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainingData:
  lonlat: np.ndarray            # (N, 2) float32 degrees, after capping
  labels: np.ndarray            # (N,) int32 class indices
  class_index: ClassIndex
  env_raster: np.ndarray | None
  env_raster_path: str | None
  source: str
  dropped: dict
  world_dir: str | None = None  # the simulated world trained on (None: data.train_file)

  def write_class_index(self, path: str, *, resuming: bool) -> None:
    """Saves the class index, or checks it against the one a resumed run saved."""
    if resuming and os.path.exists(path):
      saved = ClassIndex.load(path)
      if not np.array_equal(saved.taxa, self.class_index.taxa):
        raise CheckpointMismatchError(
            f"the run directory was trained on {len(saved)} classes that differ from the "
            f"{len(self.class_index)} in {self.source}; use a new --workdir", file=path,
            field="taxa")
      return
    self.class_index.save(path)


def ensure_world(world_dir: str, world_cfg: dict) -> str:
  """Generates the simulated world into `world_dir` unless an identical one is already there."""
  from sinr_jax.world import WorldConfig, make_world  # generator only needed for the default data
  try:
    config = WorldConfig(**world_cfg)
  except TypeError as e:
    raise SinrInputError(f"bad data.world settings ({e})", field="data.world") from e
  meta_path = os.path.join(world_dir, "world.json")
  if os.path.exists(meta_path):
    with open(meta_path, encoding="utf-8") as f:
      saved = json.load(f).get("config", {})
    wanted = json.loads(json.dumps(dataclasses.asdict(config)))
    if saved != wanted:
      raise SinrInputError(
          "an existing world was generated with different settings; remove it or set "
          "data.world_dir elsewhere", file=meta_path, field="config")
    return world_dir
  _log.info("generating the simulated world (%d species) into %s", config.num_species, world_dir)
  make_world(config).write(world_dir)
  return world_dir


def load_training_data(cfg: ml_collections.ConfigDict, workdir: str) -> TrainingData:
  d = cfg.data
  raster_path = d.env_raster or None
  world_dir = None
  if d.train_file:
    path = d.train_file
  else:
    world_dir = d.world_dir or os.path.join(workdir, "world")
    if jax.process_index() == 0:
      ensure_world(world_dir, d.world.to_dict())
    if jax.process_count() > 1:  # the other processes read what process 0 wrote
      multihost_utils.sync_global_devices("sinr_jax.data.ensure_world")
      ensure_world(world_dir, d.world.to_dict())
    path = os.path.join(world_dir, "train.csv")
    raster_path = raster_path or os.path.join(world_dir, "env.npy")
  taxa = None
  if d.taxa_file:
    taxa = ClassIndex.load(d.taxa_file).taxa
  obs = read_observations(path, strict=d.strict, taxa=taxa)
  class_index = ClassIndex.from_taxa(obs.taxon_ids if taxa is None else taxa)
  labels = class_index.encode(obs.taxon_ids, source=obs.source, rows=obs.rows)
  keep = cap_per_class(labels, d.cap, d.cap_seed)
  if len(keep) < len(labels):
    _log.info("capped at %d per class: %d of %d observations kept", d.cap, len(keep), len(labels))
  uses_env = canonical_kind(cfg.model.input) != "coords"
  raster = load_raster(raster_path) if uses_env else None
  return TrainingData(lonlat=np.ascontiguousarray(obs.lonlat[keep], np.float32),
                      labels=labels[keep].astype(np.int32), class_index=class_index,
                      env_raster=raster, env_raster_path=raster_path if uses_env else None,
                      source=os.fspath(path), dropped=dict(obs.dropped), world_dir=world_dir)
