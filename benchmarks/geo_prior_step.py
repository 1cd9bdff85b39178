"""Geo-prior training step (L_GP with date and photographer terms) against SINR's AN-full step at
the same batch and class count, timed in one process, alternating, round by round.

Both are complete jitted training steps (encoder forward over data + random points, the blocked
species head, Adam): SINR's from sinr_jax.train (benchmarks/sinr_train_throughput.jax_step), the
geo prior's from sinr_jax.geo_prior.train with U photographers. L_GP adds the photographer rows
P[u] to the head's scan (3B rows instead of 2B) and two B-vectors. Also reported: the compiled
temporary memory of each loss's value-and-gradient alone (XLA's memory analysis) next to the size
of one (B × C) float32 matrix, which neither loss materialises with a blocked head.

  python benchmarks/geo_prior_step.py [--species=500,10000] [--batch=1024] [--block=256]
      [--photographers=300] [--rounds=5] [--reps=5] [--no_record]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from results import timeit, update_section  # noqa: E402
from sinr_train_throughput import DEPTH, WIDTH, jax_step  # noqa: E402


def gp_step(species: int, batch: int, block: int, photographers: int, with_users: bool):
  """One jitted geo-prior training step as a no-argument callable that waits for its result."""
  from ecorep.config import load_config
  from ecorep.mesh import data_mesh, replicate, shard_batch
  from ecorep.trainer import compile_step
  from sinr_jax.geo_prior.train import build_model, init_state, make_step_fn

  tokens = "full" if with_users else "full,no_photographer"
  cfg = load_config(os.path.join(os.path.dirname(HERE), f"configs/geo_prior.py:{tokens}"),
                    [f"train.head_block_size={block}", f"model.width={WIDTH}",
                     f"model.depth={DEPTH}"])
  mesh = data_mesh()
  model = build_model(cfg, species, photographers)
  tx = optax.adam(optax.exponential_decay(5e-4, 1000, 0.98, staircase=True))
  state = replicate(init_state(model, tx, jax.random.key(0)), mesh)
  rng = np.random.default_rng(0)
  data = shard_batch({
      "lonlat": np.stack([rng.uniform(-180, 180, batch), rng.uniform(-90, 90, batch)],
                         1).astype(np.float32),
      "day": rng.uniform(0, 1, batch).astype(np.float32),
      "label": rng.integers(0, species, batch).astype(np.int32),
      "user": rng.integers(0, photographers, batch).astype(np.int32)}, mesh)
  step = compile_step(make_step_fn(model, tx, cfg, mesh))
  key, holder = jax.random.key(1), {"state": state}

  def run():
    holder["state"], metrics = step(holder["state"], data, key)
    metrics["loss"].block_until_ready()
  return run


def loss_temp_bytes(name: str, species: int, batch: int, block: int, photographers: int) -> int:
  """XLA's temporary bytes for value_and_grad of one loss over (B, D) embeddings."""
  from sinr_jax.losses import LOSSES
  emb = jax.ShapeDtypeStruct((batch, WIDTH), jnp.float32)
  head = jax.ShapeDtypeStruct((species, WIDTH), jnp.float32)
  users = jax.ShapeDtypeStruct((photographers, WIDTH), jnp.float32)
  labels = jax.ShapeDtypeStruct((batch,), jnp.int32)

  def f(e, er, w, u, y):
    extra = {"photographer_emb": u, "photographers": y % photographers} if name == "gp" else {}
    return LOSSES[name](emb=e, emb_rand=er, species_emb=w, labels=y, key=None, pos_weight=2048.0,
                        block_size=block, **extra)
  compiled = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3))).lower(
      emb, emb, head, users, labels).compile()
  return int(compiled.memory_analysis().temp_size_in_bytes)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--species", default="500,10000")
  p.add_argument("--batch", type=int, default=1024)
  p.add_argument("--block", type=int, default=256)
  p.add_argument("--photographers", type=int, default=300)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--reps", type=int, default=5)
  p.add_argument("--no_record", action="store_true")
  args = p.parse_args()
  rows = []
  for species in [int(s) for s in args.species.split(",")]:
    steps = {"AN-full (SINR)": jax_step(species, args.batch, args.block),
             "L_GP, date + photographers": gp_step(species, args.batch, args.block,
                                                   args.photographers, True),
             "L_GP, date, no photographers": gp_step(species, args.batch, args.block,
                                                     args.photographers, False)}
    for run in steps.values():  # compile and warm up
      run(), run()
    times = {k: [] for k in steps}
    for _ in range(args.rounds):
      for k, run in steps.items():
        times[k].append(statistics.median(timeit(run, args.reps)))
    base = times["AN-full (SINR)"]
    temp = {n: loss_temp_bytes(n, species, args.batch, args.block, args.photographers)
            for n in ("an_full", "gp")}
    for k, t in times.items():
      ratios = [a / b for a, b in zip(t, base)]
      rows.append((species, k, statistics.median(t), min(t), max(t),
                   statistics.median(t) / statistics.median(base), min(ratios), max(ratios)))
      print(f"S={species:6d} {k:30s} {rows[-1][2] * 1e3:8.1f} ms/step "
            f"[{min(t) * 1e3:.1f}–{max(t) * 1e3:.1f}]  × AN-full {rows[-1][5]:.2f}", flush=True)
    matrix = args.batch * species * 4
    rows.append((species, "memory", temp["an_full"], temp["gp"], matrix))
    print(f"S={species:6d} loss temp bytes: an_full {temp['an_full'] / 2**20:.1f} MiB, gp "
          f"{temp['gp'] / 2**20:.1f} MiB; one (B × C) float32 matrix {matrix / 2**20:.1f} MiB")
  lines = ["| classes | step | ms/step (median [min–max] over rounds) | × AN-full [range] |",
           "|---|---|---|---|"]
  mem = ["| classes | AN-full loss temp | L_GP loss temp | one (B × C) float32 matrix |",
         "|---|---|---|---|"]
  for r in rows:
    if r[1] == "memory":
      mem.append(f"| {r[0]:,} | {r[2] / 2**20:.1f} MiB | {r[3] / 2**20:.1f} MiB | "
                 f"{r[4] / 2**20:.1f} MiB |")
    else:
      lines.append(f"| {r[0]:,} | {r[1]} | {r[2] * 1e3:.1f} [{r[3] * 1e3:.1f}–{r[4] * 1e3:.1f}] "
                   f"| {r[5]:.2f} [{r[6]:.2f}–{r[7]:.2f}] |")
  body = (f"Complete jitted training steps at batch {args.batch} (+ {args.batch} random points), "
          f"width {WIDTH}, depth {DEPTH}, head blocks of {args.block} classes, "
          f"{args.photographers} photographers, one process, the three steps alternating for "
          f"{args.rounds} rounds of {args.reps} timed steps after two warm-up steps each. "
          "L_GP's head scan covers 3B rows (data, random, photographers) against AN-full's 2B, "
          "so about 1.5× the head's work is the expected cost.\n\n" + "\n".join(lines)
          + "\n\nCompiled temporary memory of value_and_grad of the loss alone (XLA memory "
          "analysis), against one (B × C) matrix:\n\n" + "\n".join(mem))
  if not args.no_record:
    update_section(f"Geo prior step vs AN-full ({jax.default_backend()})", body)


if __name__ == "__main__":
  main()
