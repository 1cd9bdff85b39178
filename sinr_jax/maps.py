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


# --- species distribution maps of a study region --------------------------------------------------

def save_sdm_map(model, path: str, *, region=None, obs_lonlat=None, threshold: float | None = None,
                 threshold_rule: str = "", taxon=None, covariates_at=None, width_px: int = 480,
                 title: str = "") -> str:
  """A map cropped to the study region (or, without one, the observations' box), predicted on a
  grid of `width_px` columns, masked outside the region (land only when the region is), with the
  observations overlaid and the binary range's edge at `threshold` (named by `threshold_rule`).
  An ensemble (sinr_jax.ensemble) adds a panel of the members' spread (sd)."""
  from sinr_jax import region as region_lib
  obs = None if obs_lonlat is None else np.asarray(obs_lonlat, np.float64).reshape(-1, 2)
  lon0, lat0, lon1, lat1 = _map_extent(region, obs)
  glon, glat, shape = _map_grid(lon0, lat0, lon1, lat1, width_px)
  pts = np.stack([glon, glat], axis=1)
  inside = region.contains(pts) if region is not None else region_lib.on_land(glon, glat)
  taxa = None if taxon is None else [int(taxon)]
  cov = None if covariates_at is None else covariates_at(pts[inside])
  panels = [("P(presence)", np.full(len(pts), np.nan))]
  if hasattr(model, "predict_with_spread"):
    mean, sd = model.predict_with_spread(glon[inside], glat[inside], taxa, covariates=cov)
    panels[0][1][inside] = mean[:, 0]
    panels.append(("spread across seeds (sd)", np.full(len(pts), np.nan)))
    panels[1][1][inside] = sd[:, 0]
  else:
    panels[0][1][inside] = model.predict(glon[inside], glat[inside], taxa, covariates=cov)[:, 0]
  io.atomic_write(path, lambda tmp: _render_sdm(
      tmp, panels, shape, (lon0, lon1, lat0, lat1), region, obs, threshold, threshold_rule,
      title))
  return path


def _map_extent(region, obs) -> tuple[float, float, float, float]:
  if region is not None:
    lon0, lat0, lon1, lat1 = region.bounds
  elif obs is not None and len(obs):
    lon0, lat0 = obs.min(axis=0)
    lon1, lat1 = obs.max(axis=0)
  else:
    raise ValueError("a map needs a region or observations to crop to")
  pad_lon, pad_lat = max(0.05 * (lon1 - lon0), 0.05), max(0.05 * (lat1 - lat0), 0.05)
  return (max(lon0 - pad_lon, -180), max(lat0 - pad_lat, -90), min(lon1 + pad_lon, 180),
          min(lat1 + pad_lat, 90))


def _map_grid(lon0, lat0, lon1, lat1, width_px):
  """Pixel centres, row 0 north; rows sized so that a pixel is square on the ground."""
  aspect = (lat1 - lat0) / ((lon1 - lon0) * max(np.cos(np.radians((lat0 + lat1) / 2)), 0.05))
  nx, ny = int(width_px), max(2, int(round(width_px * aspect)))
  lon = lon0 + (np.arange(nx) + 0.5) * (lon1 - lon0) / nx
  lat = lat1 - (np.arange(ny) + 0.5) * (lat1 - lat0) / ny
  glon, glat = np.meshgrid(lon, lat)
  return glon.ravel(), glat.ravel(), (ny, nx)


def _render_sdm(path, panels, shape, extent, region, obs, threshold, rule, title) -> None:
  ny, nx = shape
  aspect = 1 / max(np.cos(np.radians((extent[2] + extent[3]) / 2)), 0.05)
  # Each panel: a 4.2-inch-wide map (pixels square on the ground) + its colour bar + titles.
  fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.2 * ny / nx + 1.0),
                           squeeze=False)
  for k, (ax, (name, values)) in enumerate(zip(axes[0], panels)):
    image = values.reshape(ny, nx)
    ax.set_facecolor("0.85")
    vmax = 1.0 if k == 0 else max(float(np.nanmax(image)) if np.isfinite(image).any() else 1, 1e-6)
    im = ax.imshow(image, extent=extent, origin="upper", vmin=0, vmax=vmax,
                   cmap="viridis" if k == 0 else "magma", interpolation="nearest", aspect=aspect)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    if k == 0 and threshold is not None and np.nanmax(np.nan_to_num(image, nan=-1)) > threshold:
      xs = np.linspace(extent[0], extent[1], nx)
      ys = np.linspace(extent[3], extent[2], ny)
      ax.contour(xs, ys, np.nan_to_num(image, nan=-1.0), levels=[threshold], colors="w",
                 linewidths=0.8)
    if region is not None:
      for rings in region.polygons:
        for ring in rings:
          ax.plot(ring[:, 0], ring[:, 1], color="0.2", linewidth=0.6)
    if obs is not None and len(obs):
      ax.scatter(obs[:, 0], obs[:, 1], s=2, c="tab:red", linewidths=0, alpha=0.7,
                 label=f"observations (n={len(obs)})")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_title(name, fontsize=9)
    ax.tick_params(labelsize=7)
  sub = f"range edge (white): P >= {threshold:.3g}, {rule}" if threshold is not None else ""
  fig.suptitle("\n".join(x for x in (title, sub) if x), fontsize=9)
  if obs is not None and len(obs):
    axes[0][0].legend(loc="lower left", fontsize=7, markerscale=3)
  fig.tight_layout()
  fig.savefig(path, dpi=110, format="png")
  plt.close(fig)
