"""World directories: atomic write and validated load.

Files: train.csv (published SINR column names), env.npy (float32 (H,W,C)), taxa.json (list of
{"taxon_id", "name"} like geo_prior_train_meta.json), truth_h3_res{r}.npz (cells, lonlat, taxa,
CSR indptr/indices of presence species x cells) and world.json (config, channels, summary).
"""
from __future__ import annotations

import json
import os
import pathlib
import zipfile

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ecorep.io import atomic_directory
from sinr_jax.errors import SinrInputError
from sinr_jax.world.config import WorldConfig
from sinr_jax.world.seasons import Seasons
from sinr_jax.world.simulate import OBS_COLUMNS, World

FORMAT_VERSION = 1
SEASONS_FILE = "seasons.npz"
# pandas < 3 parses floats with a fast, slightly inexact parser unless asked; pandas 3 is exact by
# default and deprecates the option. Exact parsing makes write -> load reproduce coordinates bit for bit.
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
_CSV_DTYPES = {"id": np.int64, "latitude": np.float64, "longitude": np.float64,
               "taxon_id": np.int64, "user_id": np.int64, "observed_on": str}


def truth_name(res: int) -> str:
  return f"truth_h3_res{res}.npz"


def write_world(world: World, directory: str | os.PathLike) -> None:
  """Writes into a temp dir beside `directory`, then renames it into place (replacing any old one)."""
  with atomic_directory(directory) as tmp:
    world.observations.to_csv(tmp / "train.csv", index=False, columns=OBS_COLUMNS)
    np.save(tmp / "env.npy", np.asarray(world.env, np.float32), allow_pickle=False)
    names = world.taxon_names()
    (tmp / "taxa.json").write_text(json.dumps(
        [{"taxon_id": int(t), "name": n} for t, n in zip(world.taxa, names)], indent=0))
    p = world.presence
    np.savez_compressed(tmp / truth_name(world.config.h3_res), cells=world.cells.astype(np.uint64),
                        lonlat=world.cell_lonlat.astype(np.float64), taxa=world.taxa.astype(np.int64),
                        indptr=p.indptr.astype(np.int64), indices=p.indices.astype(np.int32))
    if world.seasons is not None:  # only worlds with migrants have this file
      np.savez_compressed(tmp / SEASONS_FILE, **world.seasons.save_arrays())
    meta = {"format_version": FORMAT_VERSION, "config": world.config.to_dict(),
            "env_channels": list(world.env_channels), "summary": world.summary}
    (tmp / "world.json").write_text(json.dumps(meta, indent=2))


def _need(ok: bool, msg: str, path, field=None, row=None) -> None:
  if not ok:
    raise SinrInputError(msg, file=path, field=field, row=row)


def _read_meta(path: pathlib.Path) -> tuple[WorldConfig, list[str], dict]:
  _need(path.is_file(), "missing file", path)
  try:
    meta = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise SinrInputError(f"not valid JSON ({e})", file=path) from e
  _need(isinstance(meta, dict), "expected a JSON object", path)
  for key in ("format_version", "config", "env_channels", "summary"):
    _need(key in meta, "missing key", path, field=key)
  _need(meta["format_version"] == FORMAT_VERSION, f"unsupported version {meta['format_version']!r}",
        path, field="format_version")
  _need(isinstance(meta["config"], dict), "expected an object", path, field="config")
  cfg = WorldConfig.from_dict(meta["config"], source=str(path))
  chans = meta["env_channels"]
  _need(isinstance(chans, list) and all(isinstance(c, str) for c in chans) and chans,
        "expected a non-empty list of names", path, field="env_channels")
  _need(isinstance(meta["summary"], dict), "expected an object", path, field="summary")
  return cfg, chans, meta["summary"]


def _read_csv(path: pathlib.Path, expected_rows) -> pd.DataFrame:
  _need(path.is_file(), "missing file", path)
  try:
    df = pd.read_csv(path, dtype=_CSV_DTYPES, keep_default_na=False, **_EXACT_FLOATS)
  except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as e:
    raise SinrInputError(f"cannot parse CSV ({e})", file=path) from e
  for col in OBS_COLUMNS:
    _need(col in df.columns, "missing column", path, field=col)
  df = df[OBS_COLUMNS]
  for col in ("latitude", "longitude"):
    bad = np.flatnonzero(~np.isfinite(df[col].to_numpy()))
    _need(len(bad) == 0, "not a finite number", path, field=col, row=int(bad[0]) + 2 if len(bad) else None)
  dates = pd.to_datetime(df["observed_on"], format="%Y-%m-%d", errors="coerce")
  bad = np.flatnonzero(dates.isna().to_numpy())
  _need(len(bad) == 0, "not a YYYY-MM-DD date", path, field="observed_on",
        row=int(bad[0]) + 2 if len(bad) else None)
  _need(expected_rows is None or len(df) == expected_rows,
        f"{len(df)} rows but world.json says {expected_rows} (truncated?)", path)
  return df


def _read_npy(path: pathlib.Path, channels: int) -> np.ndarray:
  _need(path.is_file(), "missing file", path)
  try:
    env = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise SinrInputError(f"cannot read array ({e})", file=path) from e
  _need(env.dtype == np.float32 and env.ndim == 3 and env.shape[2] == channels
        and env.shape[1] == 2 * env.shape[0], f"expected float32 (H, 2H, {channels}), got "
        f"{env.dtype}{env.shape}", path)
  return env


def _read_taxa(path: pathlib.Path) -> np.ndarray:
  _need(path.is_file(), "missing file", path)
  try:
    items = json.loads(path.read_text())
    ids = np.array([int(it["taxon_id"]) for it in items], np.int64)
    names = [str(it["name"]) for it in items]
  except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError, ValueError) as e:
    raise SinrInputError(f"expected a JSON list of {{taxon_id, name}} ({e!r})", file=path) from e
  _need(len(ids) == len(names) and np.all(np.diff(ids) > 0), "taxon ids must be sorted and unique",
        path, field="taxon_id")
  return ids


def _read_truth(path: pathlib.Path) -> dict[str, np.ndarray]:
  _need(path.is_file(), "missing file", path)
  try:
    with np.load(path, allow_pickle=False) as z:
      t = {k: z[k] for k in ("cells", "lonlat", "taxa", "indptr", "indices")}
  except KeyError as e:
    raise SinrInputError(f"missing array {e}", file=path) from e
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise SinrInputError(f"cannot read npz ({e})", file=path) from e
  m, s = len(t["cells"]), len(t["taxa"])
  _need(t["cells"].dtype == np.uint64 and np.all(np.diff(t["cells"]) > 0), "must be sorted unique uint64",
        path, field="cells")
  _need(t["lonlat"].shape == (m, 2), f"expected ({m}, 2)", path, field="lonlat")
  ip, ix = t["indptr"], t["indices"]
  _need(ip.shape == (s + 1,) and ip[0] == 0 and np.all(np.diff(ip) >= 0) and ip[-1] == len(ix),
        "not a valid CSR indptr for the taxa", path, field="indptr")
  _need(len(ix) == 0 or (ix.min() >= 0 and ix.max() < m), "cell index out of range", path, field="indices")
  return t


def load_world(directory: str | os.PathLike) -> World:
  """Reads a directory written by `World.write`; any missing, truncated or inconsistent file raises
  SinrInputError naming the file (and field/row where known)."""
  d = pathlib.Path(directory)
  _need(d.is_dir(), "world directory not found", d)
  cfg, channels, summary = _read_meta(d / "world.json")
  obs = _read_csv(d / "train.csv", summary.get("num_observations"))
  env = _read_npy(d / "env.npy", len(channels))
  taxa = _read_taxa(d / "taxa.json")
  tpath = d / truth_name(cfg.h3_res)
  truth = _read_truth(tpath)
  _need(np.array_equal(truth["taxa"], taxa), "taxa differ from taxa.json", tpath, field="taxa")
  unknown = ~np.isin(obs["taxon_id"].to_numpy(), taxa)
  _need(not unknown.any(), "taxon_id not in taxa.json", d / "train.csv", field="taxon_id",
        row=int(np.argmax(unknown)) + 2 if unknown.any() else None)
  presence = sp.csr_matrix((np.ones(len(truth["indices"]), bool), truth["indices"], truth["indptr"]),
                           shape=(len(taxa), len(truth["cells"])))
  seasons = None
  if cfg.migratory_fraction > 0:
    seasons = _read_seasons(d / SEASONS_FILE, len(taxa), len(truth["cells"]))
  return World(config=cfg, taxa=taxa, observations=obs, env=env, env_channels=channels,
               cells=truth["cells"], cell_lonlat=truth["lonlat"], presence=presence,
               summary=summary, seasons=seasons)


def _read_seasons(path: pathlib.Path, num_species: int, num_cells: int) -> Seasons:
  _need(path.is_file(), "missing file (world.json has migratory_fraction > 0)", path)
  names = ("migratory", "peak", "summer_indptr", "summer_indices", "winter_indptr",
           "winter_indices")
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in names}
  except KeyError as e:
    raise SinrInputError(f"missing array {e}", file=path) from e
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise SinrInputError(f"cannot read npz ({e})", file=path) from e
  _need(arrays["migratory"].shape == (num_species,) and arrays["peak"].shape == (num_species,),
        f"expected ({num_species},) arrays", path, field="migratory")
  for name in ("summer", "winter"):
    ip, ix = arrays[f"{name}_indptr"], arrays[f"{name}_indices"]
    _need(ip.shape == (num_species + 1,) and ip[0] == 0 and np.all(np.diff(ip) >= 0)
          and ip[-1] == len(ix) and (len(ix) == 0 or (ix.min() >= 0 and ix.max() < num_cells)),
          "not a valid CSR matrix over the world's taxa and cells", path, field=name)
  return Seasons.from_arrays(arrays, num_cells)


__all__ = ["write_world", "load_world", "truth_name"]
