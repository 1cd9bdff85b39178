"""Range-map pictures: predicted P(presence), true range and observations, side by side."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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
                    names=None, threshold: float | None = None) -> list[str]:
  """Writes `<out_dir>/<taxon>.png` per taxon.

  truth_lonlat / obs_lonlat: optional dicts taxon → (K, 2) lon/lat of true presence cells and of
  training observations. Returns the written paths.
  """
  mask = land_mask()
  land = mask.ravel()
  lonlat = _grid_lonlat(mask)[land]
  probs = predictor.predict(lonlat[:, 0], lonlat[:, 1], taxa=taxa)
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for j, taxon in enumerate(np.asarray(taxa).tolist()):
    panels = ["prediction"] + (["true range"] if truth_lonlat else []) + (
        ["observations"] if obs_lonlat else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.0), squeeze=False)
    axes = axes[0]
    image = np.full(mask.size, np.nan)
    image[land] = probs[:, j]
    im = axes[0].imshow(image.reshape(mask.shape), extent=(-180, 180, -90, 90), vmin=0, vmax=1,
                        cmap="viridis", interpolation="nearest")
    if threshold is not None:
      axes[0].contour(np.linspace(-180, 180, mask.shape[1]), np.linspace(90, -90, mask.shape[0]),
                      np.nan_to_num(image.reshape(mask.shape)), levels=[threshold], colors="w",
                      linewidths=0.5)
    fig.colorbar(im, ax=axes[0], fraction=0.025, pad=0.01)
    for ax, title in zip(axes, panels):
      _coastline(ax, mask)
      ax.set_title(title, fontsize=9)
    col = 1
    if truth_lonlat:
      pts = truth_lonlat.get(taxon, np.zeros((0, 2)))
      axes[col].scatter(pts[:, 0], pts[:, 1], s=1.5, c="tab:green", marker="s", linewidths=0)
      col += 1
    if obs_lonlat:
      pts = obs_lonlat.get(taxon, np.zeros((0, 2)))
      axes[col].scatter(pts[:, 0], pts[:, 1], s=3, c="tab:red", linewidths=0)
      axes[col].set_title(f"observations (n={len(pts)})", fontsize=9)
    name = f" ({names[taxon]})" if names and taxon in names else ""
    fig.suptitle(f"taxon {taxon}{name}", fontsize=10)
    fig.tight_layout()
    path = os.path.join(out_dir, f"{taxon}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
  return paths
