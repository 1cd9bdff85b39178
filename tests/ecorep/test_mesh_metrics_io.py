import json
import os

import jax
import numpy as np
import pytest

from ecorep import io
from ecorep.errors import ConfigError
from ecorep.mesh import check_batch_size, data_mesh, shard_batch
from ecorep.metrics import MetricWriter, read_metrics


def test_mesh_spans_all_devices_and_shards_batches():
  mesh = data_mesh()
  assert mesh.devices.size == jax.device_count() == 8
  batch = shard_batch({"x": np.arange(16.0).reshape(16, 1)}, mesh)
  assert len(batch["x"].addressable_shards) == 8
  assert batch["x"].addressable_shards[3].data.shape == (2, 1)
  np.testing.assert_array_equal(np.asarray(batch["x"]), np.arange(16.0).reshape(16, 1))


def test_batch_size_must_divide_devices():
  mesh = data_mesh()
  assert check_batch_size(64, mesh) == 64
  with pytest.raises(ConfigError, match="batch size 60 is not divisible by the 8 devices") as e:
    check_batch_size(60, mesh)
  assert e.value.field == "train.batch_size"  # the key the user sets, not a bare batch_size
  assert check_batch_size(3, data_mesh(jax.devices()[:1])) == 3


def test_metric_writer_jsonl_and_truncated_tail(tmp_path):
  with MetricWriter(tmp_path, tensorboard=False) as w:
    w.write(1, {"loss": 2.5, "lr": np.float32(1e-3)})
    w.write(2, {"loss": float("nan")})
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 3, "loss"')  # a run killed mid-line
  rows = read_metrics(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in rows] == [1, 2]
  assert rows[0]["loss"] == 2.5 and rows[0]["lr"] == pytest.approx(1e-3)
  assert rows[1]["loss"] == "nan"


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
  path = tmp_path / "a.json"
  io.write_json(path, {"v": 1})

  def broken(tmp):
    with open(tmp, "w") as f:
      f.write("half")
    raise RuntimeError("killed")
  with pytest.raises(RuntimeError):
    io.atomic_write(path, broken)
  assert json.loads(path.read_text()) == {"v": 1}
  assert os.listdir(tmp_path) == ["a.json"]


def test_atomic_directory_replaces_whole_or_keeps_old(tmp_path):
  target = tmp_path / "run"
  with io.atomic_directory(target) as d:
    (d / "a.txt").write_text("first")
  assert sorted(os.listdir(target)) == ["a.txt"]
  with pytest.raises(RuntimeError):
    with io.atomic_directory(target) as d:
      (d / "b.txt").write_text("half")
      raise RuntimeError("killed")
  assert sorted(os.listdir(target)) == ["a.txt"]  # the old directory, untouched
  with io.atomic_directory(target) as d:
    (d / "b.txt").write_text("second")
  assert sorted(os.listdir(target)) == ["b.txt"]  # replaced, not merged
  assert sorted(os.listdir(tmp_path)) == ["run"]  # no temporary or set-aside directory left
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(target).st_mode & 0o777 == 0o777 & ~umask  # the usual mode, not mkdtemp's 0700


def test_atomic_directory_restores_old_when_the_swap_fails(tmp_path, monkeypatch):
  target = tmp_path / "run"
  with io.atomic_directory(target) as d:
    (d / "a.txt").write_text("first")
  real_rename = os.rename

  def rename(src, dst):  # the old directory moves aside, then the new one fails to move in
    if ".tmp-" in str(src):
      raise OSError("disk gone")
    real_rename(src, dst)
  monkeypatch.setattr(io.os, "rename", rename)
  with pytest.raises(OSError, match="disk gone"):
    with io.atomic_directory(target) as d:
      (d / "b.txt").write_text("second")
  monkeypatch.undo()
  assert sorted(os.listdir(target)) == ["a.txt"]
  assert (target / "a.txt").read_text() == "first"
  assert sorted(os.listdir(tmp_path)) == ["run"]


def test_read_versioned_json(tmp_path):
  from ecorep.errors import InputError
  path = tmp_path / "model.json"
  with pytest.raises(InputError, match="not a demo run.*no model.json"):
    io.read_versioned_json(path, "x/1", what="demo run", error=InputError)
  path.write_text("{not json")
  with pytest.raises(InputError, match="corrupt model.json"):
    io.read_versioned_json(path, "x/1", what="demo run", error=InputError)
  io.write_json(path, {"format": "y/1"})
  with pytest.raises(InputError, match="unknown run format 'y/1', expected 'x/1'"):
    io.read_versioned_json(path, "x/1", what="demo run", error=InputError)
  io.write_json(path, {"format": "x/1", "a": 2})
  assert io.read_versioned_json(path, "x/1", what="demo run", error=InputError)["a"] == 2


def test_metrics_reader_skips_cut_lines_and_writer_repairs_on_resume(tmp_path):
  """Fault 5: a killed run's cut line, then a resume that glued its next row onto it."""
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "loss": 3}\n{"step": 2, "loss": 2}\n{"step": 3, "lo'
                  '{"step": 3, "loss": 1.5}\n{"step": 4, "loss": 1}\n')
  rows, skipped = read_metrics(path, with_skipped=True)
  assert [r["step"] for r in rows] == [1, 2, 4] and skipped == 1  # rows after the cut survive
  with MetricWriter(tmp_path, tensorboard=False, resume_step=2) as w:  # resumed from step 2
    w.write(3, {"loss": 1.4})
  rows, skipped = read_metrics(path, with_skipped=True)
  assert [(r["step"], r["loss"]) for r in rows] == [(1, 3), (2, 2), (3, 1.4)] and skipped == 0
  path.write_text(path.read_text() + '{"step": 4, "lo')  # killed again mid-line
  with MetricWriter(tmp_path, tensorboard=False, resume_step=3) as w:
    w.write(4, {"loss": 1.3})
  assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4]
  assert path.read_text().endswith("\n")


def test_run_files_get_the_usual_permissions(tmp_path):
  """Fault 6: atomic writes must not leave mkstemp's 0600 on files colleagues need to read."""
  umask = os.umask(0o022)
  try:
    io.write_json(tmp_path / "model.json", {"a": 1})
    assert os.stat(tmp_path / "model.json").st_mode & 0o777 == 0o644
    os.umask(0o002)
    io.write_text(tmp_path / "taxa.json", "[]")
    assert os.stat(tmp_path / "taxa.json").st_mode & 0o777 == 0o664
  finally:
    os.umask(umask)
