"""What the viewer shows about one run besides its predictions: taxon names, training
observations and, where the data set has one, the true (simulated) or expert (IUCN) range.

Each is read lazily, once, from the files the run was trained on: the simulated world named by
the run's config.json (`data.world_dir`, default `<run>/world`), or the published-format
`data.train_file`, plus optional `--names` (a taxa.json / `geo_prior_train_meta.json`-style list
of {taxon_id, name}) and `--labels` (an IUCN-format `iucn_res_5.json`) files.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import threading

import numpy as np

from sinr_jax import grid, rundir
from sinr_jax.errors import SinrInputError

_log = logging.getLogger("sinr_jax.viewer")
# Keys a names file may use for the name of a taxon, in order of preference.
NAME_KEYS = ("name", "taxon_name", "scientific_name", "common_name")
IUCN_RES = 5  # the published iucn_res_5.json holds centres of H3 res-5 cells


def read_names(path: str) -> dict[int, str]:
  """{taxon_id: name} from a JSON list of objects with `taxon_id` and a name (NAME_KEYS), or a
  {taxon_id: name} object."""
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise SinrInputError(f"cannot read a names file ({e})", file=path) from e
  if isinstance(data, dict):
    items = data.items()
  elif isinstance(data, list):
    items = []
    for i, entry in enumerate(data):
      if not isinstance(entry, dict) or "taxon_id" not in entry:
        raise SinrInputError("expected an object with 'taxon_id'", file=path, row=i,
                             field="taxon_id")
      name = next((entry[k] for k in NAME_KEYS if entry.get(k)), None)
      items.append((entry["taxon_id"], name))
  else:
    raise SinrInputError("expected a JSON list of {taxon_id, name} or a {taxon_id: name} object",
                         file=path)
  out = {}
  for i, (taxon, name) in enumerate(items):
    try:
      out[int(taxon)] = "" if name is None else str(name)
    except (TypeError, ValueError):
      raise SinrInputError(f"taxon id {taxon!r} is not an integer", file=path, row=i,
                           field="taxon_id") from None
  return out


class RunSource:
  """One run for the viewer: its predictor (`sinr_jax.load`) and lazily read side data."""

  def __init__(self, run_dir: str, *, names_file: str | None = None,
               labels_file: str | None = None):
    from sinr_jax.predictor import load
    self.run_dir = os.path.realpath(run_dir)
    if not os.path.isdir(self.run_dir):
      raise SinrInputError("not a directory (a training run's --workdir)", file=run_dir,
                           field="run")
    self.predictor = load(self.run_dir)
    self.data_config = _data_config(self.run_dir)
    self.names_file, self.labels_file = names_file, labels_file
    self._lock = threading.Lock()

  @property
  def world_dir(self) -> str | None:
    """The simulated world the run was trained on, if it is still there."""
    d = self.data_config
    if d.get("train_file"):
      return None
    path = d.get("world_dir") or os.path.join(self.run_dir, "world")
    return path if os.path.isfile(os.path.join(path, "world.json")) else None

  @property
  def train_file(self) -> str | None:
    path = self.data_config.get("train_file") or None
    if path is None and self.world_dir:
      path = os.path.join(self.world_dir, "train.csv")
    return path if path and os.path.isfile(path) else None

  @functools.cached_property
  def names(self) -> dict[int, str]:
    path = self.names_file
    if path is None:
      for candidate in (os.path.join(self.world_dir or "", "taxa.json"),
                        os.path.join(os.path.dirname(self.train_file or ""),
                                     "geo_prior_train_meta.json")):
        if os.path.isfile(candidate):
          path = candidate
          break
    return read_names(path) if path else {}

  @functools.cached_property
  def truth(self) -> tuple[int, dict[int, np.ndarray]] | None:
    """(H3 resolution, {taxon: sorted uint64 cells}) of the true or expert ranges, or None."""
    with self._lock:
      if self.labels_file:
        from sinr_jax.evaluators.readers import read_iucn
        data = read_iucn(self.labels_file)
        loc_cells = grid.lonlat_to_cells(data.locs, IUCN_RES)
        return IUCN_RES, {int(t): np.unique(loc_cells[np.asarray(p, np.int64)])
                          for t, p in zip(data.taxa, data.presence)}
      if self.world_dir is None:
        return None
      from sinr_jax.world import load_world
      world = load_world(self.world_dir)
      p = world.presence.tocsr()
      return int(world.config.h3_res), {
          int(t): world.cells[p.indices[p.indptr[i]:p.indptr[i + 1]]]
          for i, t in enumerate(world.taxa)}

  @functools.cached_property
  def observations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(sorted unique taxa, their offsets into `lonlat`, (N, 2) lonlat grouped by taxon), or
    None when the training file is not there."""
    path = self.train_file
    if path is None:
      return None
    from sinr_jax.observations import read_observations
    with self._lock:
      _log.info("reading training observations from %s", path)
      obs = read_observations(path, extra_columns=())
    order = np.argsort(obs.taxon_ids, kind="stable")
    taxa, starts = np.unique(obs.taxon_ids[order], return_index=True)
    offsets = np.append(starts, len(order)).astype(np.int64)
    return taxa, offsets, obs.lonlat[order]

  def observations_of(self, taxon: int) -> np.ndarray:
    """(K, 2) lon/lat of the taxon's training observations (empty when unknown)."""
    obs = self.observations
    if obs is None:
      return np.zeros((0, 2), np.float32)
    taxa, offsets, lonlat = obs
    i = int(np.searchsorted(taxa, taxon))
    if i == len(taxa) or taxa[i] != taxon:
      return np.zeros((0, 2), np.float32)
    return lonlat[offsets[i]:offsets[i + 1]]


def _data_config(run_dir: str) -> dict:
  """The `data` section of the run's config.json ({} when absent, e.g. an imported run)."""
  path = os.path.join(run_dir, rundir.CONFIG_FILE)
  if not os.path.isfile(path):
    return {}
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f).get("data", {})
  except (OSError, ValueError, AttributeError) as e:
    raise SinrInputError(f"cannot read the run's config ({e!r})", file=path) from e
  return data if isinstance(data, dict) else {}
