"""`python -m sinr_jax.evaluate` end to end on a tiny trained run, and its refusals."""
import json
import os
import shutil

import numpy as np
import pytest

from ecorep.config import load_config
from sinr_jax import evaluate
from sinr_jax.evaluators import simulated


@pytest.fixture(scope="module")
def tiny_run(request, tmp_path_factory, repo_root):
  from sinr_jax.train import train
  try:  # the suite's shared tiny world, when tests/sinr/conftest.py provides it
    overrides = [f"data.world_dir={request.getfixturevalue('tiny_world_dir')}"]
  except pytest.FixtureLookupError:
    overrides = []
  run = tmp_path_factory.mktemp("tiny_run")
  train(load_config(os.path.join(repo_root, "configs/sinr.py:tiny"), overrides), str(run))
  return run


def test_cli_evaluates_all_four_tasks_on_simulated_data(tiny_run, capsys):
  assert evaluate.main([f"--run={tiny_run}"]) == 0
  printed = capsys.readouterr().out
  report = json.loads((tiny_run / "eval_metrics.json").read_text())
  assert report["simulated"] and report["data_dir"] == str(tiny_run / "eval_data")
  m = report["tasks"]
  assert set(m) == {"snt", "iucn", "geo_prior", "geo_feature"}
  for task, key in evaluate.HEADLINE.items():
    assert np.isfinite(m[task][key]) and key in printed
  assert 0 <= m["snt"]["test_map"] <= 1 and 0 <= m["iucn"]["map"] <= 1
  assert m["iucn"]["num_species_evaluated"] == 30 and m["iucn"]["num_species_unknown_to_model"] == 0
  assert m["geo_prior"]["vision_top1"] == pytest.approx(0.68, abs=0.01)
  assert m["geo_feature"]["num_layers"] == 7 and m["geo_feature"]["mean_test_r2"] <= 1
  assert all(isinstance(v, float) for t in m.values() for v in t.values())
  # The simulated data is reused, not regenerated, on the next run.
  stamp = os.stat(tiny_run / "eval_data" / simulated.MANIFEST).st_mtime_ns
  out = tiny_run / "only_iucn.json"
  assert evaluate.main([f"--run={tiny_run}", "--tasks=iucn", f"--out={out}"]) == 0
  assert os.stat(tiny_run / "eval_data" / simulated.MANIFEST).st_mtime_ns == stamp
  assert json.loads(out.read_text())["tasks"]["iucn"]["map"] == pytest.approx(m["iucn"]["map"])


def test_cli_published_layout_needs_allow_pickle_for_snt(tiny_run, tmp_path, capsys):
  if not (tiny_run / "eval_data").exists():
    simulated.ensure_simulated(evaluate.world_dir_of(str(tiny_run)), tiny_run / "eval_data")
  data = tmp_path / "data"
  shutil.copytree(tiny_run / "eval_data", data)
  (data / simulated.MANIFEST).unlink()  # now it is just files in the published layout
  args = [f"--run={tiny_run}", f"--data_dir={data}", "--tasks=snt", f"--out={tmp_path / 'm.json'}"]
  assert evaluate.main(args) == 2
  assert "is a Python pickle" in capsys.readouterr().err
  assert evaluate.main(args + ["--allow_pickle"]) == 0
  report = json.loads((tmp_path / "m.json").read_text())
  assert not report["simulated"] and np.isfinite(report["tasks"]["snt"]["test_map"])


@pytest.mark.parametrize("args,message", [
    (["--tasks=snt"], "--run"),
    (["--run=RUN", "--task=snt"], "unknown flag"),
    (["--run=RUN", "--tasks=snt,nope"], "unknown task 'nope'"),
    (["--run=RUN", "--data_dir=/nonexistent/dir"], "not found"),
    (["--run=/nonexistent/run"], "not a sinr_jax run directory"),
])
def test_cli_bad_arguments(tiny_run, capsys, args, message):
  args = [a.replace("RUN", str(tiny_run)) for a in args]
  assert evaluate.main(args) == 2
  assert message in capsys.readouterr().err
