"""Regional GeoTIFF covariates in any CRS: read with tifffile, georeferenced through pyproj.

The GeoTIFF tags give the pixel grid (ModelPixelScale + ModelTiepoint, or ModelTransformation),
whether a pixel's coordinate names its corner or its centre (GTRasterTypeGeoKey: PixelIsArea or
PixelIsPoint) and the CRS as an EPSG code (ProjectedCSTypeGeoKey / GeographicTypeGeoKey). A file
with a user-defined CRS needs the CRS named (`crs=`). GDAL's nodata tag (42113) marks missing
values. Points are transformed to the raster's CRS by pyproj and read bilinearly between pixel
centres; a point outside the raster, or next to a nodata pixel it would average, gets NaN.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from sinr_jax import crs as crs_lib
from sinr_jax.errors import SinrInputError

USER_DEFINED = 32767
_NODATA_TAG = 42113
_NEGLIGIBLE = 1e-6  # bilinear weights below this (round-off at pixel centres) count as 0


@dataclasses.dataclass(frozen=True, eq=False)
class GeoRaster:
  data: np.ndarray        # (H, W, C) float32, NaN = nodata
  affine: np.ndarray      # (2, 3): (x, y) = affine @ (col, row, 1), (col, row) of pixel centres
  crs: str                # what pyproj parses: "EPSG:32610", or the user's override
  path: str
  names: tuple[str, ...]  # one per band

  def sample(self, lon, lat) -> np.ndarray:
    """(N, C) float32 bilinear values at (lon, lat) degrees; NaN outside, or next to nodata
    with weight > 1e-6."""
    x, y = crs_lib.from_lonlat(lon, lat, self.crs)
    inv = np.linalg.inv(np.vstack([self.affine, [0.0, 0.0, 1.0]]))[:2]
    col = inv[0, 0] * x + inv[0, 1] * y + inv[0, 2]
    row = inv[1, 0] * x + inv[1, 1] * y + inv[1, 2]
    return bilinear(self.data, col, row)


def bilinear(data: np.ndarray, col, row) -> np.ndarray:
  """(N, C) values at fractional pixel-centre indices; within half a pixel of the outer centres
  the edge value is kept, further out (or at a NaN neighbour with weight > 0) the value is NaN."""
  h, w, c = data.shape
  col, row = np.asarray(col, np.float64), np.asarray(row, np.float64)
  inside = (col >= -0.5) & (col <= w - 0.5) & (row >= -0.5) & (row <= h - 0.5)
  col, row = np.clip(np.nan_to_num(col), 0, w - 1), np.clip(np.nan_to_num(row), 0, h - 1)
  c0, r0 = np.minimum(np.floor(col).astype(np.int64), max(w - 2, 0)), np.minimum(
      np.floor(row).astype(np.int64), max(h - 2, 0))
  c1, r1 = np.minimum(c0 + 1, w - 1), np.minimum(r0 + 1, h - 1)
  dc, dr = (col - c0)[:, None], (row - r0)[:, None]
  out = np.zeros((len(col), c), np.float64)
  for rr, cc, weight in ((r0, c0, (1 - dr) * (1 - dc)), (r0, c1, (1 - dr) * dc),
                         (r1, c0, dr * (1 - dc)), (r1, c1, dr * dc)):
    v = data[rr, cc].astype(np.float64)
    # A NaN neighbour with (numerically) no weight, e.g. at a pixel centre, is ignored.
    out += np.where(weight > _NEGLIGIBLE, v * weight, 0.0)
  out[~inside] = np.nan
  return out.astype(np.float32)


def read_geotiff(path, *, crs: str = "") -> GeoRaster:
  """Reads a single- or multi-band GeoTIFF; `crs` overrides (or supplies) the file's CRS."""
  import tifffile
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise SinrInputError("GeoTIFF not found", file=path, field="data.covariate_rasters")
  try:
    with tifffile.TiffFile(path) as tif:
      page = tif.pages[0]
      data = page.asarray()
      axes = page.axes
      geo = tif.geotiff_metadata or {}
      nodata_tag = page.tags.get(_NODATA_TAG)
      nodata = nodata_tag.value if nodata_tag is not None else None
  except KeyError as e:  # tifffile's way of saying a codec is missing
    raise SinrInputError(f"cannot decode the GeoTIFF ({e}); `pip install imagecodecs` adds the "
                         "codec", file=path) from e
  except (OSError, ValueError, tifffile.TiffFileError) as e:
    raise SinrInputError(f"cannot read the GeoTIFF ({e})", file=path) from e
  data = _bands_last(np.asarray(data), axes, path)
  if not np.issubdtype(data.dtype, np.number):
    raise SinrInputError(f"pixel type {data.dtype} is not numeric", file=path, field="dtype")
  values = data.astype(np.float32)
  if nodata is not None:
    try:
      values[data == np.asarray(float(str(nodata).strip("\x00 ")), data.dtype)] = np.nan
    except ValueError:
      raise SinrInputError(f"unreadable GDAL nodata value {nodata!r}", file=path,
                           field="GDAL_NODATA") from None
  if np.isinf(values).any():
    raise SinrInputError("the raster holds inf values", file=path, field="values")
  if np.isnan(values).all():
    raise SinrInputError("every pixel is nodata", file=path, field="values")
  affine = _affine(geo, path)
  file_crs = _crs_of(geo)
  if not crs and not file_crs:
    raise SinrInputError("the GeoTIFF's CRS is user-defined or missing; name it (e.g. "
                         "data.covariate_crs=EPSG:32610)", file=path, field="GeoKeyDirectory")
  crs = crs or file_crs
  crs_lib.parse(crs, file=path, field="crs")
  stem = os.path.splitext(os.path.basename(path))[0]
  names = (stem,) if values.shape[2] == 1 else tuple(
      f"{stem}_b{k + 1}" for k in range(values.shape[2]))
  return GeoRaster(data=values, affine=affine, crs=crs, path=path, names=names)


def _bands_last(data: np.ndarray, axes: str, path: str) -> np.ndarray:
  if axes in ("YX", "YXS"):
    return data.reshape(data.shape[0], data.shape[1], -1)
  if axes in ("SYX", "CYX", "QYX", "IYX"):
    return np.moveaxis(data, 0, -1)
  raise SinrInputError(f"unsupported image layout {axes} {data.shape}; expected bands × rows × "
                       "columns", file=path, field="shape")


def _crs_of(geo: dict) -> str:
  for key in ("ProjectedCSTypeGeoKey", "GeographicTypeGeoKey"):
    if key in geo:
      code = int(geo[key])
      return "" if code == USER_DEFINED else f"EPSG:{code}"
  return ""


def _affine(geo: dict, path: str) -> np.ndarray:
  """(2, 3) map from pixel-centre (col, row) to (x, y)."""
  # PixelIsArea (1, the default): model coordinates name the pixel's corner, so the centre of
  # pixel (0, 0) is at raster position (0.5, 0.5); PixelIsPoint (2): at (0, 0).
  shift = 0.0 if int(geo.get("GTRasterTypeGeoKey", 1)) == 2 else 0.5
  if "ModelTransformation" in geo:
    m = np.asarray(geo["ModelTransformation"], np.float64).reshape(-1)
    if m.size != 16:
      raise SinrInputError("ModelTransformation must hold 16 numbers", file=path,
                           field="ModelTransformation")
    a = np.array([[m[0], m[1], m[3]], [m[4], m[5], m[7]]])
  elif "ModelPixelScale" in geo and "ModelTiepoint" in geo:
    sx, sy = np.asarray(geo["ModelPixelScale"], np.float64)[:2]
    tie = np.asarray(geo["ModelTiepoint"], np.float64).reshape(-1)
    if tie.size < 6 or sx <= 0 or sy <= 0:
      raise SinrInputError("need one ModelTiepoint and positive ModelPixelScale", file=path,
                           field="ModelTiepoint")
    i, j, x, y = tie[0], tie[1], tie[3], tie[4]
    a = np.array([[sx, 0.0, x - i * sx], [0.0, -sy, y + j * sy]])
  else:
    raise SinrInputError("no georeferencing (ModelPixelScale + ModelTiepoint or "
                         "ModelTransformation); is this a GeoTIFF?", file=path,
                         field="ModelTiepoint")
  if abs(np.linalg.det(a[:, :2])) == 0:
    raise SinrInputError("degenerate pixel-to-model transform", file=path, field="transform")
  a[:, 2] += shift * (a[:, 0] + a[:, 1])
  return a
