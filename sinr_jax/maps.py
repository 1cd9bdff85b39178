"""Range-map pictures: predicted P(presence), true range and observations, side by side."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ecorep import io  # noqa: E402
from sinr_jax.world import land_mask  # noqa: E402


def _grid_lonlat(mask: np.ndarray) -> np.ndarray:
  """Pixel centres of a global plate-carrée grid (row 0 north)."""
  h, w = mask.shape
  lon = -180.0 + (np.arange(w) + 0.5) * 360.0 / w
  lat = 90.0 - (np.arange(h) + 0.5) * 180.0 / h
  glon, glat = np.meshgrid(lon, lat)
  return np.stack([glon.ravel(), glat.ravel()], axis=1)


def _coastline(ax, mask):
  h, w = mask.shape
  ax.contour(np.linspace(-180, 180, w), np.linspace(90, -90, h), mask.astype(float), levels=[0.5],
             colors="0.3", linewidths=0.4)
  ax.set(xlim=(-180, 180), ylim=(-90, 90), aspect="equal", xticks=[], yticks=[])


def save_range_maps(predictor, taxa, out_dir: str, *, truth_lonlat=None, obs_lonlat=None,
                    names=None, threshold=None) -> list[str]:
  """Writes `<out_dir>/<taxon>.png` per taxon (the land pixels are predicted once for all).

  truth_lonlat / obs_lonlat: optional dicts taxon → (K, 2) lon/lat of true presence cells and of
  training observations. threshold: None, one probability for all, or {taxon: probability}; its
  contour is drawn. Returns the written paths.
  """
  taxa = np.asarray(taxa).tolist()
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for taxon, (mask, image) in zip(taxa, _prediction_images(predictor, taxa)):
    path = os.path.join(out_dir, f"{taxon}.png")
    _render(path, mask, image, taxon,
            threshold=threshold.get(taxon) if isinstance(threshold, dict) else threshold,
            truth=truth_lonlat.get(taxon, np.zeros((0, 2))) if truth_lonlat else None,
            obs=obs_lonlat.get(taxon, np.zeros((0, 2))) if obs_lonlat else None,
            name=names.get(taxon) if names else None)
    paths.append(path)
  return paths


def save_range_map(predictor, taxon: int, path: str, *, threshold: float | None = None,
                   truth_lonlat=None, obs_lonlat=None, name: str | None = None) -> str:
  """One species' map as the PNG `path`, with the panels of `save_range_maps`."""
  (mask, image), = _prediction_images(predictor, [int(taxon)])
  io.atomic_write(path, lambda tmp: _render(
      tmp, mask, image, int(taxon), threshold=threshold, name=name,
      truth=None if truth_lonlat is None else np.asarray(truth_lonlat).reshape(-1, 2),
      obs=None if obs_lonlat is None else np.asarray(obs_lonlat).reshape(-1, 2)))
  return path


def _prediction_images(predictor, taxa):
  """(mask, (H, W) P(presence) image, NaN over the ocean) per taxon, on the packaged land mask."""
  mask = land_mask()
  land = mask.ravel()
  lonlat = _grid_lonlat(mask)[land]
  probs = predictor.predict(lonlat[:, 0], lonlat[:, 1], taxa=taxa)
  for j in range(len(taxa)):
    image = np.full(mask.size, np.nan)
    image[land] = probs[:, j]
    yield mask, image.reshape(mask.shape)


def _render(path: str, mask: np.ndarray, image: np.ndarray, taxon, *, threshold, truth, obs,
            name) -> None:
  panels = ["prediction"] + (["true range"] if truth is not None else []) + (
      ["observations"] if obs is not None else [])
  fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.0), squeeze=False)
  axes = axes[0]
  im = axes[0].imshow(image, extent=(-180, 180, -90, 90), vmin=0, vmax=1, cmap="viridis",
                      interpolation="nearest")
  if threshold is not None:
    axes[0].contour(np.linspace(-180, 180, mask.shape[1]), np.linspace(90, -90, mask.shape[0]),
                    np.nan_to_num(image), levels=[threshold], colors="w", linewidths=0.5)
  fig.colorbar(im, ax=axes[0], fraction=0.025, pad=0.01)
  for ax, title in zip(axes, panels):
    _coastline(ax, mask)
    ax.set_title(title, fontsize=9)
  col = 1
  if truth is not None:
    axes[col].scatter(truth[:, 0], truth[:, 1], s=1.5, c="tab:green", marker="s", linewidths=0)
    col += 1
  if obs is not None:
    axes[col].scatter(obs[:, 0], obs[:, 1], s=3, c="tab:red", linewidths=0)
    axes[col].set_title(f"observations (n={len(obs)})", fontsize=9)
  fig.suptitle(f"taxon {taxon}" + (f" ({name})" if name else ""), fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110, format="png")  # `path` may be a temporary name
  plt.close(fig)
