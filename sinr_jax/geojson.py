"""H3 cells → one GeoJSON MultiPolygon (RFC 7946): merged cell boundaries, cut at the antimeridian.

h3's own union (`cells_to_geo`) merges cells but leaves rings that jump from +180° to -180°, which
GeoJSON readers draw as bands around the globe. So cells whose boundary crosses the antimeridian,
and the cell holding a pole, are taken out of the union and emitted as their own pieces, cut at
±180° (a polar cell becomes a cap closed along the pole's latitude line); everything else is h3's
union. Rings are closed, exteriors counter-clockwise and holes clockwise (the right-hand rule).
"""
from __future__ import annotations

import h3
import numpy as np

_API = h3.api.basic_int


def _signed_area(ring) -> float:
  x, y = np.asarray(ring, np.float64).T
  return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def _oriented(ring, ccw: bool) -> list[list[float]]:
  ring = [[float(x), float(y)] for x, y in ring]
  if ring[0] != ring[-1]:
    ring.append(list(ring[0]))
  if (_signed_area(ring) > 0) != ccw:
    ring.reverse()
  return ring


def _clip(poly: list[tuple[float, float]], x0: float, keep_left: bool):
  """Sutherland–Hodgman against the vertical line lon = x0 (planar lon/lat)."""
  inside = (lambda p: p[0] <= x0) if keep_left else (lambda p: p[0] >= x0)
  out = []
  for i, cur in enumerate(poly):
    prev = poly[i - 1]
    if inside(cur) != inside(prev):
      f = (x0 - prev[0]) / (cur[0] - prev[0])
      out.append((x0, prev[1] + f * (cur[1] - prev[1])))
    if inside(cur):
      out.append(cur)
  return out


def _split_cell(cell: int) -> list[list[tuple[float, float]]]:
  """An antimeridian-crossing cell as its west and east pieces, in (lon, lat)."""
  pts = [(lon + 360.0 if lon < 0 else lon, lat) for lat, lon in _API.cell_to_boundary(cell)]
  west = _clip(pts, 180.0, keep_left=True)
  east = [(x - 360.0, y) for x, y in _clip(pts, 180.0, keep_left=False)]
  return [p for p in (west, east) if len(p) >= 3]


def _polar_cap(cell: int, north: bool) -> list[tuple[float, float]]:
  """The cell holding a pole: its boundary sorted by longitude, closed along lat = ±90."""
  pts = sorted((lon, lat) for lat, lon in _API.cell_to_boundary(cell))
  (x1, y1), (x0, y0) = pts[-1], pts[0]
  span = (x0 + 360.0) - x1  # the edge that wraps from the last vertex to the first
  y_edge = y1 + (180.0 - x1) / span * (y0 - y1)
  pole = 90.0 if north else -90.0
  return [(-180.0, y_edge), *pts, (180.0, y_edge), (180.0, pole), (-180.0, pole)]


def _crosses(cell: int) -> bool:
  lons = [lon for _, lon in _API.cell_to_boundary(cell)]
  return any(abs(a - b) > 180.0 for a, b in zip(lons, lons[1:] + lons[:1]))


def cells_to_multipolygon(cells) -> dict:
  """GeoJSON MultiPolygon geometry covering the uint64 H3 cells (all of one resolution)."""
  cells = [int(c) for c in np.unique(np.asarray(cells, np.uint64))]
  polys = []
  if cells:
    res = _API.get_resolution(cells[0])
    poles = {_API.latlng_to_cell(90.0, 0.0, res): True, _API.latlng_to_cell(-90.0, 0.0, res): False}
    special = [c for c in cells if c in poles or _crosses(c)]
    rest = sorted(set(cells) - set(special))
    for c in special:
      pieces = [_polar_cap(c, poles[c])] if c in poles else _split_cell(c)
      polys += [[_oriented(p, ccw=True)] for p in pieces]
    if rest:
      geo = h3.cells_to_geo([h3.int_to_str(c) for c in rest])
      merged = geo["coordinates"] if geo["type"] == "MultiPolygon" else [geo["coordinates"]]
      for rings in merged:
        polys.append([_oriented(rings[0], ccw=True)] + [_oriented(r, ccw=False) for r in rings[1:]])
  return {"type": "MultiPolygon", "coordinates": polys}


def feature(cells, properties: dict) -> dict:
  return {"type": "Feature", "geometry": cells_to_multipolygon(cells), "properties": properties}
