"""Covariates read at points: columns of the user's presence/background files and bands of regional
GeoTIFFs (sinr_jax.geotiff), standardised with statistics saved in the run's model.json.

A model whose env input comes from here sees, at a point, `(v − mean) / scale` of the raw values
`v` = [columns..., raster bands...]. `mean`/`scale` are those of the background (the pseudo-absence
pool: the study area's environment), so a run reproduces the same inputs when loaded elsewhere.
A missing value (NaN, empty field, a point outside a raster or on nodata) at a presence or
background point is an error naming the file, row and column: dropping it silently would change
the study area without saying so.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from sinr_jax.errors import SinrInputError
from sinr_jax.geotiff import GeoRaster, read_geotiff


def split_names(value) -> tuple[str, ...]:
  """'a, b' or ('a', 'b') → ('a', 'b')."""
  if isinstance(value, str):
    return tuple(v.strip() for v in value.split(",") if v.strip())
  return tuple(str(v) for v in (value or ()))


@dataclasses.dataclass(eq=False)
class CovariateSpec:
  columns: tuple[str, ...]        # read from the points' files
  rasters: tuple[str, ...]        # GeoTIFF paths, sampled at the points
  raster_crs: str = ""            # overrides the GeoTIFFs' own CRS
  mean: np.ndarray | None = None  # (C,) standardisation, C = len(names)
  scale: np.ndarray | None = None
  _loaded: list | None = dataclasses.field(default=None, repr=False)

  @property
  def geo_rasters(self) -> list[GeoRaster]:
    if self._loaded is None:
      self._loaded = [read_geotiff(p, crs=self.raster_crs) for p in self.rasters]
    return self._loaded

  @property
  def names(self) -> tuple[str, ...]:
    return self.columns + tuple(n for r in self.geo_rasters for n in r.names)

  def __len__(self) -> int:
    return len(self.names)

  def sample_rasters(self, lonlat) -> np.ndarray:
    """(N, bands) raw raster values at lon/lat degrees (NaN outside / nodata)."""
    lonlat = np.asarray(lonlat, np.float64).reshape(-1, 2)
    parts = [r.sample(lonlat[:, 0], lonlat[:, 1]) for r in self.geo_rasters]
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(lonlat), 0), np.float32)

  def at(self, lonlat, column_values=None) -> np.ndarray:
    """(N, C) raw covariates at lon/lat: the column covariates given (N, len(columns)), then the
    raster bands sampled here."""
    n = len(np.asarray(lonlat).reshape(-1, 2))
    if self.columns:
      if column_values is None:
        raise SinrInputError(f"this model reads the covariates {list(self.columns)} at each "
                             "point; pass their values (covariates=, shape (N, "
                             f"{len(self.columns)}))", field="covariates")
      cols = np.asarray(column_values, np.float32).reshape(n, -1)
      if cols.shape[1] != len(self.columns):
        raise SinrInputError(f"covariates have {cols.shape[1]} columns, the model reads "
                             f"{len(self.columns)}: {list(self.columns)}", field="covariates")
    else:
      if column_values is not None:
        raise SinrInputError("this model reads no covariate columns (its covariates come from "
                             f"rasters {list(self.rasters)}); leave covariates= out",
                             field="covariates")
      cols = np.zeros((n, 0), np.float32)
    return np.concatenate([cols, self.sample_rasters(lonlat)], axis=1).astype(np.float32)

  def fit_scaling(self, values: np.ndarray) -> None:
    """mean and scale (sd, or 1 for a constant covariate) of the background's raw values."""
    values = np.asarray(values, np.float64)
    self.mean = values.mean(axis=0)
    sd = values.std(axis=0)
    self.scale = np.where(sd > 0, sd, 1.0)

  def to_json(self) -> dict:
    return {"columns": list(self.columns), "rasters": list(self.rasters),
            "raster_crs": self.raster_crs, "names": list(self.names),
            "mean": [float(v) for v in self.mean], "scale": [float(v) for v in self.scale]}

  @classmethod
  def from_json(cls, d: dict) -> "CovariateSpec":
    return cls(columns=tuple(d["columns"]), rasters=tuple(d["rasters"]),
               raster_crs=d.get("raster_crs", ""), mean=np.asarray(d["mean"], np.float64),
               scale=np.asarray(d["scale"], np.float64))


def column_values(obs, columns: tuple[str, ...]) -> np.ndarray:
  """(N, len(columns)) float32 of an Observations' covariate columns; text or missing values raise
  SinrInputError naming the file, row and column."""
  out = np.zeros((len(obs), len(columns)), np.float32)
  for k, name in enumerate(columns):
    if name not in obs.extra:
      from sinr_jax.observations import _missing_column
      raise _missing_column(name, list(obs.extra), obs.source, None)
    values = obs.extra[name]
    if values.dtype.kind == "O":
      texts = [i for i, v in enumerate(values) if v is not None]
      if texts:
        i = texts[0]
        raise SinrInputError(f"covariate {values[i]!r} is not a number", file=obs.source,
                             row=int(obs.rows[i]), field=name)
      values = np.full(len(values), np.nan)
    out[:, k] = values.astype(np.float64)
  check_finite(out, columns, obs.source, obs.rows, "")
  return out


def check_finite(values: np.ndarray, names, source: str, rows: np.ndarray, why: str) -> None:
  """Raise on the first non-finite covariate, naming its row and column."""
  bad = ~np.isfinite(values)
  if bad.any():
    i, k = np.argwhere(bad)[0]
    raise SinrInputError(
        f"covariate is missing (NaN or empty){why} in {int(bad.any(axis=1).sum())} of "
        f"{len(values)} rows; remove or fill those rows", file=source, row=int(rows[i]),
        field=names[k])
