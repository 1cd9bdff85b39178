"""Two JAX processes on one machine (2 CPU devices each, Gloo collectives) train the same run as
one process: the multi-host path of `jax.distributed`, per-process batch slices and collective
checkpointing."""
import os
import socket
import subprocess
import sys

import pytest

from ecorep.metrics import read_metrics
from sinr_jax.train import train

STEPS = 12


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one(tiny_config, tiny_world_dir, tmp_path, repo_root):
  workdir = tmp_path / "multi"
  port = _free_port()
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_NUM_CPU_DEVICES="2", JAX_PLATFORMS="cpu")
  common = ["--config=configs/sinr.py:tiny", f"--workdir={workdir}",
            f"--config.data.world_dir={tiny_world_dir}", f"--config.train.max_steps={STEPS}",
            "--config.train.log_every=1", "--config.train.checkpoint_every=6",
            f"--coordinator=127.0.0.1:{port}", "--num_processes=2"]
  procs = [subprocess.Popen([sys.executable, "-m", "sinr_jax.train", *common,
                             f"--process_id={pid}"], cwd=repo_root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for pid in range(2)]
  outputs = [p.communicate(timeout=240)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  multi = {r["step"]: r["loss"] for r in read_metrics(workdir / "metrics.jsonl")}
  single = train(tiny_config("", [f"train.max_steps={STEPS}", "train.log_every=1"]),
                 str(tmp_path / "single"))
  one = {r["step"]: r["loss"] for r in read_metrics(os.path.join(single.workdir, "metrics.jsonl"))}
  assert sorted(multi) == list(range(1, STEPS + 1))
  for step in multi:
    assert multi[step] == pytest.approx(one[step], rel=1e-4), step
  assert sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit()) == [6, 12]
