"""Simulated classifier outputs for a geo prior trained on the simulated world: a validation and a
test split of images, in the classifier-file layout of classifier_file.py.

  <out>/val_preds.npz, val_meta.csv, test_preds.npz, test_meta.csv, simulated.json

Images are new draws of the world's observation process with dates (world/images.py: 2% without
location, 2% without date), classified by the look-alike classifier of world/classifier.py
(genera of 5 climatically similar species, plus each migrant's resident look-alikes; top-10 kept,
top-1 accuracy 0.65). The meta files flag two subsets for the date-aware evaluation:
  subset_migrant     the image shows a migratory species
  subset_offseason   a migrant among the image's top-10 candidates has the image's cell in its
                     range but is away at the image's date (in its other season's range): a prior
                     without dates believes it could be there, one with dates knows it is not
Generated once per (world, seed, settings) and reused while simulated.json matches.
"""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pandas as pd

from ecorep.io import atomic_directory
from sinr_jax.errors import SinrInputError
from sinr_jax.geo_prior.dates import parse_dates
from sinr_jax.world import load_world
from sinr_jax.world.classifier import classify, genera, lookalike_partners
from sinr_jax.world.images import draw_images

VERSION = 1
MANIFEST = "simulated.json"
SPLITS = ("val", "test")
SETTINGS = dict(per_species=20, top_k=10, target_top1=0.65, genus_size=5, genus_affinity=3.0,
                partner_affinity=3.0, missing_location=0.02, missing_date=0.02)


def split_files(out_dir, split: str) -> tuple[str, str]:
  return (os.path.join(out_dir, f"{split}_preds.npz"), os.path.join(out_dir, f"{split}_meta.csv"))


def offseason(world, images: pd.DataFrame, inds: np.ndarray) -> np.ndarray:
  """(N,) bool: some migrant among the candidates is absent from the image's cell at its date
  although the cell lies in one of its seasonal ranges."""
  s = world.seasons
  day = parse_dates(images["observed_on"].to_numpy(object))[0]
  ok = np.isfinite(images[["longitude", "latitude"]].to_numpy()).all(1) & np.isfinite(day)
  out = np.zeros(len(images), bool)
  rows, slots = np.nonzero(s.migratory[inds] & ok[:, None])
  if len(rows):
    sp_, cell = inds[rows, slots], images["cell"].to_numpy()[rows]
    in_range = np.asarray(world.presence[sp_, cell]).ravel()
    away = in_range & ~s.present(sp_, cell, day[rows])
    out[rows[away]] = True
  return out


def write_simulated(world, out_dir, *, seed: int = 0, **settings) -> dict:
  cfg = {**SETTINGS, **settings}
  genus = genera(world, cfg["genus_size"])
  partners = lookalike_partners(world.seasons) if world.seasons is not None else None
  summary = {}
  with atomic_directory(out_dir) as tmp:
    for split, rng in zip(SPLITS, np.random.default_rng([seed, 2019]).spawn(len(SPLITS))):
      r_images, r_classifier = rng.spawn(2)
      images = draw_images(world, r_images, per_species=cfg["per_species"],
                           missing_location=cfg["missing_location"],
                           missing_date=cfg["missing_date"])
      labels = images["label"].to_numpy()
      probs, inds, a = classify(r_classifier, labels, genus, target_top1=cfg["target_top1"],
                                genus_affinity=cfg["genus_affinity"], top_k=cfg["top_k"],
                                partners=partners, partner_affinity=cfg["partner_affinity"])
      preds_path, meta_path = split_files(tmp, split)
      np.savez_compressed(preds_path, probs=probs, inds=inds, labels=labels.astype(np.int64),
                          model_to_taxa=world.taxa.astype(np.int64))
      meta = images[["longitude", "latitude", "observed_on"]].copy()
      meta.insert(0, "id", np.arange(1, len(images) + 1))
      if world.seasons is not None:
        meta["subset_migrant"] = world.seasons.migratory[labels].astype(int)
        meta["subset_offseason"] = offseason(world, images, inds).astype(int)
      meta.to_csv(meta_path, index=False)
      summary[split] = {"images": int(len(labels)), "classifier_a": a,
                        "vision_top1": float(np.mean(inds[:, -1] == labels)),
                        **{f"num_{c[7:]}": int(meta[c].sum()) for c in meta.columns
                           if c.startswith("subset_")}}
    manifest = {"generator": "sinr_jax.geo_prior.simulated", "version": VERSION,
                "seed": int(seed), "settings": cfg, "world": world.config.to_dict(),
                "summary": summary}
    (pathlib.Path(tmp) / MANIFEST).write_text(json.dumps(manifest, indent=1))
  return manifest


def ensure_simulated(world_dir, out_dir, *, seed: int = 0) -> dict:
  """Reuses `out_dir` when it holds this generator's files for the world and seed."""
  meta = pathlib.Path(world_dir) / "world.json"
  try:
    world_config = json.loads(meta.read_text())["config"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise SinrInputError(f"cannot read the world's config ({e!r})", file=meta) from e
  out = pathlib.Path(out_dir)
  try:
    manifest = json.loads((out / MANIFEST).read_text())
    if (manifest.get("generator") == "sinr_jax.geo_prior.simulated"
        and manifest.get("version") == VERSION and manifest.get("seed") == seed
        and manifest.get("settings") == SETTINGS and manifest.get("world") == world_config
        and all(os.path.isfile(f) for s in SPLITS for f in split_files(out, s))):
      return manifest
  except (OSError, ValueError, AttributeError):
    pass
  if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
    raise SinrInputError("directory exists and was not written by the simulated geo-prior "
                         "generator; refusing to replace it", file=out)
  return write_simulated(load_world(world_dir), out_dir, seed=seed)
