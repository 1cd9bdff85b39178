"""Study regions: samplers stay inside (checked with matplotlib's point-in-polygon), draw uniformly
by area, keep land only, and bad polygons fail naming the file and what is wrong."""
import json
import math

import jax
import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from sinr_jax import coords, region
from sinr_jax.errors import SinrInputError

# A lake-free stretch of land: the US Great Plains, with a hole and a second part.
OUTER = [[-104, 36], [-96, 36], [-96, 44], [-100, 41], [-104, 44], [-104, 36]]   # concave
HOLE = [[-102, 37], [-98, 37], [-98, 39], [-102, 39], [-102, 37]]
SECOND = [[-94, 40], [-92, 40], [-92, 42], [-94, 40]]


def _geojson(tmp_path, geometry, name="region.geojson"):
  path = tmp_path / name
  path.write_text(json.dumps({"type": "FeatureCollection", "features": [
      {"type": "Feature", "properties": {}, "geometry": geometry}]}))
  return path


def _reference_inside(pts):
  """matplotlib's point-in-polygon, independent of region.py's even-odd code."""
  outer, hole, second = (MplPath(np.array(r, float)) for r in (OUTER, HOLE, SECOND))
  return (outer.contains_points(pts) & ~hole.contains_points(pts)) | second.contains_points(pts)


def test_polygon_with_hole_and_parts_matches_reference_and_sampler_stays_inside(tmp_path):
  path = _geojson(tmp_path, {"type": "MultiPolygon",
                             "coordinates": [[OUTER, HOLE], [SECOND]]})
  r = region.from_geojson(path, land_only=False)
  rng = np.random.default_rng(0)
  pts = np.stack([rng.uniform(-105, -91, 20000), rng.uniform(35, 45, 20000)], 1)
  np.testing.assert_array_equal(r.contains(pts), _reference_inside(pts))
  draws = r.sample(5000, seed=1)
  assert draws.shape == (5000, 2) and _reference_inside(draws).all()
  # Every part gets points, in proportion to its area (lon-lat areas are close at these latitudes).
  second = MplPath(np.array(SECOND, float)).contains_points(draws).mean()
  area = lambda ring: 0.5 * abs(np.dot(np.array(ring)[:-1, 0], np.array(ring)[1:, 1])
                                - np.dot(np.array(ring)[1:, 0], np.array(ring)[:-1, 1]))
  expected = area(SECOND) / (area(OUTER) - area(HOLE) + area(SECOND))
  assert abs(second - expected) < 0.02


def test_bbox_draws_uniformly_by_area():
  r = region.from_bbox("-10,0,10,60", land_only=False)
  draws = r.sample(40000, seed=0)
  assert (draws[:, 0] >= -10).all() and (draws[:, 0] <= 10).all()
  assert (draws[:, 1] >= 0).all() and (draws[:, 1] <= 60).all()
  # The share of the box's area above 30°N: (sin 60° − sin 30°) / sin 60°.
  expected = (math.sin(math.radians(60)) - 0.5) / math.sin(math.radians(60))
  assert abs(np.mean(draws[:, 1] > 30) - expected) < 0.01


def test_land_only_keeps_land_and_the_coast():
  r = region.from_bbox("-11,49,3,60", land_only=True)     # the British Isles and open sea
  draws = r.sample(3000, seed=0)
  assert region.on_land(draws[:, 0], draws[:, 1]).all()
  sea = np.array([[-10.5, 59.5], [2.0, 55.0]])             # the Atlantic; the North Sea
  assert not r.contains(sea).any()
  assert r.contains(np.array([[-1.5, 52.5]]))[0]         # the Midlands


def test_hull_with_buffer_contains_presences_and_reaches_the_buffer():
  rng = np.random.default_rng(0)
  pres = np.stack([rng.uniform(10, 12, 50), rng.uniform(45, 47, 50)], 1)
  r = region.from_hull(pres, 50.0, land_only=False)
  assert r.contains(pres).all()
  north = pres[np.argmax(pres[:, 1])]
  just_inside = north + [0, 45.0 / 111.2]     # 45 km north of the northernmost presence
  just_outside = north + [0, 56.0 / 111.2]
  assert r.contains(just_inside[None])[0] and not r.contains(just_outside[None])[0]
  with pytest.raises(SinrInputError, match="degenerate"):
    region.from_hull(np.array([[0, 0], [1, 1], [2, 2]]), 0.0)


def test_pool_random_locations_only_draw_pool_points():
  pool = np.array([[10.0, 20.0], [-30.0, 40.0], [100.0, -5.0]], np.float32)
  cov = np.arange(6, dtype=np.float32).reshape(3, 2)
  rl = coords.random_locations("background", pool, cov)
  lonlat, c = rl(jax.random.key(0), 500)
  deg = np.asarray(coords.to_degrees(lonlat))
  rows = np.argmin(np.abs(deg[:, None, :] - pool[None]).sum(-1), axis=1)
  np.testing.assert_allclose(deg, pool[rows], atol=1e-4)
  np.testing.assert_array_equal(np.asarray(c), cov[rows])
  assert set(rows.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("rings,match", [
    ([[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]], "edge .* intersect"),   # a bow-tie
    ([[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], [[3, 1], [5, 1], [5, 2], [3, 2], [3, 1]]],
     "hole crossing"),                                                    # hole sticks out
    ([[[0, 0], [1, 0], [1, 1], [0, 1]]], "not closed"),
    ([[[0, 0], [1, 0], [0, 0]]], "at least 4"),
    ([[[0, 0], [200, 0], [1, 1], [0, 0]]], "outside lon"),
])
def test_invalid_polygons_are_refused_naming_the_file(tmp_path, rings, match):
  path = _geojson(tmp_path, {"type": "Polygon", "coordinates": rings})
  with pytest.raises(SinrInputError, match=match) as info:
    region.from_geojson(path)
  assert info.value.file == str(path) and info.value.field == "coordinates"


def test_bad_region_settings():
  with pytest.raises(SinrInputError, match="lon_min < lon_max"):
    region.from_bbox("10,0,5,5")
  with pytest.raises(SinrInputError, match="mostly sea"):
    region.from_bbox("-30,-30,-29,-29", land_only=True).sample(100, seed=0)  # South Atlantic
