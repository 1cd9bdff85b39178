"""The seed's geo-prior figures (Figs 7.3–7.6) as PNGs, from a run directory:

  ica_location_embeddings.png   FastICA (3 components → RGB) of f(x) over land, on 1 July
  photographer_affinity.png     Σ_u σ(f(x)·P_u) over land: where the photographers are
  range_by_month.png            one species' P(y|x) on the first day of six months
  tsne_objects.png, tsne_photographers.png   t-SNE of the rows of O and of P
Land pixels are the packaged 1/3° mask subsampled to 1°. The photographer figures read P from the
newest training checkpoint (the inference model has no P); runs without photographers skip them.
"""
from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import FastICA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from ecorep.trainer import read_checkpoint  # noqa: E402
from sinr_jax.errors import SinrInputError  # noqa: E402
from sinr_jax.geo_prior import rundir  # noqa: E402
from sinr_jax.geo_prior.predictor import GeoPriorPredictor, load  # noqa: E402
from sinr_jax.world import land_mask  # noqa: E402

MONTHS = (1, 3, 5, 7, 9, 11)
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_STEP = 3  # 1/3° mask pixels per figure pixel


def land_pixels() -> tuple[np.ndarray, np.ndarray]:
  """((h, w) bool land at 1°, (n, 2) lon/lat of the land pixels' centres)."""
  mask = land_mask()[1::_STEP, 1::_STEP]
  h, w = mask.shape
  lon = -180.0 + (np.arange(w) + 0.5) * 360.0 / w
  lat = 90.0 - (np.arange(h) + 0.5) * 180.0 / h
  glon, glat = np.meshgrid(lon, lat)
  return mask, np.stack([glon[mask], glat[mask]], axis=1)


def first_of_month(month: int) -> float:
  """Day-of-year fraction of the 1st of `month` in a common year."""
  days = (np.datetime64(f"2019-{month:02d}-01") - np.datetime64("2019-01-01")).astype(int)
  return float(days) / 365.0


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _map(ax, mask, values, **kw):
  image = np.full(mask.shape + values.shape[1:], np.nan)
  image[mask] = values
  ax.imshow(image, extent=(-180, 180, -90, 90), origin="upper", interpolation="nearest", **kw)
  ax.contour(np.linspace(-180, 180, mask.shape[1]), np.linspace(90, -90, mask.shape[0]),
             mask.astype(float), levels=[0.5], colors="0.4", linewidths=0.3)
  ax.set(xticks=[], yticks=[], xlim=(-180, 180), ylim=(-90, 90))


def ica_figure(prior: GeoPriorPredictor, path: str, day: float = 0.5) -> str:
  mask, lonlat = land_pixels()
  emb = prior.embed(lonlat[:, 0], lonlat[:, 1], np.full(len(lonlat), day)
                    if prior.use_date else None)
  comps = FastICA(n_components=3, random_state=0, whiten="unit-variance",
                  max_iter=500).fit_transform(emb)
  lo, hi = np.percentile(comps, 1, axis=0), np.percentile(comps, 99, axis=0)
  rgb = np.clip((comps - lo) / np.maximum(hi - lo, 1e-9), 0, 1)
  fig, ax = plt.subplots(figsize=(10, 5))
  _map(ax, mask, rgb)
  ax.set_title("Location embeddings f(x): 3 independent components as RGB"
               + (" (1 July)" if prior.use_date else ""))
  return _save(fig, path)


def photographer_figure(prior: GeoPriorPredictor, users: np.ndarray, path: str,
                        day: float = 0.5) -> str:
  mask, lonlat = land_pixels()
  emb = prior.embed(lonlat[:, 0], lonlat[:, 1], np.full(len(lonlat), day)
                    if prior.use_date else None)
  affinity = (1.0 / (1.0 + np.exp(-(emb @ users.T)))).sum(1)
  fig, ax = plt.subplots(figsize=(10, 5))
  _map(ax, mask, affinity, cmap="magma")
  ax.set_title(f"Summed photographer–location affinity Σ_u σ(f(x)·P_u), {len(users)} photographers")
  fig.colorbar(ax.images[0], ax=ax, shrink=0.7)
  return _save(fig, path)


def range_figure(prior: GeoPriorPredictor, taxon: int, path: str, title: str = "") -> str:
  mask, lonlat = land_pixels()
  months = MONTHS if prior.use_date else (None,)
  fig, axes = plt.subplots(2, 3, figsize=(13, 5)) if len(months) > 1 else plt.subplots(
      1, 1, figsize=(10, 5))
  for ax, month in zip(np.atleast_1d(axes).ravel(), months):
    day = None if month is None else np.full(len(lonlat), first_of_month(month))
    p = prior.predict(lonlat[:, 0], lonlat[:, 1], taxa=[taxon], day=day)[:, 0]
    _map(ax, mask, p, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"1 {_MONTH_NAMES[month - 1]}" if month else "P(y|x)", fontsize=9)
  fig.colorbar(ax.images[0], ax=np.atleast_1d(axes).ravel().tolist(), shrink=0.6,
               label="P(y | x)")
  fig.suptitle(title or f"Predicted range of taxon {taxon} through the year")
  return _save(fig, path)


def tsne_figure(points: np.ndarray, colour: np.ndarray | None, path: str, title: str,
                label: str = "") -> str:
  perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 3)))
  xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(
      points)
  fig, ax = plt.subplots(figsize=(6, 5.5))
  sc = ax.scatter(xy[:, 0], xy[:, 1], c=colour, s=8, cmap="coolwarm" if colour is not None
                  else None)
  if colour is not None:
    fig.colorbar(sc, ax=ax, label=label)
  ax.set(title=title, xticks=[], yticks=[])
  return _save(fig, path)


def _world_dir(run_dir: str) -> str:
  """The simulated world the run trained on (its config's data.world_dir), else <run>/world."""
  try:
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
      data = json.load(f)["data"]
    world_dir = "" if data.get("train_file") else data.get("world_dir") or ""
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    world_dir = ""
  return world_dir or os.path.join(run_dir, "world")


def _species_for_range(run_dir: str, prior) -> tuple[int, str]:
  """A well-observed migrant of the simulated world whose two ranges lie far apart (its seasons
  show), else the class with the most training rows."""
  try:
    from sinr_jax.world import load_world
    world = load_world(_world_dir(run_dir))
    s = world.seasons
    if s is not None and s.migratory.any():
      counts = world.observations["taxon_id"].value_counts().reindex(world.taxa).fillna(0)
      lat = world.cell_lonlat[:, 1]
      best, score = None, -1.0
      for i in np.flatnonzero(s.migratory):
        shift = abs(lat[s.summer[i].indices].mean() - lat[s.winter[i].indices].mean())
        if min(counts.iloc[i], 200) * shift > score:
          best, score = i, min(counts.iloc[i], 200) * shift
      taxon = int(world.taxa[best])
      return taxon, f"Predicted range of migrant {taxon} on the first day of six months"
    taxon = int(world.observations["taxon_id"].value_counts().idxmax())
    return taxon, ""
  except (SinrInputError, OSError, ValueError):
    return int(prior.taxa[0]), ""


def write_all(run_dir: str, out_dir: str, taxon: int | None = None) -> list[str]:
  run_dir = os.path.abspath(run_dir)
  prior = load(run_dir)
  paths = [ica_figure(prior, os.path.join(out_dir, "ica_location_embeddings.png"))]
  title = ""
  if taxon is None:
    taxon, title = _species_for_range(run_dir, prior)
  paths.append(range_figure(prior, taxon, os.path.join(out_dir, "range_by_month.png"), title))
  migratory = None
  try:
    from sinr_jax.world import load_world
    world = load_world(_world_dir(run_dir))
    if world.seasons is not None and np.array_equal(world.taxa, prior.taxa):
      migratory = world.seasons.migratory.astype(float)
  except (SinrInputError, OSError, ValueError):
    pass
  paths.append(tsne_figure(np.asarray(prior.params["species_embedding"]), migratory,
                           os.path.join(out_dir, "tsne_objects.png"),
                           "t-SNE of the object embeddings O", "migratory (1) / resident (0)"))
  params, _ = read_checkpoint(os.path.join(run_dir, rundir.CHECKPOINT_DIR), error=SinrInputError)
  users = params["params"].get("photographer_embedding")
  if users is not None:
    users = np.asarray(users)
    paths.append(photographer_figure(prior, users[:-1], os.path.join(
        out_dir, "photographer_affinity.png")))
    counts = None
    try:
      with open(os.path.join(run_dir, rundir.PHOTOGRAPHERS_FILE), encoding="utf-8") as f:
        counts = np.log10(np.asarray(json.load(f)["counts"], float))
    except (OSError, ValueError, KeyError):
      pass
    paths.append(tsne_figure(users[:-1], counts, os.path.join(out_dir, "tsne_photographers.png"),
                             "t-SNE of the photographer embeddings P ('other' left out)",
                             "log10 training observations"))
  return paths
