"""The kernels that bound the CPU targets, each against its reference in the same run.

  - the scorer's head matmul, (B species × 256) · (256 × 572,176 cells), at B = 64/128/256, against
    a square 4096³ GEMM (both JAX);
  - sorting one species' 572,176 scores: numpy int32 sort (the scorer's order keys) against the
    float argsort of the reference evaluation loop;
  - a ResNet 3×3, 64-channel convolution on 16 × 56 × 56 inputs: forward and input gradient in
    JAX (XLA:CPU) against PyTorch (forward + both gradients), in GFLOP/s.

  python benchmarks/cpu_kernels.py [--reps=5] [--no_record]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from results import median, timeit, update_section  # noqa: E402

CELLS, DIM = 572_176, 256
CONV = dict(n=16, hw=56, c=64)


def best(fn, reps: int) -> float:
  fn()
  return min(timeit(fn, reps))


def matmul_rows(reps: int) -> list[str]:
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((4096, 4096), np.float32))
  square = jax.jit(lambda x: x @ x)
  gemm = 2 * 4096**3 / best(lambda: square(a).block_until_ready(), reps) / 1e9
  emb = jnp.asarray(rng.standard_normal((CELLS, DIM), np.float32))
  head = jax.jit(lambda w, e: w @ e.T)
  rows = [f"| square GEMM 4096³ | {gemm:.0f} | 100% |"]
  for b in (64, 128, 256):
    w = jnp.asarray(rng.standard_normal((b, DIM), np.float32))
    rate = 2 * b * DIM * CELLS / best(lambda: head(w, emb).block_until_ready(), reps) / 1e9
    rows.append(f"| head matmul, B = {b} | {rate:.0f} | {100 * rate / gemm:.0f}% |")
  return rows


def sort_rows(reps: int) -> list[str]:
  scores = np.random.default_rng(0).standard_normal(CELLS).astype(np.float32)
  keys = scores.view(np.int32) ^ ((scores.view(np.int32) >> 31) & 0x7FFFFFFF)
  t_sort = median(timeit(lambda: np.sort(keys), reps))
  t_argsort = median(timeit(lambda: np.argsort(scores), reps))
  return [f"| numpy int32 sort (scorer) | {1e3 * t_sort:.1f} |",
          f"| numpy float32 argsort (reference loop) | {1e3 * t_argsort:.1f} |"]


def conv_rows(reps: int) -> list[str]:
  n, hw, c = CONV["n"], CONV["hw"], CONV["c"]
  flops = 2 * n * hw * hw * c * c * 9 / 1e9
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((n, hw, hw, c), np.float32))
  k = jnp.asarray(rng.standard_normal((3, 3, c, c), np.float32))
  conv = lambda x, k: lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  fwd = jax.jit(conv)
  dx = jax.jit(lambda x, k: jax.vjp(lambda x_: conv(x_, k), x)[1](jnp.ones_like(x))[0])
  rows = [f"| JAX forward | {flops / best(lambda: fwd(x, k).block_until_ready(), reps):.0f} |",
          f"| JAX input gradient | {flops / best(lambda: dx(x, k).block_until_ready(), reps):.0f} |"]
  if importlib.util.find_spec("torch") is not None:
    import torch
    tx = torch.randn(n, c, hw, hw, requires_grad=True)
    layer = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
    g = torch.ones(n, c, hw, hw)
    with torch.no_grad():
      t_fwd = best(lambda: layer(tx), reps)
    t_all = best(lambda: torch.autograd.grad(layer(tx), [tx, layer.weight], g), reps)
    rows += [f"| PyTorch forward | {flops / t_fwd:.0f} |",
             f"| PyTorch forward + both gradients (per conv FLOP) | {3 * flops / t_all:.0f} |"]
  return rows


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--reps", type=int, default=5)
  p.add_argument("--no_record", action="store_true")
  args = p.parse_args()
  parts = [
      "Best of {r} (matmul, conv) or median of {r} (sorts), after a warm-up.\n\n"
      "| kernel | GFLOP/s | % of square GEMM |\n|---|---|---|".format(r=args.reps),
      *matmul_rows(args.reps),
      "\n| sort of 572,176 scores | ms |\n|---|---|", *sort_rows(args.reps),
      f"\n| 3×3 conv, {CONV['c']} ch, {CONV['n']}×{CONV['hw']}² (float32) | GFLOP/s |\n|---|---|",
      *conv_rows(args.reps)]
  body = "\n".join(parts)
  print(body)
  if not args.no_record:
    update_section(f"CPU kernels behind the targets ({jax.default_backend()})", body)


if __name__ == "__main__":
  main()
