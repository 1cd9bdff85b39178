"""A study region: where pseudo-absences are drawn, evaluation happens and maps are cropped.

Three ways to name one (`data.region.*`): a GeoJSON (Multi)Polygon file, a lon/lat bounding box,
or the convex hull of the presences (or of presences and background points: the area the user
sampled) grown by a buffer in km. Edges are straight in lon/lat
(GeoJSON's planar convention, RFC 7946 §3.1.1); a region may not cross the antimeridian.
`land_only` (the default) keeps the parts of the region with any land in the packaged 1/3° grid
(`sinr_jax.world`), so coastal presences stay inside while open sea is left out.

`Region.sample(n, seed)` draws points uniformly by area: longitude uniform and sin(latitude)
uniform inside the bounding box, then rejection by `contains`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from sinr_jax.errors import SinrInputError

EARTH_RADIUS_KM = 6371.0088
_CHUNK = 4096          # points per block in the point-in-polygon test
_HULL_CIRCLE = 32      # points on each buffer circle around a hull vertex


@dataclasses.dataclass(frozen=True, eq=False)
class Region:
  """Polygons as lists of closed (K, 2) lon/lat rings: the exterior first, then its holes."""
  polygons: tuple[tuple[np.ndarray, ...], ...]
  source: str
  land_only: bool = True

  @property
  def bounds(self) -> tuple[float, float, float, float]:
    """(lon_min, lat_min, lon_max, lat_max) of the exteriors."""
    pts = np.concatenate([p[0] for p in self.polygons])
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()),
            float(pts[:, 1].max()))

  def contains(self, lonlat) -> np.ndarray:
    """(N,) bool: inside a polygon (even-odd over its rings) and, if land_only, on land."""
    lonlat = np.asarray(lonlat, np.float64).reshape(-1, 2)
    inside = np.zeros(len(lonlat), bool)
    for rings in self.polygons:
      edges = np.concatenate([np.stack([r[:-1], r[1:]], axis=1) for r in rings])  # (E, 2, 2)
      for start in range(0, len(lonlat), _CHUNK):
        inside[start:start + _CHUNK] |= _crossings_odd(lonlat[start:start + _CHUNK], edges)
    if self.land_only:
      inside &= on_land(lonlat[:, 0], lonlat[:, 1])
    return inside

  def sample(self, n: int, seed: int) -> np.ndarray:
    """(n, 2) float64 lon/lat uniform by area over the region (land only if `land_only`)."""
    lon0, lat0, lon1, lat1 = self.bounds
    s0, s1 = math.sin(math.radians(lat0)), math.sin(math.radians(lat1))
    rng = np.random.default_rng(seed)
    out, have, drawn = [], 0, 0
    while have < n:
      m = max(1024, 2 * (n - have))
      lonlat = np.stack([rng.uniform(lon0, lon1, m),
                         np.degrees(np.arcsin(rng.uniform(s0, s1, m)))], axis=1)
      keep = lonlat[self.contains(lonlat)]
      out.append(keep)
      have += len(keep)
      drawn += m
      if drawn >= 200 * max(n, 1024) and have < n:
        raise SinrInputError(
            f"only {have} of {drawn} points drawn in the region's bounding box fell inside it"
            + (" on land (land_only)" if self.land_only else "") + "; is the region mostly "
            "sea or a sliver?", file=self.source, field="data.region")
    return np.concatenate(out)[:n]

  def describe(self) -> str:
    lon0, lat0, lon1, lat1 = self.bounds
    return (f"{self.source}: {len(self.polygons)} polygon(s), lon {lon0:.3f}..{lon1:.3f}, "
            f"lat {lat0:.3f}..{lat1:.3f}" + (", land only" if self.land_only else ""))


def on_land(lon, lat) -> np.ndarray:
  """True where the packaged 1/3° cell holding (lon, lat) has any land."""
  from sinr_jax.world import assets
  rows, cols = assets.raster_index(lon, lat)
  return assets.grids()["land_fraction"][rows, cols] > 0


def _crossings_odd(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """Even-odd rule: does a ray from each point towards +lon cross an odd number of edges?"""
  px, py = points[:, 0:1], points[:, 1:2]
  x1, y1, x2, y2 = edges[:, 0, 0], edges[:, 0, 1], edges[:, 1, 0], edges[:, 1, 1]
  straddles = (y1 > py) != (y2 > py)
  with np.errstate(divide="ignore", invalid="ignore"):
    x_cross = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
  return (np.sum(straddles & (px < x_cross), axis=1) % 2).astype(bool)


# --- constructors --------------------------------------------------------------------------------

def from_bbox(bbox, *, land_only: bool = True, field: str = "data.region.bbox") -> Region:
  """A box "lon_min,lat_min,lon_max,lat_max" (string or 4 numbers) in degrees."""
  try:
    values = [float(v) for v in (bbox.split(",") if isinstance(bbox, str) else bbox)]
  except (TypeError, ValueError):
    values = []
  if len(values) != 4 or not all(math.isfinite(v) for v in values):
    raise SinrInputError(f"expected lon_min,lat_min,lon_max,lat_max, got {bbox!r}", field=field)
  lon0, lat0, lon1, lat1 = values
  if not (-180 <= lon0 < lon1 <= 180 and -90 <= lat0 < lat1 <= 90):
    raise SinrInputError(f"bounding box {values} needs -180 <= lon_min < lon_max <= 180 and "
                         "-90 <= lat_min < lat_max <= 90 (no antimeridian crossing)", field=field)
  ring = np.array([[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]])
  return Region(((ring,),), source=f"bbox {values}", land_only=land_only)


def from_hull(lonlat, buffer_km: float, *, land_only: bool = True,
              source: str = "presences") -> Region:
  """The convex hull of the points grown by `buffer_km` (hull of geodesic circles round them)."""
  from scipy.spatial import ConvexHull, QhullError
  pts = np.unique(np.asarray(lonlat, np.float64).reshape(-1, 2), axis=0)
  if not (buffer_km >= 0 and math.isfinite(buffer_km)):
    raise SinrInputError(f"buffer must be a finite number of km >= 0, got {buffer_km}",
                         field="data.region.hull_buffer_km")
  if buffer_km > 0:
    pts = _circles(pts, buffer_km)
  try:
    hull = ConvexHull(pts)
  except (QhullError, ValueError) as e:
    raise SinrInputError(f"the convex hull of {len(pts)} distinct points is degenerate (all on "
                         "a line?); give data.region.hull_buffer_km > 0 or another region",
                         file=source, field="data.region") from e
  ring = pts[hull.vertices]  # counter-clockwise
  ring[:, 0] = np.clip(ring[:, 0], -180, 180)
  ring[:, 1] = np.clip(ring[:, 1], -90, 90)
  return Region(((np.vstack([ring, ring[:1]]),),),
                source=f"convex hull of {source} + {buffer_km:g} km", land_only=land_only)


def _circles(pts: np.ndarray, radius_km: float) -> np.ndarray:
  """Points on the geodesic circle of `radius_km` around each point (spherical Earth)."""
  lon, lat = np.radians(pts[:, :1]), np.radians(pts[:, 1:])
  bearing = np.linspace(0, 2 * math.pi, _HULL_CIRCLE, endpoint=False)[None, :]
  d = radius_km / EARTH_RADIUS_KM
  lat2 = np.arcsin(np.sin(lat) * math.cos(d) + np.cos(lat) * math.sin(d) * np.cos(bearing))
  lon2 = lon + np.arctan2(np.sin(bearing) * math.sin(d) * np.cos(lat),
                          math.cos(d) - np.sin(lat) * np.sin(lat2))
  if np.degrees(np.abs(lon2)).max() > 180:
    raise SinrInputError("the buffered hull crosses the antimeridian, which regions do not "
                         "support; give a bounding box or polygon instead",
                         field="data.region.hull_buffer_km")
  return np.stack([np.degrees(lon2).ravel(), np.degrees(lat2).ravel()], axis=1)


def from_geojson(path, *, land_only: bool = True) -> Region:
  """Every Polygon/MultiPolygon of a GeoJSON file (a geometry, Feature or FeatureCollection)."""
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8") as f:
      doc = json.load(f)
  except FileNotFoundError:
    raise SinrInputError("region file not found", file=path, field="data.region.polygon") from None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise SinrInputError(f"cannot read the region as JSON ({e})", file=path,
                         field="data.region.polygon") from None
  polygons = []
  for where, geometry in _geometries(doc, path):
    kind = geometry.get("type")
    parts = ([geometry.get("coordinates")] if kind == "Polygon"
             else geometry.get("coordinates") if kind == "MultiPolygon" else None)
    if parts is None or not isinstance(parts, list):
      raise SinrInputError(f"{where} is a {kind!r}; a region needs Polygon or MultiPolygon "
                           "geometries", file=path, field="type")
    for k, rings in enumerate(parts):
      polygons.append(_checked_polygon(rings, f"{where}, polygon {k}", path))
  if not polygons:
    raise SinrInputError("no polygon in the file", file=path, field="features")
  return Region(tuple(polygons), source=path, land_only=land_only)


def _geometries(doc, path):
  if not isinstance(doc, dict):
    raise SinrInputError("expected a GeoJSON object", file=path)
  if doc.get("type") == "FeatureCollection":
    feats = doc.get("features")
    if not isinstance(feats, list):
      raise SinrInputError("'features' must be a list", file=path, field="features")
    for i, feat in enumerate(feats):
      geometry = feat.get("geometry") if isinstance(feat, dict) else None
      if not isinstance(geometry, dict):
        raise SinrInputError(f"feature {i} (0-based) has no geometry", file=path,
                             field="geometry")
      yield f"feature {i}", geometry
  elif doc.get("type") == "Feature":
    if not isinstance(doc.get("geometry"), dict):
      raise SinrInputError("the feature has no geometry", file=path, field="geometry")
    yield "the feature", doc["geometry"]
  else:
    yield "the geometry", doc


def _checked_polygon(rings, where: str, path: str) -> tuple[np.ndarray, ...]:
  """Closed rings of >= 4 positions, in range, with nonzero area and no crossing edges."""
  if not isinstance(rings, list) or not rings:
    raise SinrInputError(f"{where} has no rings", file=path, field="coordinates")
  out = []
  for j, ring in enumerate(rings):
    name = f"{where}, ring {j}"
    try:
      a = np.asarray(ring, np.float64)
    except (TypeError, ValueError):
      a = np.zeros((0,))
    if a.ndim != 2 or a.shape[1] < 2 or len(a) < 4:
      raise SinrInputError(f"{name} must be a list of at least 4 [lon, lat] positions",
                           file=path, field="coordinates")
    a = a[:, :2]
    if not np.all(np.isfinite(a)) or np.abs(a[:, 0]).max() > 180 or np.abs(a[:, 1]).max() > 90:
      raise SinrInputError(f"{name} has a position outside lon [-180, 180] / lat [-90, 90]",
                           file=path, field="coordinates")
    if not np.array_equal(a[0], a[-1]):
      raise SinrInputError(f"{name} is not closed (its first and last positions differ)",
                           file=path, field="coordinates")
    out.append(a)
  crossing = _first_crossing(out)
  if crossing is not None:
    (r1, e1), (r2, e2) = crossing
    raise SinrInputError(
        f"{where} is invalid: edge {e1} of ring {r1} and edge {e2} of ring {r2} intersect "
        "(a self-intersecting ring, or a hole crossing its exterior)", file=path,
        field="coordinates")
  for j, a in enumerate(out):
    x, y = a[:, 0], a[:, 1]
    if abs(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])) < 1e-12:
      raise SinrInputError(f"{where}, ring {j} has zero area", file=path, field="coordinates")
  return tuple(out)


def _orient(a, b, c):
  return np.sign((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1])
                 - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))


def _on_segment(a, b, c):
  """c (collinear with a-b) lies within the box of segment a-b."""
  lo, hi = np.minimum(a, b), np.maximum(a, b)
  return np.all((lo <= c) & (c <= hi), axis=-1)


def _first_crossing(rings):
  """((ring, edge), (ring, edge)) of the first two non-adjacent edges that touch, or None."""
  seg = np.concatenate([np.stack([r[:-1], r[1:]], axis=1) for r in rings])   # (E, 2, 2)
  ring_id = np.concatenate([np.full(len(r) - 1, k) for k, r in enumerate(rings)])
  edge_id = np.concatenate([np.arange(len(r) - 1) for r in rings])
  size = np.concatenate([np.full(len(r) - 1, len(r) - 1) for r in rings])
  n = len(seg)
  for start in range(0, n, 512):
    i = np.arange(start, min(start + 512, n))[:, None]
    j = np.arange(n)[None, :]
    same = ring_id[i] == ring_id[j]
    gap = np.abs(edge_id[i] - edge_id[j])
    adjacent = same & ((gap <= 1) | (gap == size[i] - 1))
    candidate = (j > i) & ~adjacent
    p1, p2 = seg[i, 0], seg[i, 1]
    p3, p4 = seg[j, 0], seg[j, 1]
    o1, o2 = _orient(p1, p2, p3), _orient(p1, p2, p4)
    o3, o4 = _orient(p3, p4, p1), _orient(p3, p4, p2)
    hit = (o1 * o2 < 0) & (o3 * o4 < 0)
    hit |= (o1 == 0) & _on_segment(p1, p2, p3)
    hit |= (o2 == 0) & _on_segment(p1, p2, p4)
    hit |= (o3 == 0) & _on_segment(p3, p4, p1)
    hit |= (o4 == 0) & _on_segment(p3, p4, p2)
    hit &= candidate
    if hit.any():
      a, b = np.argwhere(hit)[0]
      a, b = start + a, b
      return (int(ring_id[a]), int(edge_id[a])), (int(ring_id[b]), int(edge_id[b]))
  return None


HULL_POINTS = ("presences", "all")


def from_config(region_cfg, presences_lonlat=None, background_lonlat=None) -> Region | None:
  """The region `data.region` names (None when it names none); a hull is grown round the
  presences, or with hull_points='all' round the presences and the background points."""
  land = bool(region_cfg.land_only)
  named = [k for k in ("polygon", "bbox") if region_cfg.get(k)]
  hull = region_cfg.get("hull_buffer_km", -1) >= 0
  if len(named) + hull > 1:
    raise SinrInputError(f"name one region: data.region.polygon, .bbox or .hull_buffer_km (got "
                         f"{', '.join(named + (['hull_buffer_km'] if hull else []))})",
                         field="data.region")
  if region_cfg.get("polygon"):
    return from_geojson(region_cfg.polygon, land_only=land)
  if region_cfg.get("bbox"):
    return from_bbox(region_cfg.bbox, land_only=land)
  if hull:
    if presences_lonlat is None:
      raise SinrInputError("a hull region needs the presences", field="data.region")
    which = region_cfg.get("hull_points", "presences")
    if which not in HULL_POINTS:
      raise SinrInputError(f"data.region.hull_points must be one of {', '.join(HULL_POINTS)}, "
                           f"got {which!r}", field="data.region.hull_points")
    points = np.asarray(presences_lonlat).reshape(-1, 2)
    if which == "all":
      if background_lonlat is None:
        raise SinrInputError("hull_points='all' needs data.background_file",
                             field="data.region.hull_points")
      points = np.vstack([points, np.asarray(background_lonlat).reshape(-1, 2)])
    return from_hull(points, float(region_cfg.hull_buffer_km), land_only=land,
                     source="presences" if which == "presences" else "presences and background")
  return None
