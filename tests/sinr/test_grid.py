"""H3 helpers: enumeration, land filtering, centre/point conversions."""
from __future__ import annotations

import h3
import numpy as np
import pytest

from sinr_jax import grid
from sinr_jax.errors import SinrInputError
from sinr_jax.world import is_land


def test_all_cells_counts_match_h3():
  assert len(grid.all_cells(0)) == 122
  assert len(grid.all_cells(1)) == 842 == h3.get_num_cells(1)
  assert len(grid.all_cells(2)) == h3.get_num_cells(2)


@pytest.mark.parametrize("res", [0, 2, 3])
def test_land_cells_plausible(res):
  cells, lonlat = grid.land_cells(res)
  assert cells.dtype == np.uint64 and lonlat.shape == (len(cells), 2)
  assert np.all(np.diff(cells) > 0)
  share = len(cells) / h3.get_num_cells(res)
  assert 0.2 < share < 0.4  # ~29% of the Earth is land; res 0 is coarse
  assert is_land(lonlat[:, 0], lonlat[:, 1]).all()
  assert set(cells.tolist()) <= set(grid.all_cells(res).tolist())


def test_land_cells_cached_and_read_only():
  a, _ = grid.land_cells(2)
  b, _ = grid.land_cells(2)
  assert a is b
  with pytest.raises(ValueError):
    a[0] = 0


def test_centres_and_points_round_trip():
  cells, lonlat = grid.land_cells(3)
  pick = cells[::97]
  ll = grid.cells_lonlat(pick)
  np.testing.assert_allclose(ll, lonlat[::97])
  lat, lng = h3.cell_to_latlng(h3.int_to_str(int(pick[5])))
  np.testing.assert_allclose(ll[5], [lng, lat])
  np.testing.assert_array_equal(grid.lonlat_to_cells(ll, 3), pick)
  hexes = np.array([h3.int_to_str(int(c)) for c in pick[:4]])
  np.testing.assert_allclose(grid.cells_lonlat(hexes), ll[:4])


def test_known_places_land_or_sea_cells():
  land, _ = grid.land_cells(3)
  pts = np.array([[2.35, 48.85], [-60.0, -3.1], [134.0, -25.0],  # Paris, Manaus, central Australia
                  [-150.0, 0.0], [-30.0, 30.0]])  # mid-Pacific, mid-Atlantic
  got = np.isin(grid.lonlat_to_cells(pts, 3), land)
  np.testing.assert_array_equal(got, [True, True, True, False, False])


def test_bad_input_raises():
  with pytest.raises(SinrInputError, match="res"):
    grid.land_cells(16)
  with pytest.raises(SinrInputError, match="lonlat"):
    grid.lonlat_to_cells(np.array([[0.0, 95.0]]), 3)
  with pytest.raises(SinrInputError, match="cells"):
    grid.cells_lonlat(np.array([12345], np.uint64))
