"""The range-map viewer's JSON API and HTTP server (the page itself: test_viewer_browser.py).

Numbers are checked against independent paths: probabilities against `RangePredictor.predict` at
the cell centres, the F1-optimal threshold against a float64 numpy sweep over every threshold,
AP against scikit-learn, observations against the world's train.csv.
"""
import http.client
import json
import os

import h3
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

import sinr_jax
from sinr_jax import grid
from sinr_jax.viewer import Api, Limits, RunSource, make_server, serve_in_thread
from sinr_jax.viewer import server as viewer_server
from sinr_jax.viewer.__main__ import main as viewer_main
from sinr_jax.world import load_world

RES = 2  # the tiny world's truth resolution: small, exact cell sets


@pytest.fixture(scope="module")
def api(viewer_runs):
  runs = {"a": RunSource(viewer_runs[0]), "b": RunSource(viewer_runs[1])}
  return Api(runs, Limits(default_res=RES, min_res=1, max_res=3, max_cells=50))


@pytest.fixture(scope="module")
def world(tiny_world_dir):
  return load_world(tiny_world_dir)


def get(api, endpoint, **params):
  from urllib.parse import urlencode
  r = api.handle(endpoint, urlencode(params))
  return r.status, json.loads(r.body) if r.content_type == "application/json" else r.body


def taxon_with_range(world, rank=-1):
  sizes = np.asarray(world.presence.sum(1)).ravel()
  return int(world.taxa[np.argsort(sizes)[rank]])


def test_range_matches_predictor_and_numpy_f1_reference(api, world, viewer_runs):
  taxon = taxon_with_range(world, rank=len(world.taxa) // 2)
  status, d = get(api, "/api/range", run="a", taxon=taxon, res=RES)
  assert status == 200, d
  cells, lonlat = grid.land_cells(RES)
  p = sinr_jax.load(viewer_runs[0]).predict(lonlat[:, 0], lonlat[:, 1], taxa=[taxon])[:, 0]
  # Reference F1 sweep (float64): a cell is in the true range when its centre is.
  row = int(np.searchsorted(world.taxa, taxon))
  truth = world.cells[world.presence[row].indices]
  y = np.isin(grid.lonlat_to_cells(lonlat, world.config.h3_res), truth)
  p64 = p.astype(np.float64)
  best = max(((2 * (y & (p64 >= t)).sum() / (y.sum() + (p64 >= t).sum()), t) for t in p64[y]))
  assert d["num_true_cells"] == y.sum()
  assert d["threshold_source"] == "f1"
  np.testing.assert_allclose(d["f1_threshold"], best[1], rtol=1e-5)
  np.testing.assert_allclose(d["best_f1"], best[0], rtol=1e-6)
  np.testing.assert_allclose(d["ap"], average_precision_score(y, p64), rtol=1e-6)
  inside = p64 >= d["threshold"] * (1 - 1e-6)
  assert d["num_cells"] == inside.sum()
  assert d["area_km2"] == pytest.approx(
      sum(h3.cell_area(h3.int_to_str(int(c)), "km^2") for c in cells[inside]), rel=1e-6)
  shown = np.array([int(c, 16) for c in d["cells"]], np.uint64)
  if not d["truncated"]:
    np.testing.assert_array_equal(shown, cells[inside])
  # The shown cells are the most probable ones, with their probabilities.
  assert len(shown) == min(d["num_cells"], 50) and d["truncated"] == (d["num_cells"] > 50)
  idx = np.searchsorted(cells, shown)
  np.testing.assert_allclose(d["probability"], p64[idx], atol=1e-4)
  assert p64[idx].min() >= np.sort(p64[inside])[::-1][len(shown) - 1] - 1e-6


def test_threshold_slider_requests_filter_cells(api, world):
  taxon = taxon_with_range(world)
  _, f1 = get(api, "/api/range", run="a", taxon=taxon)
  assert f1["res"] == RES  # the configured default
  counts = []
  for t in (0.05, 0.5, 0.95):
    status, d = get(api, "/api/range", run="a", taxon=taxon, threshold=t)
    assert status == 200 and d["threshold_source"] == "request" and d["threshold"] == t
    assert min(d["probability"], default=1.0) >= t - 1e-4
    counts.append(d["num_cells"])
  assert counts[0] >= counts[1] >= counts[2] and counts[0] > counts[2]
  status, d = get(api, "/api/range", run="b", taxon=taxon, res=3)  # the comparison run
  assert status == 200 and d["run"] == "b" and d["num_land_cells"] > f1["num_land_cells"]
  # The encoded cells are computed once per run and resolution, the species' logits once.
  service = api.services["a"]
  scorer = service._res[RES].scorer
  get(api, "/api/range", run="a", taxon=int(world.taxa[0]))
  assert service._res[RES].scorer is scorer and sorted(service._res) == [RES]
  assert service.species(taxon, RES) is service.species(taxon, RES)


@pytest.mark.parametrize("params, status, words", [
    ({"run": "a", "taxon": "999999"}, 404, "taxon 999999 is unknown"),
    ({"run": "a", "taxon": "12.5"}, 400, "integer taxon id"),
    ({"run": "a", "taxon": "x"}, 400, "integer taxon id"),
    ({"run": "a"}, 400, "missing parameter taxon"),
    ({"run": "c", "taxon": "1"}, 404, "no run 'c'"),
    ({"taxon": "1"}, 400, "missing parameter run"),
    ({"run": "a", "taxon": "{t}", "res": "9"}, 400, "res must be in 1..3"),
    ({"run": "a", "taxon": "{t}", "res": "four"}, 400, "res must be an integer"),
    ({"run": "a", "taxon": "{t}", "threshold": "1"}, 400, "probability in (0, 1)"),
    ({"run": "a", "taxon": "{t}", "threshold": "nan"}, 400, "probability in (0, 1)"),
    ({"run": "a", "taxon": "{t}", "threshold": "abc"}, 400, "must be a number"),
    ({"run": "a", "taxon": "{t}", "cells": "all"}, 400, "unknown parameter(s) cells"),
])
def test_bad_range_requests_are_refused_with_a_message(api, world, params, status, words):
  t = str(taxon_with_range(world))
  got, d = get(api, "/api/range", **{k: v.format(t=t) for k, v in params.items()})
  assert got == status and words in d["error"], d


def test_request_bounds(api, world):
  t = taxon_with_range(world)
  r = api.handle("/api/range", f"run=a&taxon={t}&run=b")
  assert r.status == 400 and b"more than once" in r.body
  assert api.handle("/api/range", "x" * 3000).status == 414
  assert api.handle("/api/range", "&".join(f"k{i}=1" for i in range(50))).status == 400
  assert api.handle("/api/nothing", "").status == 404
  status, d = get(api, "/api/search", q="x" * 101)
  assert status == 400 and "longer than 100" in d["error"]
  status, d = get(api, "/api/observations", run="a", taxon=t, limit=10 ** 6)
  assert status == 400 and "limit must be in" in d["error"]


def test_search_by_name_and_id(api, world):
  t = int(world.taxa[3])
  _, d = get(api, "/api/search", q=str(t))
  assert d["results"][0] == {"taxon_id": t, "name": f"Simulata species {t}", "runs": ["a", "b"]}
  _, d = get(api, "/api/search", q="SIMULATA", limit=5)
  assert len(d["results"]) == 5 and all("Simulata" in r["name"] for r in d["results"])
  _, d = get(api, "/api/search", q="no such bird")
  assert d["results"] == []


def test_truth_and_observations_come_from_the_world(api, world, tiny_world_dir):
  t = taxon_with_range(world)
  _, d = get(api, "/api/truth", run="a", taxon=t)
  row = int(np.searchsorted(world.taxa, t))
  assert d["res"] == world.config.h3_res
  assert sorted(int(c, 16) for c in d["cells"]) == sorted(
      world.cells[world.presence[row].indices].tolist())
  csv = pd.read_csv(os.path.join(tiny_world_dir, "train.csv"))
  mine = csv[csv.taxon_id == t][["longitude", "latitude"]].to_numpy()
  _, d = get(api, "/api/observations", run="a", taxon=t, limit=20_000)
  assert d["total"] == len(mine)
  np.testing.assert_allclose(np.sort(np.asarray(d["points"]), 0), np.sort(mine, 0), atol=1e-4)
  _, d = get(api, "/api/observations", run="a", taxon=t, limit=3)
  assert len(d["points"]) == 3 and d["total"] == len(mine)


def test_files_outside_the_run_are_refused(api, viewer_runs, tmp_path):
  run = viewer_runs[0]
  status, body = get(api, "/api/file", run="a", path="model.json")
  assert status == 200 and body["format"] == "sinr_jax.run/1"
  outside = tmp_path / "secret.json"
  outside.write_text("{}")
  link = os.path.join(run, "link.json")
  if not os.path.lexists(link):
    os.symlink(outside, link)
  for path in ("../" * 8 + "etc/passwd.json", str(outside), "link.json"):
    status, d = get(api, "/api/file", run="a", path=path)
    assert status == 403 and "outside run 'a'" in d["error"], (path, d)
  status, d = get(api, "/api/file", run="a", path="checkpoints")
  assert status == 403 and "only .png" in d["error"]
  status, d = get(api, "/api/file", run="a", path="plots/none.png")
  assert status == 404


def test_http_server_bounds_and_static_files(api):
  server = make_server(api, "127.0.0.1", 0)
  serve_in_thread(server)
  host, port = server.server_address[:2]

  def request(method, path, body=None):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request(method, path, body=body)
    r = conn.getresponse()
    out = r.status, r.read()
    conn.close()
    return out

  try:
    status, body = request("GET", "/api/info")
    assert status == 200 and [r["id"] for r in json.loads(body)["runs"]] == ["a", "b"]
    assert request("POST", "/api/info", body=b"x=1")[0] == 405
    assert request("GET", "/api/info", body=b"x")[0] == 413
    assert request("GET", "/api/search?q=" + "a" * 5000)[0] == 414
    assert request("GET", "/static/../api.py")[0] == 403
    assert request("GET", "/static/%2e%2e/api.py")[0] == 403
    status, body = request("GET", "/")
    assert status == 200 and b"static/app.js" in body
    assert request("GET", "/api/basemap.jpg")[1][:3] == b"\xff\xd8\xff"  # a JPEG
  finally:
    server.shutdown()
    server.server_close()


def test_cli_help_missing_run_and_missing_assets(capsys, monkeypatch, tmp_path):
  assert viewer_main(["--help"]) == 0
  out = capsys.readouterr().out
  assert "--run" in out and "--compare" in out and "--port" in out
  assert viewer_main([]) == 2
  assert "missing --run" in capsys.readouterr().err
  monkeypatch.setattr(viewer_server, "VENDOR_DIR", str(tmp_path))
  assert viewer_main([f"--run={tmp_path}"]) == 2
  assert "make viewer-assets" in capsys.readouterr().err
