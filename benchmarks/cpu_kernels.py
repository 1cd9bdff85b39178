"""The kernels that bound the CPU targets, each against its reference.

  - the scorer's head matmul, (B species × 256) · (256 × 572,176 cells), at B = 64/128/256, against
    a square 4096³ GEMM (both JAX);
  - sorting one species' 572,176 scores: numpy int32 sort (the scorer's order keys) against the
    float argsort of the reference evaluation loop;
  - a ResNet 3×3, 64-channel convolution on 16 × 56 × 56 inputs: forward and input gradient in
    JAX (XLA:CPU) against PyTorch (forward + both gradients), in GFLOP/s.

JAX (matmuls, sorts, JAX convolutions) and PyTorch (its convolutions) run in separate worker
processes that alternate for --rounds rounds (benchmarks/harness.py); in each process every kernel
is warmed up, then timed --reps times (best of them for matmuls and convolutions, median for sorts).

  python benchmarks/cpu_kernels.py [--reps=5] [--rounds=3] [--max_seconds=0] [--no_torch]
      [--no_record] [--summary_json=F]
  python benchmarks/cpu_kernels.py --jax_only [--reps=5]   # JAX kernels in this process, no record
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from results import update_section  # noqa: E402

CELLS, DIM = 572_176, 256
CONV = dict(n=16, hw=56, c=64)
HEAD_BLOCKS = (64, 128, 256)
NAME = "cpu_kernels"


def conv_gflop() -> float:
  return 2 * CONV["n"] * CONV["hw"] ** 2 * CONV["c"] ** 2 * 9 / 1e9


def best(fn, reps: int) -> float:
  return min(harness.time_steps(fn, reps, warmup=1))


# ---- JAX worker (numpy sorts too): never imports PyTorch -----------------------------------------

def jax_worker(args) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax import lax

  from results import jax_runtime
  reps, v = args.reps, {}
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((4096, 4096), np.float32))
  square = jax.jit(lambda x: x @ x)
  v["gemm GFLOP/s"] = 2 * 4096**3 / best(lambda: square(a).block_until_ready(), reps) / 1e9
  emb = jnp.asarray(rng.standard_normal((CELLS, DIM), np.float32))
  head = jax.jit(lambda w, e: w @ e.T)
  for b in HEAD_BLOCKS:
    w = jnp.asarray(rng.standard_normal((b, DIM), np.float32))
    v[f"head B={b} GFLOP/s"] = 2 * b * DIM * CELLS / best(
        lambda: head(w, emb).block_until_ready(), reps) / 1e9
  del emb

  scores = rng.standard_normal(CELLS).astype(np.float32)
  keys = scores.view(np.int32) ^ ((scores.view(np.int32) >> 31) & 0x7FFFFFFF)
  v["int32 sort ms"] = 1e3 * statistics.median(harness.time_steps(lambda: np.sort(keys), reps))
  v["float32 argsort ms"] = 1e3 * statistics.median(
      harness.time_steps(lambda: np.argsort(scores), reps))

  n, hw, c = CONV["n"], CONV["hw"], CONV["c"]
  x = jnp.asarray(rng.standard_normal((n, hw, hw, c), np.float32))
  k = jnp.asarray(rng.standard_normal((3, 3, c, c), np.float32))
  conv = lambda x, k: lax.conv_general_dilated(x, k, (1, 1), "SAME",  # noqa: E731
                                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  fwd = jax.jit(conv)
  dx = jax.jit(lambda x, k: jax.vjp(lambda x_: conv(x_, k), x)[1](jnp.ones_like(x))[0])
  v["conv fwd GFLOP/s"] = conv_gflop() / best(lambda: fwd(x, k).block_until_ready(), reps)
  v["conv dx GFLOP/s"] = conv_gflop() / best(lambda: dx(x, k).block_until_ready(), reps)
  return {"values": v, "info": {"runtime": jax_runtime(), "backend": jax.default_backend()}}


# ---- PyTorch worker -------------------------------------------------------------------------------

def torch_worker(args) -> dict:
  import torch

  from results import torch_runtime
  n, hw, c = CONV["n"], CONV["hw"], CONV["c"]
  torch.manual_seed(0)
  tx = torch.randn(n, c, hw, hw, requires_grad=True)
  layer = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
  g = torch.ones(n, c, hw, hw)
  with torch.no_grad():
    t_fwd = best(lambda: layer(tx), args.reps)
  t_all = best(lambda: torch.autograd.grad(layer(tx), [tx, layer.weight], g), args.reps)
  return {"values": {"conv fwd GFLOP/s": conv_gflop() / t_fwd,
                     "conv fwd+grads GFLOP/s": 3 * conv_gflop() / t_all},
          "info": {"runtime": torch_runtime()}}


# ---- parent ---------------------------------------------------------------------------------------

def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--reps", type=int, default=5, help="timed calls per kernel in each process")
  p.add_argument("--no_torch", action="store_true")
  p.add_argument("--no_record", action="store_true")
  p.add_argument("--summary_json", default="")
  harness.add_args(p, rounds=3)
  return p.parse_args(argv)


def tables(get, ratio_fwd=None) -> str:
  """get(side, key) -> Spread; ratio_fwd: Spread of JAX forward ÷ PyTorch forward, or None."""
  gemm = get("jax", "gemm GFLOP/s")
  parts = ["| kernel | GFLOP/s | % of square GEMM |", "|---|---|---|",
           f"| square GEMM 4096³ | {gemm.fmt('.0f')} | 100% |"]
  for b in HEAD_BLOCKS:
    s = get("jax", f"head B={b} GFLOP/s")
    parts.append(f"| head matmul, B = {b} | {s.fmt('.0f')} | {100 * s.value / gemm.value:.0f}% |")
  parts += ["", "| sort of 572,176 scores | ms |", "|---|---|",
            f"| numpy int32 sort (scorer) | {get('jax', 'int32 sort ms').fmt('.1f')} |",
            f"| numpy float32 argsort (reference loop) | "
            f"{get('jax', 'float32 argsort ms').fmt('.1f')} |",
            "", f"| 3×3 conv, {CONV['c']} ch, {CONV['n']}×{CONV['hw']}² (float32) | GFLOP/s |",
            "|---|---|",
            f"| JAX forward | {get('jax', 'conv fwd GFLOP/s').fmt('.0f')} |",
            f"| JAX input gradient | {get('jax', 'conv dx GFLOP/s').fmt('.0f')} |"]
  if ratio_fwd is not None:
    parts += [f"| PyTorch forward | {get('torch', 'conv fwd GFLOP/s').fmt('.0f')} |",
              f"| PyTorch forward + both gradients (per conv FLOP) | "
              f"{get('torch', 'conv fwd+grads GFLOP/s').fmt('.0f')} |",
              f"| JAX forward ÷ PyTorch forward | {ratio_fwd.fmt('.2f', '×')} |"]
  return "\n".join(parts)


def main() -> None:
  args = parse_args()
  if args.worker:
    harness.emit({"jax": jax_worker, "torch": torch_worker}[args.worker](args))
    return
  if args.jax_only:
    res = jax_worker(args)
    one = lambda side, k: harness.spread([res["values"][k]])  # noqa: E731
    print(res["info"]["runtime"] + "\n" + tables(one), flush=True)
    if args.summary_json:
      with open(args.summary_json, "w") as f:
        json.dump([{"name": NAME, "metric": k, "value": x, "unit": ""}
                   for k, x in res["values"].items()], f)
    return
  if not args.no_torch and importlib.util.find_spec("torch") is None:
    print("PyTorch is not installed: JAX kernels only (pip install -e '.[bench]' for the comparison)")
    args.no_torch = True
  fwd = harness.forwarded_args(sys.argv[1:])
  sides = [harness.Side("jax", harness.worker_cmd(__file__, "jax", fwd))]
  if not args.no_torch:
    sides.append(harness.Side("torch", harness.worker_cmd(__file__, "torch", fwd)))
  rounds = harness.alternate(sides, args.rounds, max_seconds=args.max_seconds)
  get = lambda side, k: harness.spread(rounds.values(side, k))  # noqa: E731
  ratio_fwd = None
  runtime = rounds.info("jax")["runtime"]
  if not args.no_torch:
    ratio_fwd = harness.ratio(rounds.values("jax", "conv fwd GFLOP/s"),
                              rounds.values("torch", "conv fwd GFLOP/s"))
    runtime += "; " + rounds.info("torch")["runtime"]
  body = (f"{harness.describe_method(rounds)} In each process: best of {args.reps} (matmul, conv) "
          f"or median of {args.reps} (sorts), after a warm-up call.\n\n" + tables(get, ratio_fwd))
  print(body, flush=True)
  if not args.no_record:
    update_section(f"CPU kernels behind the targets ({rounds.info('jax')['backend']})", body,
                   runtime=runtime)
  if args.summary_json:
    rows = [get(side, k).row(NAME, f"{side} {k}", "") for side in rounds.sides
            for k in rounds.keys(side)]
    if ratio_fwd is not None:
      rows.append(ratio_fwd.row(NAME, "JAX forward ÷ PyTorch forward (conv)", "×"))
    with open(args.summary_json, "w") as f:
      json.dump(rows, f)


if __name__ == "__main__":
  main()
