"""SINR evaluation throughput: the streaming scorer vs a reference-style loop, and vs the matmul rate.

(a) iucn: IUCN-style evaluation (AP of S species over M cells, expert-range cells positive) from the
    same cell embeddings: the reference's way (one dense matmul, then per species a numpy argsort
    and its AP formula) against what the IUCN evaluator runs (`IUCN.per_species_ap`, i.e.
    `score_species` with positive lists, AP only, on the encoded cells). The two run alternately,
    chunk by chunk of species, so that load changes on a shared machine hit both; APs are
    cross-checked.
(b) scorer: species × cells per second of the scorer with labels (AP + F1 threshold + area) and
    without (threshold + area), and the fraction of the matmul rate measured in the same run
    (4096³ float32 GEMM, and the scorer's own head matmul shape alone).
(full) the scorer over all S=47,375 species (random-weight model) and all land H3 res-5 cells in a
    child process: wall time and peak RSS (the child's ru_maxrss), encoding included.

  python benchmarks/sinr_eval_throughput.py [--parts=iucn,scorer,full] [--iucn_species=2418]
      [--cells=0 (all land res-5 cells)] [--full_species=47375] [--no_record] [--summary_json=F]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from results import timeit, update_section  # noqa: E402
from sinr_jax.evaluators.iucn import IUCN  # noqa: E402
from sinr_jax.evaluators.readers import IUCNData  # noqa: E402
from sinr_jax.scoring import CellScorer, plan_blocks  # noqa: E402
from sinr_jax.scoring.species import MAX_BLOCK  # noqa: E402

WIDTH = 256


def reference_ap(y_true: np.ndarray, y_scores: np.ndarray) -> float:
  """The reference's `average_precision_score_faster` (its IUCN loop), rewritten: one argsort."""
  n_pos = y_true.sum()
  inds = np.argsort(y_scores)[::-1]
  y = y_true[inds]
  tp = np.cumsum(y)
  fp = np.cumsum(1.0 - y)
  recall = tp / n_pos
  precision = tp / np.maximum(tp + fp, np.finfo(np.float32).eps)
  r = np.hstack((0, recall, 1))
  return float(((r[1:] - r[:-1])[:-1] * precision).sum())


def reference_loop(emb: jax.Array, w: np.ndarray, pos: list[np.ndarray]) -> np.ndarray:
  """Dense (M, S) logits with one matmul on the device, copied to the host, then one numpy sort
  per species: the reference's loop (torch matmul, .cpu().numpy(), numpy per species)."""
  pred = np.asarray(_dense_logits(emb, jnp.asarray(w)))
  out = np.empty(len(w))
  for j in range(len(w)):
    gt = np.zeros(len(emb), np.float32)
    gt[pos[j]] = 1.0
    out[j] = reference_ap(gt, pred[:, j])
  return out


@jax.jit
def _dense_logits(emb, w):
  return emb @ w.T


def random_problem(m: int, s: int, seed: int, median_range: float = 2000.0, sigma: float = 1.2):
  """Random cell embeddings (post-ReLU-like), head rows, and range sizes ~ lognormal (cells)."""
  rng = np.random.default_rng(seed)
  emb = np.maximum(rng.standard_normal((m, WIDTH), np.float32), 0) * 0.1
  w = rng.uniform(-1 / 16, 1 / 16, (s, WIDTH)).astype(np.float32)
  sizes = np.clip(rng.lognormal(np.log(median_range), sigma, s), 1, m - 1).astype(np.int64)
  pos = [np.unique(rng.integers(0, m, k)).astype(np.int32) for k in sizes]  # ~k distinct cells
  return emb, w, pos


BLOCK = MAX_BLOCK  # species per block, score_species' default


def compile_blocks(scorer: CellScorer, num_pos: np.ndarray, *, ranges: bool,
                   block: int = BLOCK) -> list:
  """Runs one block of every shape score_species will use for these list lengths (compiling
  the 'xla' path; the 'host' path allocates its buffer); returns the plan."""
  plan = plan_blocks(num_pos, block)
  for b, k in sorted({(b, k) for _, b, k in plan}):
    p = np.full((b, k), -1, np.int32)
    p[:, 0] = 0
    n = np.full(b, int(np.max(num_pos, initial=0) > 0), np.int32)
    jax.block_until_ready(scorer.score_block(np.zeros((b, scorer.emb.shape[1]), np.float32), p,
                                             n, 0.0, ranges=ranges))
  return plan


class EncodedHead:
  """The part of a RangePredictor that scoring reads once the cells are encoded: taxa 0..S-1,
  their columns and the species head."""

  def __init__(self, w: np.ndarray):
    self.taxa = np.arange(len(w), dtype=np.int64)
    self.params = {"species_embedding": w}

  def columns(self, taxa) -> np.ndarray:
    return np.asarray(taxa, np.int64)


def scorer_block_runner(scorer: CellScorer, w: np.ndarray, pos: list[np.ndarray] | None,
                        block: int = BLOCK):
  """Runs the scorer over the species of `w` in blocks (as score_species does, with range sizes);
  returns APs."""
  num = np.array([len(p) for p in pos]) if pos is not None else np.zeros(len(w), np.int64)
  plan = compile_blocks(scorer, num, ranges=True, block=block)

  def run():
    ap = np.full(len(w), np.nan)
    for sel, b, k in plan:
      wb = np.zeros((b, w.shape[1]), np.float32)
      wb[:len(sel)] = w[sel]
      p = np.full((b, k), -1, np.int32)
      n = np.zeros(b, np.int32)
      for j, r in enumerate(sel):
        if pos is not None:
          p[j, :len(pos[r])] = pos[r]
          n[j] = len(pos[r])
      out = CellScorer.block_result(scorer.score_block(wb, p, n, 0.0))
      ap[sel] = out["ap"][:len(sel)]
    return ap
  return run


def gemm_rate(reps: int = 3) -> float:
  n = 4096
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  return 2 * n**3 / min(timeit(lambda: f(a).block_until_ready(), reps)) / 1e9


def land_cells_m(cells: int) -> int:
  if cells:
    return cells
  from sinr_jax.grid import land_cells
  return len(land_cells(5)[0])


def part_iucn(args) -> tuple[str, list[dict]]:
  m = land_cells_m(args.cells)
  emb, w, pos = random_problem(m, args.iucn_species, seed=1)
  scorer = CellScorer(emb)
  model = EncodedHead(w)
  locs = np.zeros((m, 2), np.float32)  # not read: the evaluator is handed the encoded cells
  chunk = 256
  t_ref = t_ours = 0.0
  ap_ref, ap_ours = [], []
  for start in range(0, len(w), chunk):
    sl = slice(start, start + chunk)
    t = time.perf_counter()
    ap_ref.append(reference_loop(scorer.emb[:m], w[sl], pos[sl]))
    t_ref += time.perf_counter() - t
    evaluator = IUCN.from_data(IUCNData(taxa=model.taxa[sl], locs=locs, presence=pos[sl],
                                        path="(benchmark)"))
    compile_blocks(scorer, np.array([len(p) for p in pos[sl]]), ranges=False)  # untimed
    t = time.perf_counter()
    ap_ours.append(evaluator.per_species_ap(model, cells=scorer))
    t_ours += time.perf_counter() - t
    print(f"  iucn: {start + len(w[sl])}/{len(w)} species, loop {t_ref:.1f} s, scorer "
          f"{t_ours:.1f} s", flush=True)
  diff = float(np.max(np.abs(np.concatenate(ap_ref) - np.concatenate(ap_ours))))
  sizes = np.array([len(p) for p in pos])
  body = (f"IUCN-style evaluation of {len(w):,} species over {m:,} cells (D={WIDTH}, random "
          f"cell embeddings and head; range sizes lognormal, median {int(np.median(sizes)):,} "
          f"cells), from the same embeddings. Loop = the reference's way: one dense float32 "
          f"matmul (on the device, copied to the host) then per species a numpy argsort and its "
          f"AP formula. Scorer = what the IUCN evaluator runs (`IUCN.per_species_ap` on the "
          f"encoded cells: `score_species`, AP only, impl `{scorer.impl}`, one untimed warm-up "
          f"block per block shape). Alternated in chunks of {chunk} "
          f"species. Max |AP difference| {diff:.1e} (the reference formula ignores ties).\n\n"
          "| loop s | scorer s | speed-up |\n|---|---|---|\n"
          f"| {t_ref:.1f} | {t_ours:.1f} | {t_ref / t_ours:.1f}× |")
  rows = [{"name": "iucn_eval", "metric": f"loop/scorer ({len(w)} sp × {m} cells)",
           "value": t_ref / t_ours, "unit": "×"},
          {"name": "iucn_eval", "metric": "scorer time", "value": t_ours, "unit": "s"}]
  return body, rows


def part_scorer(args) -> tuple[str, list[dict]]:
  m = land_cells_m(args.cells)
  emb, w, pos = random_problem(m, args.scorer_species, seed=2)
  scorer = CellScorer(emb)
  labelled = scorer_block_runner(scorer, w, pos)
  unlabelled = scorer_block_runner(scorer, w, None)
  head = jax.jit(lambda e, wb: jnp.max(wb @ e.T, axis=1))
  wb = jnp.asarray(w[:BLOCK])
  matmul = lambda: jax.block_until_ready([head(scorer.emb, wb) for _ in range(len(w) // BLOCK)])
  runs = {"labels": labelled, "no labels": unlabelled, "head matmul": matmul}
  for r in runs.values():
    r()
  times = {k: [] for k in runs}
  gemm = []
  for _ in range(args.reps):  # alternate so that machine load affects all equally
    gemm.append(gemm_rate(1))
    for k, r in runs.items():
      times[k] += timeit(r, 1)
  gemm_gflops = float(np.median(gemm))
  flops = 2 * WIDTH * len(w) * m
  lines = ["| mode | s | species × cells / s | GFLOP/s (head) | % of GEMM rate | % of head-matmul time |",
           "|---|---|---|---|---|---|"]
  rows = []
  t_mm = float(np.median(times["head matmul"]))
  for k in runs:
    t = float(np.median(times[k]))
    rate = len(w) * m / t
    lines.append(f"| {k} | {t:.2f} | {rate:.3g} | {flops / t / 1e9:.1f} | "
                 f"{100 * flops / t / 1e9 / gemm_gflops:.0f}% | {100 * t_mm / t:.0f}% |")
    rows.append({"name": "scorer", "metric": f"{k}: % of GEMM rate",
                 "value": 100 * flops / t / 1e9 / gemm_gflops, "unit": "%"})
    rows.append({"name": "scorer", "metric": f"{k}: species×cells/s", "value": rate, "unit": "/s"})
  body = (f"Scorer throughput on {len(w)} species × {m:,} cells (D={WIDTH}, random labels with "
          f"lognormal range sizes, impl `{scorer.impl}`), median of {args.reps} alternating "
          f"repetitions. GEMM rate (4096³ float32, same run): {gemm_gflops:.0f} GFLOP/s. "
          f"'head matmul' is the scorer's matmul shape ({BLOCK} species × cells) alone.\n\n"
          + "\n".join(lines))
  return body, rows


def _hwm_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def full_child(species: int, seed: int = 3) -> dict:
  """The full run, in this (child) process: timings, summary and peak RSS after each stage."""
  from sinr_jax.features import make_encoder
  from sinr_jax.grid import land_cells
  from sinr_jax.models import RangeModel
  from sinr_jax.observations import ClassIndex
  from sinr_jax.predictor import RangePredictor
  from sinr_jax.scoring import cell_areas_km2, score_species
  hwm, t0 = {}, time.perf_counter()
  cells, lonlat = land_cells(5)
  area = cell_areas_km2(cells)
  m = len(cells)
  encoder = make_encoder("coords")
  model = RangeModel(num_species=species, input_dim=encoder.input_dim)
  params = model.init(jax.random.key(seed), jnp.zeros((1, 4)))["params"]
  predictor = RangePredictor(model, params, encoder, ClassIndex(np.arange(1, species + 1)))
  hwm["cells + model"] = _hwm_mib()
  rng = np.random.default_rng(seed)
  sizes = np.clip(rng.lognormal(np.log(300), 1.2, species), 1, m - 1).astype(np.int64)
  lists = [np.unique(rng.integers(0, m, k)).astype(np.int32) for k in sizes]  # ~k distinct cells
  indptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
  labels = sp.csr_matrix((np.ones(indptr[-1], bool), np.concatenate(lists), indptr),
                         shape=(species, m))
  del lists
  hwm["labels"] = _hwm_mib()
  t_setup = time.perf_counter() - t0
  t = time.perf_counter()
  scorer = CellScorer.from_predictor(predictor, lonlat, area)
  jax.block_until_ready(scorer.emb)
  t_encode = time.perf_counter() - t
  hwm["encoded cells"] = _hwm_mib()
  t = time.perf_counter()
  scores = score_species(predictor, scorer=scorer, labels=labels, progress=True)
  t_score = time.perf_counter() - t
  hwm["all species scored"] = _hwm_mib()
  return {"species": species, "cells": m, "labels_nnz": int(labels.nnz), "setup_s": t_setup,
          "encode_s": t_encode, "score_s": t_score, "summary": scores.summary(),
          "peak_rss_mib": _hwm_mib(), "peak_rss_by_stage_mib": hwm,
          "device_count": jax.device_count()}


def part_full(args) -> tuple[str, list[dict]]:
  cmd = [sys.executable, os.path.abspath(__file__), "--_child_full", str(args.full_species)]
  proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # progress bar: on stderr
  if proc.returncode:
    raise RuntimeError(f"full run failed with exit code {proc.returncode}")
  r = json.loads(proc.stdout.strip().splitlines()[-1])
  rate = r["species"] * r["cells"] / r["score_s"]
  stages = ", ".join(f"{k} {v:.0f}" for k, v in r["peak_rss_by_stage_mib"].items())
  body = (f"All {r['species']:,} species (random-weight RangeModel, width {WIDTH}) over all "
          f"{r['cells']:,} land H3 res-5 cells, labels for every species ({r['labels_nnz']:,} "
          f"positive cells, lognormal sizes, median 300), cell areas from h3; one child process, "
          f"{r['device_count']} device(s). Peak RSS (ru_maxrss, MiB) after each stage: {stages}."
          "\n\n| setup s | encode s | score s (all blocks) | species × cells / s | peak RSS MiB "
          "| MAP (random model) |\n|---|---|---|---|---|---|\n"
          f"| {r['setup_s']:.0f} | {r['encode_s']:.0f} | {r['score_s']:.0f} | {rate:.3g} | "
          f"{r['peak_rss_mib']:.0f} | {r['summary']['map']:.4f} |")
  rows = [{"name": "scorer_full", "metric": f"{r['species']} sp × {r['cells']} cells time",
           "value": r["score_s"], "unit": "s"},
          {"name": "scorer_full", "metric": "peak RSS", "value": r["peak_rss_mib"], "unit": "MiB"}]
  return body, rows


def main() -> None:
  if len(sys.argv) == 3 and sys.argv[1] == "--_child_full":
    print(json.dumps(full_child(int(sys.argv[2]))))
    return
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--parts", default="iucn,scorer,full")
  p.add_argument("--cells", type=int, default=0, help="number of cells (0 = all land res-5 cells)")
  p.add_argument("--iucn_species", type=int, default=2418)
  p.add_argument("--scorer_species", type=int, default=512)
  p.add_argument("--full_species", type=int, default=47375)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--no_record", action="store_true")
  p.add_argument("--summary_json", default="")
  args = p.parse_args()
  backend = jax.default_backend()
  parts = {"iucn": (part_iucn, "SINR evaluation: IUCN-style, scorer vs reference loop"),
           "scorer": (part_scorer, "SINR evaluation: streaming scorer vs matmul rate"),
           "full": (part_full, "SINR evaluation: all-species scorer, full run")}
  rows = []
  for name in [s for s in args.parts.split(",") if s]:
    fn, title = parts[name]
    t = time.perf_counter()
    body, r = fn(args)
    print(f"\n## {title} ({backend}, {time.perf_counter() - t:.0f} s)\n{body}\n", flush=True)
    rows += r
    if not args.no_record:
      update_section(f"{title} ({backend})", body)
  if args.summary_json:
    with open(args.summary_json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
