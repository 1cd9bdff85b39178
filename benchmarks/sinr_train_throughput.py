"""SINR AN-full training step: jitted JAX vs the PyTorch mirror of the published code.

Same machine, same B and S, each framework in its own process (benchmarks/harness.py): JAX and
PyTorch worker processes alternate for --rounds rounds; each warms up (compiles) and times --reps
steps. Prints s/step and observations/s for each with their spread, the ratio with the range of
the per-round ratios, and the fraction of this machine's matmul rate (best 4096³ float32 GEMM,
measured in each worker) that the JAX step reaches (the step is matmul-bound: three head
matmuls of 2·(2B)·256·S FLOPs each). PyTorch runs on CUDA when it sees a GPU.

  python benchmarks/sinr_train_throughput.py [--species=10000,47375] [--batch=2048] [--rounds=5]
      [--reps=3] [--warmup=1] [--block_sizes=256,0] [--max_seconds=0] [--no_torch] [--no_record]
      [--summary_json=F]
  python benchmarks/sinr_train_throughput.py --jax_only [...]   # JAX in this process, no record:
                                                               # the entry point of before_after.py

Without PyTorch installed (e.g. on a GPU box with only jax[cuda]) the PyTorch columns stay empty.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from results import update_section  # noqa: E402

WIDTH, DEPTH = 256, 4
NAME = "sinr_train"


def step_flops(batch: int, species: int) -> tuple[float, float]:
  """(head, total) FLOPs of one AN-full training step (forward + backward)."""
  rows = 2 * batch  # data + random locations
  head = 3 * 2 * rows * WIDTH * species
  encoder_fwd = 2 * rows * (4 * WIDTH + 2 * DEPTH * WIDTH * WIDTH)
  return head, head + 3 * encoder_fwd


# ---- JAX worker: this process imports JAX and the project, never PyTorch -------------------------

def jax_step(species: int, batch: int, block: int):
  """One jitted AN-full training step as a no-argument callable that waits for its result.

  The only place this benchmark touches project internals (adapt here when they move):
  configs.sinr.get_config("an_full") (cfg.train.head_block_size), ecorep.mesh.data_mesh /
  replicate / shard_batch, sinr_jax.features.make_encoder("coords") (.input_dim),
  sinr_jax.models.RangeModel(num_species, input_dim, width, depth), and
  sinr_jax.train.init_state(model, tx, key) / make_train_step(model, tx, encoder, cfg, mesh) whose
  step is step(state, batch, key) -> (state, metrics) with batch = {"lonlat", "label"}.
  """
  import jax
  import numpy as np
  import optax

  from configs.sinr import get_config
  from ecorep.mesh import data_mesh, replicate, shard_batch
  from sinr_jax.features import make_encoder
  from sinr_jax.models import RangeModel
  from sinr_jax.train import init_state, make_train_step

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


def jax_gemm_gflops(reps: int = 2) -> float:
  import jax
  import jax.numpy as jnp
  import numpy as np
  n = 4096
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
  f = jax.jit(lambda x: x @ x)
  return 2 * n**3 / min(harness.time_steps(lambda: f(a).block_until_ready(), reps)) / 1e9


def jax_key(species: int, block: int) -> str:
  return f"S={species} block={block or 'none'}"


def jax_worker(args) -> dict:
  import jax

  from results import jax_runtime
  values, samples = {}, {}
  for species in args.species_list:
    for block in args.block_list:
      ts = harness.time_steps(jax_step(species, args.batch, block), args.reps, args.warmup)
      k = jax_key(species, block)
      values[k], samples[k] = statistics.median(ts), ts
      print(f"jax {k}: " + ", ".join(f"{t:.3f}" for t in ts) + " s/step", file=sys.stderr,
            flush=True)
  return {"values": values, "samples": samples,
          "info": {"runtime": jax_runtime(), "backend": jax.default_backend(),
                   "gemm_gflops": jax_gemm_gflops()}}


# ---- PyTorch worker: this process imports PyTorch only -------------------------------------------

def torch_worker(args) -> dict:
  import torch

  from results import torch_runtime
  from torch_sinr import TorchTrainer
  device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cuda":  # XLA's default for float32 dots on NVIDIA GPUs is TF32; match it
    torch.set_float32_matmul_precision(args.torch_matmul_precision)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  values, samples = {}, {}
  for species in args.species_list:
    torch.manual_seed(0)
    trainer = TorchTrainer(species, WIDTH, DEPTH, device=device)
    feats = (torch.rand(args.batch, 4) * 2 - 1).to(device)
    labels = torch.randint(0, species, (args.batch,)).to(device)
    ts = harness.time_steps(lambda: trainer.step(feats, labels).item(), args.reps, args.warmup)
    k = f"S={species}"
    values[k], samples[k] = statistics.median(ts), ts
    print(f"torch {k}: " + ", ".join(f"{t:.3f}" for t in ts) + " s/step", file=sys.stderr,
          flush=True)
    del trainer
  n = 4096
  a = torch.randn(n, n, device=device)

  def gemm():
    a @ a
    sync()
  gemm()
  gflops = 2 * n**3 / min(harness.time_steps(gemm, 2, 0)) / 1e9
  return {"values": values, "samples": samples,
          "info": {"runtime": torch_runtime(), "device": device, "gemm_gflops": gflops,
                   "matmul_precision": torch.get_float32_matmul_precision()}}


# ---- parent: runs the workers, never imports JAX or PyTorch --------------------------------------

def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--species", default="10000,47375")
  p.add_argument("--batch", type=int, default=2048)
  p.add_argument("--reps", type=int, default=3, help="timed steps in each worker process")
  p.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first compiles)")
  p.add_argument("--block_sizes", default="256,0", help="head block sizes to time (0 = unblocked)")
  p.add_argument("--torch_matmul_precision", default="high", choices=("highest", "high", "medium"),
                 help="PyTorch float32 matmul precision on CUDA ('high' = TF32, XLA's default)")
  p.add_argument("--no_torch", action="store_true")
  p.add_argument("--no_record", action="store_true")
  p.add_argument("--summary_json", default="")
  harness.add_args(p)
  args = p.parse_args(argv)
  args.species_list = [int(s) for s in args.species.split(",")]
  args.block_list = [int(b) for b in args.block_sizes.split(",")]
  return args


def jax_only(args) -> None:
  """One JAX measurement in this process: the command-line entry point of before_after.py."""
  result = jax_worker(args)
  gemm = result["info"]["gemm_gflops"]
  rows, lines = [], [f"{result['info']['runtime']}; JAX GEMM {gemm:.0f} GFLOP/s",
                     "| S | B | head block | JAX s/step | JAX obs/s | JAX GFLOP/s | % of matmul rate |",
                     "|---|---|---|---|---|---|---|"]
  for species in args.species_list:
    _, flops = step_flops(args.batch, species)
    for block in args.block_list:
      k = jax_key(species, block)
      t = result["values"][k]
      lines.append(f"| {species} | {args.batch} | {block or 'none'} | {t:.4f} | "
                   f"{args.batch / t:,.0f} | {flops / t / 1e9:.0f} | {100 * flops / t / 1e9 / gemm:.0f}% |")
      rows += [{"name": NAME, "metric": f"JAX s/step ({k})", "value": t, "unit": "s"},
               {"name": NAME, "metric": f"JAX obs/s ({k})", "value": args.batch / t,
                "unit": "obs/s"}]
  print("\n".join(lines), flush=True)
  if args.summary_json:
    with open(args.summary_json, "w") as f:
      json.dump(rows, f)


def main() -> None:
  args = parse_args()
  if args.worker:
    harness.emit({"jax": jax_worker, "torch": torch_worker}[args.worker](args))
    return
  if args.jax_only:
    jax_only(args)
    return
  if not args.no_torch and importlib.util.find_spec("torch") is None:
    print("PyTorch is not installed: timing JAX only (pip install -e '.[bench]' for the comparison)")
    args.no_torch = True
  fwd = harness.forwarded_args(sys.argv[1:])
  sides = [harness.Side("jax", harness.worker_cmd(__file__, "jax", fwd))]
  if not args.no_torch:
    sides.append(harness.Side("torch", harness.worker_cmd(__file__, "torch", fwd)))
  rounds = harness.alternate(sides, args.rounds, max_seconds=args.max_seconds)

  jax_info = rounds.info("jax")
  rates = {"jax": harness.spread(rounds.info_values("jax", "gemm_gflops"))}
  runtime = jax_info["runtime"]
  if not args.no_torch:
    rates["torch"] = harness.spread(rounds.info_values("torch", "gemm_gflops"))
    runtime += "; " + rounds.info("torch")["runtime"]
  peak = max(r.value for r in rates.values())
  lines = ["| S | B | JAX head block | JAX s/step | JAX obs/s | PyTorch s/step | PyTorch obs/s "
           "| JAX / PyTorch | JAX GFLOP/s | % of matmul rate |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  summary = []
  for species in args.species_list:
    _, flops = step_flops(args.batch, species)
    t_torch = rounds.values("torch", f"S={species}") if not args.no_torch else []
    s_torch = harness.spread(t_torch)
    for block in args.block_list:
      k = jax_key(species, block)
      t_jax = rounds.values("jax", k)
      s_jax = harness.spread(t_jax)
      r = harness.ratio(t_torch, t_jax)  # (PyTorch s/step) / (JAX s/step) = JAX / PyTorch speed
      obs = s_jax.map(lambda t: args.batch / t)
      gf = flops / s_jax.value / 1e9
      row = (f"| {species} | {args.batch} | {block or 'none'} | {s_jax.fmt('.3f')} | "
             f"{obs.fmt(',.0f')} | {s_torch.fmt('.3f')} | "
             f"{s_torch.map(lambda t: args.batch / t).fmt(',.0f')} | {r.fmt('.2f', '×')} | "
             f"{gf:.0f} | {100 * gf / peak:.0f}% |")
      print(row, flush=True)
      lines.append(row)
      summary.append(obs.row(NAME, f"JAX obs/s (S={species}, block {block or 'none'})", "obs/s"))
      if t_torch:
        summary.append(r.row(NAME, f"JAX / PyTorch (S={species}, block {block or 'none'})", "×"))
  torch_note = ""
  if not args.no_torch:
    tinfo = rounds.info("torch")
    torch_note = (f" PyTorch on {tinfo['device']}" + (
        f" (float32 matmul precision '{tinfo['matmul_precision']}')"
        if tinfo["device"] == "cuda" else "") + ".")
  body = (harness.describe_method(rounds, args.reps, args.warmup) + torch_note +
          " Matmul rate (best 4096³ float32 GEMM, in each worker): " +
          ", ".join(f"{k} {v.fmt('.0f')} GFLOP/s" for k, v in rates.items()) +
          ". FLOPs count the three head matmuls and the encoder (forward + backward) of the 2B rows "
          "(data + random locations).\n\n")
  if not args.no_record:
    update_section(f"SINR training step, AN-full ({jax_info['backend']})", body + "\n".join(lines),
                   runtime=runtime)
  if args.summary_json:
    with open(args.summary_json, "w") as f:
      json.dump(summary, f)


if __name__ == "__main__":
  main()
