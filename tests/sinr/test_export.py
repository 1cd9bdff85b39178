"""Range-map export: cell lists (CSV = Parquet = the model's probabilities above the threshold),
GeoJSON that covers exactly the exported cells and is cut at the antimeridian, PNGs, the CLI."""
import json
import os
import re

import h3
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from matplotlib.path import Path

from sinr_jax import grid
from sinr_jax.errors import SinrInputError
from sinr_jax.export import export_ranges, main, parse_taxa
from sinr_jax.features import make_encoder
from sinr_jax.geojson import cells_to_multipolygon
from sinr_jax.models import RangeModel
from sinr_jax.observations import ClassIndex
from sinr_jax.predictor import RangePredictor

RES = 2  # 5,882 cells worldwide: land cells take well under a second


@pytest.fixture(scope="module")
def predictor():
  encoder = make_encoder("coords")
  model = RangeModel(num_species=6, input_dim=4, width=16, depth=1, dropout=0.0)
  params = model.init(jax.random.key(1), jnp.zeros((1, 4)))["params"]
  params["species_embedding"] = params["species_embedding"] * 8  # sharper ranges
  return RangePredictor(model, params, encoder, ClassIndex(np.arange(10, 16)))


def covered(geometry, lonlat):
  """Points inside the MultiPolygon (inside an exterior ring and no hole of that polygon)."""
  hit = np.zeros(len(lonlat), bool)
  for rings in geometry["coordinates"]:
    inside = Path(rings[0]).contains_points(lonlat)
    for hole in rings[1:]:
      inside &= ~Path(hole).contains_points(lonlat)
    hit |= inside
  return hit


def check_geojson_rules(geometry):
  assert geometry["type"] == "MultiPolygon"
  for rings in geometry["coordinates"]:
    for r, ring in enumerate(rings):
      ring = np.asarray(ring)
      assert len(ring) >= 4 and (ring[0] == ring[-1]).all()
      assert (np.abs(ring[:, 0]) <= 180).all() and (np.abs(ring[:, 1]) <= 90).all()
      jump = np.abs(np.diff(ring[:, 0])) >= 180  # across the antimeridian: only along a pole
      on_pole = (np.abs(ring[:-1, 1]) == 90) & (np.abs(ring[1:, 1]) == 90)
      assert (~jump | on_pole).all()
      area = 0.5 * np.sum(ring[:-1, 0] * ring[1:, 1] - ring[1:, 0] * ring[:-1, 1])
      assert (area > 0) == (r == 0)  # right-hand rule: exterior CCW, holes CW


def test_geojson_union_with_antimeridian_pole_and_hole():
  res = 3
  centre = h3.latlng_to_cell(-16.5, 179.9, res)  # Fiji: straddles the antimeridian
  ring = [h3.str_to_int(c) for c in h3.grid_ring(centre, 2)]  # a ring of cells: one hole
  africa = h3.latlng_to_cell(5.0, 20.0, res)
  ring2 = [h3.str_to_int(c) for c in h3.grid_ring(africa, 1)]  # away from ±180: a real hole
  south = h3.str_to_int(h3.latlng_to_cell(-90, 0, res))
  near_pole = [h3.str_to_int(c) for c in h3.grid_disk(h3.int_to_str(south), 1)]
  cells = np.array(ring + ring2 + near_pole, np.uint64)
  geometry = cells_to_multipolygon(cells)
  check_geojson_rules(geometry)
  assert any(len(rings) > 1 for rings in geometry["coordinates"])  # the hole survived
  inside = grid.cells_lonlat(cells)
  assert covered(geometry, inside).all()
  outside = [h3.str_to_int(c) for c in h3.grid_disk(centre, 4) + h3.grid_disk(africa, 3)
             if h3.str_to_int(c) not in set(ring + ring2)]
  assert not covered(geometry, grid.cells_lonlat(outside)).any()  # both hole centres included
  assert covered(geometry, np.array([[0.0, -89.999], [123.0, -89.99]])).all()


def test_export_all_formats(predictor, tmp_path):
  out = str(tmp_path / "maps")
  manifest = export_ranges(predictor, out, taxa=[10, 13, 99, 15], h3_res=RES,
                           formats=("csv", "parquet", "geojson", "png"), default_threshold=0.4,
                           block=2)
  assert manifest["num_taxa_unknown_to_model"] == 1 and manifest["skipped_taxa"] == [99]
  assert manifest["num_taxa_exported"] == 3
  csv = pd.read_csv(os.path.join(out, "ranges.csv"), dtype={"h3": str})
  parquet = pd.read_parquet(os.path.join(out, "ranges.parquet"))
  pd.testing.assert_frame_equal(csv, parquet.astype({"probability": "float64"}),
                                check_dtype=False, rtol=1e-6)
  assert len(csv) == manifest["num_rows"] > 0
  cells, lonlat = grid.land_cells(RES)
  probs = predictor.predict(lonlat[:, 0], lonlat[:, 1], taxa=[10, 13, 15])
  summary = pd.read_csv(os.path.join(out, "summary.csv"))
  assert summary.taxon_id.tolist() == [10, 13, 99, 15]
  for j, taxon in enumerate([10, 13, 15]):
    rows = csv[csv.taxon_id == taxon]
    expected = set(np.flatnonzero(probs[:, j] >= 0.4))
    got = set(np.searchsorted(cells, [h3.str_to_int(c) for c in rows.h3]))
    assert len(got ^ expected) <= 1  # float32 rounding at the threshold itself
    np.testing.assert_allclose(rows.probability, probs[sorted(got), j], rtol=1e-4, atol=1e-6)
    feat = json.load(open(os.path.join(out, "geojson", f"{taxon}.geojson")))
    assert feat["type"] == "Feature" and feat["properties"]["num_cells"] == len(rows)
    check_geojson_rules(feat["geometry"])
    assert covered(feat["geometry"], grid.cells_lonlat([h3.str_to_int(c) for c in rows.h3])).all()
    outside = np.setdiff1d(np.arange(len(cells)), sorted(got))
    assert covered(feat["geometry"], lonlat[outside]).mean() < 0.01  # centres on cell edges
    assert os.path.getsize(os.path.join(out, "png", f"{taxon}.png")) > 1000
    assert summary.loc[summary.taxon_id == taxon, "range_cells"].item() == pytest.approx(
        len(rows), abs=1)
  assert not summary.loc[summary.taxon_id == 99, "known"].item()


def test_export_cli_and_bad_input(tmp_path, monkeypatch, predictor, capsys):
  monkeypatch.setattr("sinr_jax.predictor.load", lambda run: predictor)
  run = tmp_path / "run"
  run.mkdir()
  out = str(tmp_path / "cli")
  assert main([f"--run={run}", "--all", f"--out={out}", "--format=parquet", f"--h3_res={RES}"]) == 0
  assert len(pd.read_parquet(os.path.join(out, "ranges.parquet")).taxon_id.unique()) <= 6
  assert json.load(open(os.path.join(out, "export.json")))["num_taxa_exported"] == 6
  new = str(tmp_path / "new")
  assert main([f"--run={run}", "--taxa=10", "--all", f"--out={new}"]) == 2
  assert main([f"--run={run}", "--taxa=10", f"--out={new}", "--format=svg"]) == 2
  assert main([f"--run={run}", f"--out={new}", "--taxa=10", "--bogus=1"]) == 2
  assert "error" in capsys.readouterr().err
  with pytest.raises(SinrInputError, match="integer taxon ids"):
    parse_taxa("10,abc")


@pytest.fixture
def no_scoring(monkeypatch, predictor):
  """The CLI with a stub loader; scoring (and so any export) fails the test if it starts."""
  loads = []
  monkeypatch.setattr("sinr_jax.predictor.load", lambda run: loads.append(run) or predictor)

  def fail(*args, **kwargs):
    raise AssertionError("scoring started")
  monkeypatch.setattr("sinr_jax.export.score_species", fail)
  return loads


@pytest.mark.parametrize("args, message", [
    (["--h3_res=9"], "0..6"), (["--h3_res=x"], "--h3_res=x is not an integer"),
    (["--threshold=1"], r"\(0, 1\)"), (["--threshold=abc"], "--threshold=abc"),
    (["--format=csv,svg"], r"unknown format\(s\) \['svg'\]"), (["--format="], "format"),
    (["--taxa=,"], "names no taxon id"), (["--labels=/no/such.json"], "--labels: file not found"),
])
def test_export_checks_every_argument_before_loading(tmp_path, no_scoring, capsys, args, message):
  run = tmp_path / "run"
  run.mkdir()
  argv = [f"--run={run}", f"--out={tmp_path / 'out'}", *args]
  if not any(a.startswith("--taxa") for a in args):
    argv.append("--all")
  assert main(argv) == 2
  err = capsys.readouterr().err
  assert re.search(message, err) and err.startswith("error: "), err
  assert no_scoring == [] and not os.path.exists(tmp_path / "out")


def test_export_out_must_be_a_new_or_empty_folder(tmp_path, no_scoring, capsys):
  run = tmp_path / "run"
  run.mkdir()
  a_file = tmp_path / "file.txt"
  a_file.write_text("x")
  assert main([f"--run={run}", "--all", f"--out={a_file}"]) == 2
  assert "not a directory" in capsys.readouterr().err and a_file.read_text() == "x"
  full = tmp_path / "old"
  full.mkdir()
  (full / "ranges.csv").write_text("old")
  assert main([f"--run={run}", "--all", f"--out={full}"]) == 2
  err = capsys.readouterr().err
  assert "not empty (1 entries: ranges.csv); pass --overwrite" in err and "'out'" in err
  assert main([f"--run={tmp_path / 'nowhere'}", "--all", f"--out={tmp_path / 'x'}"]) == 2
  assert "--run: not a directory" in capsys.readouterr().err
  # --overwrite never replaces the run itself (or a folder holding it)
  assert main([f"--run={run}", "--all", f"--out={tmp_path}", "--overwrite"]) == 2
  assert "run directory" in capsys.readouterr().err
  assert no_scoring == [] and (full / "ranges.csv").read_text() == "old"


def test_export_overwrite_replaces_the_folder_only_on_success(tmp_path, predictor, monkeypatch):
  out = tmp_path / "out"
  out.mkdir()
  (out / "stale.txt").write_text("old")
  with pytest.raises(SinrInputError, match="not empty"):
    export_ranges(predictor, str(out), taxa=[10], h3_res=RES)

  def broken(*args, **kwargs):
    raise RuntimeError("disk full")
  monkeypatch.setattr("sinr_jax.geojson.feature", broken)
  with pytest.raises(RuntimeError, match="disk full"):
    export_ranges(predictor, str(out), taxa=[10], h3_res=RES, formats=("csv", "geojson"),
                  overwrite=True)
  assert os.listdir(out) == ["stale.txt"]  # the failed export left the old one alone
  assert not [p for p in os.listdir(tmp_path) if p != "out"]  # and no temporary folder
  monkeypatch.undo()
  manifest = export_ranges(predictor, str(out), taxa=[10], h3_res=RES, overwrite=True)
  assert sorted(os.listdir(out)) == ["export.json", "ranges.csv", "summary.csv"]  # not mixed
  assert manifest["num_taxa_exported"] == 1


def test_export_unknown_taxa(tmp_path, predictor, monkeypatch, capsys):
  monkeypatch.setattr("sinr_jax.predictor.load", lambda run: predictor)
  run = tmp_path / "run"
  run.mkdir()
  assert main([f"--run={run}", "--taxa=1,2,3,4,5,6,7", f"--out={tmp_path / 'a'}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and "none of the 7 requested taxa" in err[0]
  assert "1, 2, 3, 4, 5, ..." in err[0] and not os.path.exists(tmp_path / "a")
  assert main([f"--run={run}", "--taxa=98,11,99", f"--out={tmp_path / 'b'}", "--format=csv",
               f"--h3_res={RES}"]) == 0
  err = capsys.readouterr().err
  assert "2 of 3 requested taxa are unknown to the model and are skipped: 98, 99" in err
  manifest = json.load(open(tmp_path / "b" / "export.json"))
  assert manifest["num_taxa_exported"] == 1 and manifest["skipped_taxa"] == [98, 99]


def test_export_with_expert_labels_uses_f1_thresholds(predictor, tmp_path):
  from sinr_jax.export import labels_from_iucn
  cells, lonlat = grid.land_cells(RES)
  probs = predictor.predict(lonlat[:, 0], lonlat[:, 1], taxa=[12])[:, 0]
  top = np.argsort(-probs)[:40]  # an expert range the model ranks first...
  locs = np.concatenate([lonlat[top], [[-150.0, -60.0]]])  # ...and one point in the ocean
  path = tmp_path / "iucn_res_5.json"
  path.write_text(json.dumps({"locs": locs.tolist(), "taxa_presence": {"12": list(range(41))}}))
  labels, dropped = labels_from_iucn(str(path), cells, RES)
  assert dropped == 1 and sorted(labels[12]) == sorted(top)
  out = str(tmp_path / "f1")
  manifest = export_ranges(predictor, out, taxa=[12, 14], h3_res=RES, labels=labels)
  assert manifest["num_f1_thresholds"] == 1
  summary = pd.read_csv(os.path.join(out, "summary.csv")).set_index("taxon_id")
  assert summary.loc[12, "threshold_source"] == "f1" and summary.loc[14, "threshold_source"] == "default"
  assert summary.loc[12, "best_f1"] == pytest.approx(1.0) and summary.loc[12, "range_cells"] == 40
  assert summary.loc[12, "ap"] == pytest.approx(1.0)
  rows = pd.read_csv(os.path.join(out, "ranges.csv"), dtype={"h3": str})
  assert sorted(np.searchsorted(cells, [h3.str_to_int(c) for c in rows[rows.taxon_id == 12].h3])) \
      == sorted(top)
