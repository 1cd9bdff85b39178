import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecorep.checkpoint import CheckpointMismatchError, Checkpointer
from ecorep.mesh import data_mesh, replicate


def _state(scale=1.0, shape=(3, 4)):
  return {"params": {"w": jnp.full(shape, scale), "b": jnp.arange(4.0)}, "step": jnp.int32(7)}


def test_round_trip_keep_last_n_and_extra(tmp_path):
  with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
    for step in (10, 20, 30):
      ckpt.save(step, _state(step), {"data_iterator": {"next_index": step}})
    ckpt.wait()
    assert ckpt.all_steps() == [20, 30] and ckpt.latest_step() == 30
    state, extra = ckpt.restore(_state())
    np.testing.assert_array_equal(state["params"]["w"], np.full((3, 4), 30.0))
    assert extra == {"data_iterator": {"next_index": 30}}
    state20, _ = ckpt.restore(_state(), step=20)
    assert float(state20["params"]["w"][0, 0]) == 20.0


def test_restore_keeps_template_sharding(tmp_path):
  mesh = data_mesh()
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, _state())
    ckpt.wait()
    template = replicate(_state(0.0), mesh)
    state, _ = ckpt.restore(template)
  assert state["params"]["w"].sharding == template["params"]["w"].sharding


def test_shape_mismatch_names_the_leaf(tmp_path):
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, _state())
    ckpt.wait()
    with pytest.raises(CheckpointMismatchError, match=r"params/w.*\(3, 4\).*\(3, 5\)"):
      ckpt.restore(_state(shape=(3, 5)))


def test_unfinished_save_is_ignored(tmp_path):
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(5, _state(5.0))
    ckpt.wait()
  # A save killed mid-write leaves only a temporary directory; it must not be trusted.
  os.makedirs(tmp_path / "9.orbax-checkpoint-tmp-123" / "state")
  with Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() == 5
    state, _ = ckpt.restore(_state())
    assert float(state["params"]["w"][0, 0]) == 5.0


def test_opening_a_manager_and_exiting_prints_no_error(tmp_path):
  """Fault 7: orbax's background clean-up of unfinished saves must not outlive the process."""
  import subprocess
  import sys
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, _state())
  os.makedirs(tmp_path / "2.orbax-checkpoint-tmp-5")  # something for the clean-up to do
  code = ("import sys; from ecorep.checkpoint import Checkpointer; "
          "c = Checkpointer(sys.argv[1]); print(c.latest_step())")
  out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=120)
  assert out.returncode == 0 and out.stdout.strip() == "1"
  assert "Error" not in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_readers_fall_back_to_the_newest_intact_step_without_moving_anything(tmp_path):
  from ecorep.trainer import read_checkpoint
  with Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(1, {"state": _state(1.0)})
    ckpt.save(2, {"state": _state(2.0)})
  for root, _, files in os.walk(tmp_path / "2" / "state"):
    for f in files:
      if root.endswith(os.sep + "d"):
        open(os.path.join(root, f), "wb").close()
  state, step = read_checkpoint(str(tmp_path))
  assert step == 1 and float(np.asarray(state["params"]["w"])[0, 0]) == 1.0
  assert sorted(os.listdir(tmp_path)) == ["1", "2"]  # a reader moves and deletes nothing
