"""SINR AN-full training step: jitted JAX vs the PyTorch mirror of the published code.

Same machine, same run, same B and S; the two are timed in alternation so that load changes hit
both. Prints observations/s for each, their ratio, and the fraction of this machine's measured
matmul rate that the JAX step reaches (the step is matmul-bound: three head matmuls of
2·(2B)·256·S FLOPs each).

  python benchmarks/sinr_train_throughput.py [--species=10000,47375] [--batch=2048] [--reps=5]
      [--block_sizes=512,0] [--no_torch] [--no_record] [--summary_json=F]

Without PyTorch installed (e.g. on a GPU box with only jax[cuda]) the PyTorch column is left empty.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from configs.sinr import get_config  # noqa: E402
from ecorep.mesh import data_mesh, replicate, shard_batch  # noqa: E402
from results import median, timeit, update_section  # noqa: E402
from sinr_jax.features import make_encoder  # noqa: E402
from sinr_jax.models import RangeModel  # noqa: E402
from sinr_jax.train import init_state, make_train_step  # noqa: E402

WIDTH, DEPTH = 256, 4


def step_flops(batch: int, species: int) -> tuple[float, float]:
  """(head, total) FLOPs of one AN-full training step (forward + backward)."""
  rows = 2 * batch  # data + random locations
  head = 3 * 2 * rows * WIDTH * species
  encoder_fwd = 2 * rows * (4 * WIDTH + 2 * DEPTH * WIDTH * WIDTH)
  return head, head + 3 * encoder_fwd


def jax_runner(species: int, batch: int, block: int):
  cfg = get_config("an_full")
  with cfg.unlocked():
    cfg.train.head_block_size = block
  mesh = data_mesh()
  encoder = make_encoder("coords")
  model = RangeModel(num_species=species, input_dim=encoder.input_dim, width=WIDTH, depth=DEPTH)
  tx = optax.adam(optax.exponential_decay(5e-4, 1000, 0.98, staircase=True))
  state = replicate(init_state(model, tx, jax.random.key(0)), mesh)
  rng = np.random.default_rng(0)
  data = {"lonlat": np.stack([rng.uniform(-180, 180, batch), rng.uniform(-90, 90, batch)],
                             1).astype(np.float32),
          "label": rng.integers(0, species, batch).astype(np.int32)}
  batch_arrays = shard_batch(data, mesh)
  step = make_train_step(model, tx, replicate(encoder, mesh), cfg, mesh)
  key = jax.random.key(1)
  holder = {"state": state}

  def run():
    holder["state"], metrics = step(holder["state"], batch_arrays, key)
    metrics["loss"].block_until_ready()
  return run


def torch_runner(species: int, batch: int):
  import torch
  from torch_sinr import TorchTrainer
  torch.manual_seed(0)
  trainer = TorchTrainer(species, WIDTH, DEPTH)
  feats = torch.rand(batch, 4) * 2 - 1
  labels = torch.randint(0, species, (batch,))
  return lambda: trainer.step(feats, labels).item()


def matmul_rate(reps: int = 3) -> dict:
  """Best GFLOP/s of a 4096³ float32 GEMM in JAX and (if present) PyTorch on this machine."""
  n = 4096
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  rates = {"jax": 2 * n**3 / min(timeit(lambda: f(a).block_until_ready(), reps)) / 1e9}
  try:
    import torch
    t = torch.from_numpy(np.asarray(a))
    t @ t
    rates["torch"] = 2 * n**3 / min(timeit(lambda: t @ t, reps)) / 1e9
  except ImportError:
    pass
  return rates


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--species", default="10000,47375")
  p.add_argument("--batch", type=int, default=2048)
  p.add_argument("--reps", type=int, default=5)
  p.add_argument("--block_sizes", default="256,0", help="head block sizes to time (0 = unblocked)")
  p.add_argument("--no_torch", action="store_true")
  p.add_argument("--no_record", action="store_true")
  p.add_argument("--summary_json", default="")
  args = p.parse_args()
  if not args.no_torch and importlib.util.find_spec("torch") is None:
    print("PyTorch is not installed: timing JAX only (pip install -e '.[bench]' for the comparison)")
    args.no_torch = True
  blocks = [int(b) for b in args.block_sizes.split(",")]
  rates = matmul_rate()
  peak = max(rates.values())
  print("matmul rate (4096³ GEMM): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items()))
  lines = ["| S | B | JAX head block | JAX s/step | JAX obs/s | PyTorch s/step | PyTorch obs/s "
           "| JAX / PyTorch | JAX GFLOP/s | % of matmul rate |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  summary = []
  for species in [int(s) for s in args.species.split(",")]:
    runners = {f"jax{b}": jax_runner(species, args.batch, b) for b in blocks}
    if not args.no_torch:
      runners["torch"] = torch_runner(species, args.batch)
    for run in runners.values():  # compile / warm up
      run()
    times = {k: [] for k in runners}
    for _ in range(args.reps):  # alternate so that machine load affects all equally
      for k, run in runners.items():
        times[k] += timeit(run, 1)
    _, flops = step_flops(args.batch, species)
    t_torch = median(times["torch"]) if "torch" in times else float("nan")
    for b in blocks:
      t = median(times[f"jax{b}"])
      summary.append({"name": "sinr_train", "metric": f"JAX obs/s (S={species}, block {b or 'none'})",
                      "value": args.batch / t, "unit": "obs/s"})
      if not math.isnan(t_torch):
        summary.append({"name": "sinr_train", "metric": f"JAX / PyTorch (S={species}, block "
                        f"{b or 'none'})", "value": t_torch / t, "unit": "×"})
      row = (f"| {species} | {args.batch} | {b or 'none'} | {t:.3f} | {args.batch / t:,.0f} | "
             f"{t_torch:.3f} | {args.batch / t_torch:,.0f} | {t_torch / t:.2f}× | "
             f"{flops / t / 1e9:.0f} | {100 * flops / t / 1e9 / peak:.0f}% |")
      print(row, flush=True)
      lines.append(row)
  body = ("Median of {} alternating repetitions after one warm-up step each. Matmul rate (best "
          "4096³ float32 GEMM): {}. FLOPs count the three head matmuls and the encoder "
          "(forward + backward) of the 2B rows (data + random locations).\n\n").format(
              args.reps, ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items()))
  if not args.no_record:
    update_section(f"SINR training step, AN-full ({jax.default_backend()})", body + "\n".join(lines))
  if args.summary_json:
    with open(args.summary_json, "w") as f:
      json.dump(summary, f)


if __name__ == "__main__":
  main()
