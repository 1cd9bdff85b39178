"""The Python API of a loaded model (RangePredictor): taxon ids, empty and bad coordinates, and the
one-species range-map helpers, which must agree with the export."""
import json
import os

import h3
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from sinr_jax import grid
from sinr_jax.errors import SinrInputError
from sinr_jax.export import export_ranges
from sinr_jax.features import make_encoder
from sinr_jax.models import RangeModel
from sinr_jax.observations import ClassIndex
from sinr_jax.predictor import RangePredictor, taxon_ids

RES = 2


@pytest.fixture(scope="module")
def predictor():
  encoder = make_encoder("coords")
  model = RangeModel(num_species=4, input_dim=4, width=16, depth=1, dropout=0.0)
  params = model.init(jax.random.key(3), jnp.zeros((1, 4)))["params"]
  params["species_embedding"] = params["species_embedding"] * 8  # sharper ranges
  return RangePredictor(model, params, encoder, ClassIndex(np.array([1406, 1407, 2000, 3000])))


def test_integral_float_taxa_are_accepted_others_refused(predictor):
  lon, lat = [10.0, -60.0], [5.0, -20.0]
  exact = predictor.predict(lon, lat, taxa=[1406, 2000])
  np.testing.assert_array_equal(predictor.predict(lon, lat, taxa=[1406.0, 2000.0]), exact)
  np.testing.assert_array_equal(predictor.predict(lon, lat, taxa=np.array([1406.0, 2000.0],
                                                                          np.float32)), exact)
  with pytest.raises(SinrInputError, match=r"1406\.7 at index 1 .*never rounded"):
    predictor.predict(lon, lat, taxa=[2000, 1406.7])
  with pytest.raises(SinrInputError, match="at index 0"):
    predictor.logits(lon, lat, taxa=[np.nan])
  for bad in (["1406"], [True], [[1406]]):
    with pytest.raises(SinrInputError, match="taxa"):
      predictor.predict(lon, lat, taxa=bad)
  with pytest.raises(SinrInputError, match="taxon 9999 is not in the class index"):
    predictor.predict(lon, lat, taxa=[9999])
  # A float32 above 2**24 may already hold a rounded id: refused, not trusted.
  with pytest.raises(SinrInputError, match="not exact integers"):
    taxon_ids(np.array([2.0 ** 25 + 2], np.float32))
  assert taxon_ids(1406).tolist() == [1406]


def test_empty_coordinates_keep_the_column_count(predictor):
  assert predictor.predict([], [], taxa=[1406, 2000, 3000]).shape == (0, 3)
  assert predictor.predict(np.zeros(0), np.zeros(0)).shape == (0, 4)
  assert predictor.logits([], [], taxa=[1407]).shape == (0, 1)
  assert predictor.embed([], []).shape == (0, predictor.embed_dim)
  # batches: an exact multiple of the batch size and a remainder give the same rows
  lon = np.linspace(-170, 170, 7)
  lat = np.linspace(-80, 80, 7)
  np.testing.assert_allclose(predictor.embed(lon, lat, batch_size=3), predictor.embed(lon, lat),
                             rtol=1e-5, atol=1e-6)


def test_bad_coordinates_name_the_first_bad_index(predictor):
  lon = np.array([0.0, 10.0, 181.0, -200.0, 5.0])
  lat = np.zeros(5)
  with pytest.raises(SinrInputError, match=r"lon\[2\] = 181\.0 is outside \[-180, 180\] "
                                           r"\(2 of 5 lon values") as e:
    predictor.predict(lon, lat)
  assert e.value.row == 2 and e.value.field == "lon"
  lat[4] = np.nan
  with pytest.raises(SinrInputError, match=r"lat\[4\] = nan is not finite \(1 of 5") as e:
    predictor.embed(np.zeros(5), lat)
  assert e.value.row == 4
  with pytest.raises(SinrInputError, match=r"lat\[1\] = -91\.0"):
    predictor.embed([0.0, 0.0], [90.0, -91.0])
  with pytest.raises(SinrInputError, match="equal length"):
    predictor.embed([0.0, 1.0], [0.0])


def test_range_map_matches_the_export(predictor, tmp_path):
  rm = predictor.range_map(1407, res=RES, threshold=0.7)
  cells, lonlat = grid.land_cells(RES)
  np.testing.assert_array_equal(rm.cells, cells)
  probs = predictor.predict(lonlat[:, 0], lonlat[:, 1], taxa=[1407])[:, 0]
  np.testing.assert_allclose(rm.probability, probs, rtol=1e-4, atol=1e-6)
  assert rm.threshold == pytest.approx(0.7) and rm.threshold_source == "default"
  assert 0 < rm.in_range.sum() < len(cells)
  assert np.sum(rm.in_range ^ (probs >= 0.7)) <= 1  # float32 rounding at the threshold itself
  assert np.isnan(rm.ap)

  export_ranges(predictor, str(tmp_path / "export"), taxa=[1407], h3_res=RES,
                default_threshold=0.7, formats=("csv", "geojson"))
  rows = pd.read_csv(tmp_path / "export" / "ranges.csv", dtype={"h3": str})
  assert sorted(h3.str_to_int(c) for c in rows.h3) == sorted(rm.range_cells.tolist())
  summary = pd.read_csv(tmp_path / "export" / "summary.csv")
  assert summary.range_km2.item() == pytest.approx(rm.area_km2, rel=1e-5)

  # the one-species files are the export's, for that species
  saved = predictor.save_range_map(1407, tmp_path / "one.csv", res=RES, threshold=0.7)
  one = pd.read_csv(saved, dtype={"h3": str})
  pd.testing.assert_frame_equal(one.sort_values("h3").reset_index(drop=True),
                                rows.sort_values("h3").reset_index(drop=True), rtol=1e-6)
  predictor.save_range_map(1407, tmp_path / "one.parquet", res=RES, threshold=0.7)
  assert len(pd.read_parquet(tmp_path / "one.parquet")) == len(rows)
  predictor.save_range_map(1407, tmp_path / "one.geojson", res=RES, threshold=0.7)
  assert json.load(open(tmp_path / "one.geojson")) == json.load(
      open(tmp_path / "export" / "geojson" / "1407.geojson"))
  predictor.save_range_map(1407, str(tmp_path / "one.png"), threshold=0.7)
  with open(tmp_path / "one.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert sorted(os.listdir(tmp_path)) == ["export", "one.csv", "one.geojson", "one.parquet",
                                          "one.png"]  # no temporary files left


def test_range_map_with_labels_uses_the_f1_threshold(predictor):
  cells, lonlat = grid.land_cells(RES)
  probs = predictor.predict(lonlat[:, 0], lonlat[:, 1], taxa=[2000])[:, 0]
  top = np.argsort(-probs)[:30]
  rm = predictor.range_map(2000, res=RES, labels=top)
  assert rm.threshold_source == "f1" and rm.ap == pytest.approx(1.0)
  assert sorted(np.flatnonzero(rm.in_range)) == sorted(top)


def test_range_map_bad_arguments(predictor, tmp_path):
  with pytest.raises(SinrInputError, match="taxon 5 is not in the class index"):
    predictor.range_map(5, res=RES)
  with pytest.raises(SinrInputError, match="one taxon id"):
    predictor.range_map([1406, 1407], res=RES)
  with pytest.raises(SinrInputError, match="1406.5"):
    predictor.range_map(1406.5, res=RES)
  with pytest.raises(SinrInputError, match="0..6"):
    predictor.range_map(1406, res=9)
  with pytest.raises(SinrInputError, match=r"\(0, 1\)"):
    predictor.range_map(1406, res=RES, threshold=1.5)
  with pytest.raises(SinrInputError, match="unknown file type"):
    predictor.save_range_map(1406, tmp_path / "x.svg", res=RES)
  with pytest.raises(SinrInputError, match="taxon 5"):
    predictor.save_range_map(5, tmp_path / "x.png")
  assert not os.listdir(tmp_path)
