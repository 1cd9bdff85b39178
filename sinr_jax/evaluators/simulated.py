"""Simulated equivalents of the four evaluation tasks, written in the published file formats.

  ensure_simulated(world_dir, out_dir)   # generates once (deterministic by seed), then reuses

Layout (the reference's `data/` tree, so the same readers serve both):
  eval/snt/snt_res_5.npy, eval/iucn/iucn_res_5.json,
  eval/geo_prior/geo_prior_model_preds.npz, eval/geo_prior/geo_prior_model_meta.csv,
  eval/geo_feature/<LAYER>.tif + layers.json, masks/USA_MASK.tif,
  simulated.json   generator version, seed, world config, SHA-256 of every file, summary.
The S&T file is a pickle like the published one; `verified_simulated` checks it (and every other
file) against the hashes this generator recorded, which is what lets the CLI read it without
--allow_pickle. Cells are at the world's H3 resolution (the names keep the published "res_5").
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib

import numpy as np

from ecorep.io import atomic_directory
from sinr_jax.errors import SinrInputError
from sinr_jax.evaluators import readers, sim_geo_feature, sim_geo_prior, sim_ranges

VERSION = 1
MANIFEST = "simulated.json"


def _sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def write_simulated(world, out_dir: str | os.PathLike, *, seed: int = 0) -> dict:
  """Writes all four tasks for `world` into `out_dir` (replacing it atomically); returns the
  manifest."""
  s_snt, s_prior = np.random.default_rng(np.random.SeedSequence([seed, 7499])).spawn(2)
  with atomic_directory(out_dir) as tmp:
    ev = tmp / "eval"
    for sub in ("snt", "iucn", "geo_prior", "geo_feature"):
      (ev / sub).mkdir(parents=True)
    (tmp / "masks").mkdir()
    snt = sim_ranges.snt_task(world, s_snt)
    np.save(ev / "snt" / readers.SNT_FILE, np.asarray(snt, dtype=object), allow_pickle=True)
    iucn = sim_ranges.iucn_task(world)
    (ev / "iucn" / readers.IUCN_FILE).write_text(json.dumps(iucn, separators=(",", ":")))
    preds, meta, classifier = sim_geo_prior.geo_prior_task(world, s_prior)
    np.savez_compressed(ev / "geo_prior" / readers.GEO_PRIOR_PREDS, **preds)
    meta.to_csv(ev / "geo_prior" / readers.GEO_PRIOR_META, index=False)
    layers, mask = sim_geo_feature.geo_feature_rasters()
    for name, raster in layers.items():
      sim_geo_feature.write_geotiff(ev / "geo_feature" / f"{name}.tif", raster)
    sim_geo_feature.write_geotiff(tmp / "masks" / readers.USA_MASK, mask)
    (ev / "geo_feature" / readers.LAYERS_MANIFEST).write_text(json.dumps(
        {"layers": list(layers), "log1p": list(sim_geo_feature.LOG1P),
         "source": "simulated from the packaged grids; see sinr_jax/evaluators/README.md"},
        indent=1))
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest = {
        "generator": "sinr_jax.evaluators.simulated", "version": VERSION, "seed": int(seed),
        "world": world.config.to_dict(),
        "files": {str(p.relative_to(tmp)): _sha256(p) for p in files},
        "summary": {
            "snt": {"species": len(snt["taxa"]), "locations": len(snt["obs_locs"]),
                    "labels": int(sum(len(y) for y in snt["labels_per_species"])),
                    "presence_fraction": float(np.mean(np.concatenate(snt["labels_per_species"])))
                    if len(snt["taxa"]) else 0.0},
            "iucn": {"species": len(iucn["taxa_presence"]), "cells": len(iucn["locs"])},
            "geo_prior": {"images": int(len(preds["labels"])), "k": int(preds["probs"].shape[1]),
                          "classes": int(len(preds["model_to_taxa"])),
                          "vision_top1": float(np.mean(preds["inds"][:, -1] == preds["labels"])),
                          "classifier": classifier},
            "geo_feature": {"layers": list(layers), "shape": list(mask.shape),
                            "mask_pixels": int(mask.sum())}},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
  return manifest


def verified_simulated(out_dir: str | os.PathLike, world_config: dict | None = None,
                       seed: int | None = None) -> dict | None:
  """The manifest if `out_dir` holds this generator's output, unmodified (every hash matches) and
  made for `world_config`/`seed` when given; otherwise None."""
  d = pathlib.Path(out_dir)
  try:
    manifest = json.loads((d / MANIFEST).read_text())
    ok = (manifest.get("generator") == "sinr_jax.evaluators.simulated"
          and manifest.get("version") == VERSION
          and (world_config is None or manifest.get("world") == world_config)
          and (seed is None or manifest.get("seed") == seed)
          and manifest["files"] and all((d / f).is_file() and _sha256(d / f) == h
                                        for f, h in manifest["files"].items()))
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return None
  return manifest if ok else None


def ensure_simulated(world_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                     seed: int = 0) -> dict:
  """Reuses `out_dir` if it is this generator's intact output for the world; else (re)writes it."""
  from sinr_jax.world import load_world
  meta = pathlib.Path(world_dir) / "world.json"
  try:
    world_config = json.loads(meta.read_text())["config"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise SinrInputError(f"cannot read the world's config ({e!r})", file=meta) from e
  manifest = verified_simulated(out_dir, world_config, seed)
  if manifest:
    return manifest
  out = pathlib.Path(out_dir)
  if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
    raise SinrInputError("directory exists and was not written by the simulated-task generator; "
                         "refusing to replace it (choose another directory)", file=out)
  return write_simulated(load_world(world_dir), out_dir, seed=seed)
