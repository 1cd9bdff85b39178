"""SimCLR training step (ResNet-50, two views, augmentation on the device): vision_jax.pretrain vs
the plain-PyTorch step of benchmarks/torch_resnet.py, and the grain input pipeline alone.

Same machine, same batch, each framework in its own process (benchmarks/harness.py): JAX and
PyTorch worker processes alternate for --rounds rounds; each warms up (compiles) and times --reps
steps. Images/s counts source images (each gives 2 views). The pipeline (host decode + random
resized crop of 2 views, vision_jax.input_pipeline) is timed afterwards in a process of its own; it
reads real photographs (scikit-image's, as an image folder) and must deliver at least 2× what the
step consumes.

  python benchmarks/ssl_throughput.py [--batch=16] [--size=224] [--rounds=3] [--reps=2]
      [--warmup=1] [--dtype=float32|bfloat16] [--workers=0,1,2] [--pipeline_seconds=5]
      [--torch_channels_last] [--max_seconds=0] [--no_torch] [--no_record] [--summary_json=F]
  python benchmarks/ssl_throughput.py --jax_only [...]   # JAX step (and pipeline if --workers) in
                                                         # this process, no record: before_after.py
On a GPU use --dtype=bfloat16: the PyTorch step then runs under autocast(bfloat16) (AMP).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import harness  # noqa: E402
from results import update_section  # noqa: E402

R50_FORWARD_FLOPS = 2 * 4.09e9  # multiply-adds ×2 at 224 px
NAME = "ssl_step"


def random_views(batch: int, size: int):
  import numpy as np
  return np.random.default_rng(0).integers(0, 256, (batch, 2, size, size, 3), dtype=np.uint8)


# ---- JAX worker: this process imports JAX and the project, never PyTorch -------------------------

def jax_step(batch: int, size: int, dtype: str):
  """One SimCLR training step as a no-argument callable that waits for its result.

  The only place the step benchmark touches project internals (adapt here when they move):
  ecorep.config.load_config("configs/simclr.py", overrides), ecorep.mesh.data_mesh /
  shard_batch, and vision_jax.pretrain.setup_run(cfg, num_examples=, num_classes=, mesh=) whose
  result has .init(seed) -> state and .train_step(state, {"views", "label"}, key) -> (state,
  metrics) (the step folds state.step into the key).
  """
  import jax
  import numpy as np

  from ecorep.config import load_config
  from ecorep.mesh import data_mesh, shard_batch
  from vision_jax import pretrain

  cfg = load_config(os.path.join(REPO, "configs/simclr.py"), [
      f"train.batch_size={batch}", f"data.image_size={size}", f"model.dtype={dtype}"])
  mesh = data_mesh()
  setup = pretrain.setup_run(cfg, num_examples=batch * 10_000, num_classes=None, mesh=mesh)
  holder = {"state": setup.init(0)}
  views = shard_batch({"views": random_views(batch, size),
                       "label": np.zeros(batch, np.int32)}, mesh)

  key = jax.random.key(1)

  def run():
    holder["state"], metrics = setup.train_step(holder["state"], views, key)
    float(metrics["loss"])  # waits for the step
  return run


def pipeline_rates(size: int, batch: int, workers: list[int], seconds: float) -> dict[int, float]:
  """Images/s of the input pipeline alone. Project internals used (adapt here when they move):
  vision_jax.datasets.skimage_photo_paths, vision_jax.input_pipeline.measure_pipeline_throughput
  (source, size, batch, workers, seconds), vision_jax.sources.ImageFolderSource / PooledSource."""
  from vision_jax.datasets import skimage_photo_paths
  from vision_jax.input_pipeline import measure_pipeline_throughput
  from vision_jax.sources import ImageFolderSource, PooledSource
  root = tempfile.mkdtemp(prefix="ssl_bench_photos_")
  try:
    for i, path in enumerate(skimage_photo_paths()):  # two classes of bundled photographs
      folder = os.path.join(root, f"class{i % 2}")
      os.makedirs(folder, exist_ok=True)
      shutil.copy(path, os.path.join(folder, os.path.basename(path)))
    source = ImageFolderSource(root)
    reps = max(1, -(-batch // len(source)))  # the batch must fit in the source
    if reps > 1:
      source = PooledSource([source] * reps)
    return {w: measure_pipeline_throughput(source, size, batch, w, seconds) for w in workers}
  finally:
    shutil.rmtree(root, ignore_errors=True)


def jax_worker(args) -> dict:
  import jax

  from results import jax_runtime
  ts = harness.time_steps(jax_step(args.batch, args.size, args.dtype), args.reps, args.warmup)
  print("jax step: " + ", ".join(f"{t:.3f}" for t in ts) + " s", file=sys.stderr, flush=True)
  return {"values": {"step": statistics.median(ts)}, "samples": {"step": ts},
          "info": {"runtime": jax_runtime(), "backend": jax.default_backend()}}


def pipeline_worker(args) -> dict:
  rates = pipeline_rates(args.size, args.batch, args.worker_list, args.pipeline_seconds)
  return {"values": {f"workers={w}": r for w, r in rates.items()}}


# ---- PyTorch worker: this process imports PyTorch only -------------------------------------------

def torch_worker(args) -> dict:
  import torch

  from results import torch_runtime
  from torch_resnet import TorchSimCLR
  torch.manual_seed(0)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cuda":  # XLA's default for float32 dots on NVIDIA GPUs is TF32; match it
    torch.set_float32_matmul_precision(args.torch_matmul_precision)
  model = TorchSimCLR(device, amp=args.dtype == "bfloat16" and device == "cuda",
                      channels_last=args.torch_channels_last)
  views = torch.from_numpy(random_views(args.batch, args.size)).to(device)
  ts = harness.time_steps(lambda: model.step(views).item(), args.reps, args.warmup)
  print("torch step: " + ", ".join(f"{t:.3f}" for t in ts) + " s", file=sys.stderr, flush=True)
  return {"values": {"step": statistics.median(ts)}, "samples": {"step": ts},
          "info": {"runtime": torch_runtime(), "device": device,
                   "matmul_precision": torch.get_float32_matmul_precision()}}


# ---- parent: runs the workers, never imports JAX or PyTorch --------------------------------------

def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--size", type=int, default=224)
  p.add_argument("--reps", type=int, default=2, help="timed steps in each worker process")
  p.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first compiles)")
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--workers", default="0,1,2", help="grain worker processes to time (0: threads)")
  p.add_argument("--pipeline_seconds", type=float, default=5.0)
  p.add_argument("--torch_channels_last", action="store_true")
  p.add_argument("--torch_matmul_precision", default="high", choices=("highest", "high", "medium"),
                 help="PyTorch float32 matmul precision on CUDA ('high' = TF32, XLA's default)")
  p.add_argument("--no_torch", action="store_true")
  p.add_argument("--no_record", action="store_true")
  p.add_argument("--summary_json", default="")
  harness.add_args(p, rounds=3)
  args = p.parse_args(argv)
  args.worker_list = [int(w) for w in args.workers.split(",") if w.strip()]
  return args


def step_flops(args) -> float:
  return 3 * 2 * args.batch * R50_FORWARD_FLOPS * (args.size / 224) ** 2


def pipeline_table(args, rates: dict, rate_jax: float) -> list[str]:
  rows = ["| grain workers | images/s | images/s per worker | ÷ JAX step consumption |",
          "|---|---|---|---|"]
  for w, r in rates.items():
    label = f"{w}" if w else "0 (2 threads in-process)"
    rows.append(f"| {label} | {r:.1f} | {r / max(w, 1):.1f} | {r / rate_jax:.1f}× |")
  return rows


def jax_only(args) -> None:
  """The JAX step (and the pipeline, with --workers) in this process: before_after.py's entry."""
  t = jax_worker(args)["values"]["step"]
  rate = args.batch / t
  print(f"JAX SimCLR step B={args.batch} {args.size}px {args.dtype}: {t:.4f} s/step, "
        f"{rate:.1f} images/s, {step_flops(args) / t / 1e9:.0f} GFLOP/s", flush=True)
  rows = [{"name": NAME, "metric": f"JAX s/step (B={args.batch}, {args.dtype})", "value": t,
           "unit": "s"},
          {"name": NAME, "metric": f"JAX images/s (B={args.batch}, {args.dtype})", "value": rate,
           "unit": "img/s"}]
  if args.worker_list:
    rates = pipeline_rates(args.size, args.batch, args.worker_list, args.pipeline_seconds)
    print("\n".join(pipeline_table(args, rates, rate)), flush=True)
    rows += [{"name": "ssl_pipeline", "metric": f"images/s, {w} workers", "value": r,
              "unit": "img/s"} for w, r in rates.items()]
  if args.summary_json:
    with open(args.summary_json, "w") as f:
      json.dump(rows, f)


def main() -> None:
  args = parse_args()
  if args.worker:
    harness.emit({"jax": jax_worker, "torch": torch_worker,
                  "pipeline": pipeline_worker}[args.worker](args))
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
  runtime = jax_info["runtime"]
  t_jax = rounds.values("jax", "step")
  t_torch = rounds.values("torch", "step") if not args.no_torch else []
  s_jax, s_torch = harness.spread(t_jax), harness.spread(t_torch)
  r = harness.ratio(t_torch, t_jax)
  img = lambda t: args.batch / t  # noqa: E731
  rate_jax = s_jax.map(img)
  rows = ["| B (×2 views) | px | dtype | JAX s/step | JAX images/s | PyTorch s/step "
          "| PyTorch images/s | JAX / PyTorch | JAX GFLOP/s |",
          "|---|---|---|---|---|---|---|---|---|"]
  rows.append(f"| {args.batch} | {args.size} | {args.dtype} | {s_jax.fmt('.3f')} | "
              f"{rate_jax.fmt('.1f')} | {s_torch.fmt('.3f')} | {s_torch.map(img).fmt('.1f')} | "
              f"{r.fmt('.2f', '×')} | {step_flops(args) / s_jax.value / 1e9:.0f} |")
  print("\n".join(rows), flush=True)

  rates = {}
  if args.worker_list:
    print("[harness] input pipeline in its own process ...", file=sys.stderr, flush=True)
    res = harness.run_worker(harness.Side("pipeline", harness.worker_cmd(__file__, "pipeline", fwd)))
    rates = {w: res["values"][f"workers={w}"] for w in args.worker_list}
  pipe_rows = pipeline_table(args, rates, rate_jax.value)
  if rates:
    print("\n".join(pipe_rows), flush=True)

  torch_device = "—"
  if not args.no_torch:
    tinfo = rounds.info("torch")
    runtime += "; " + tinfo["runtime"]
    torch_device = tinfo["device"] + (f" (float32 matmul precision '{tinfo['matmul_precision']}')"
                                      if tinfo["device"] == "cuda" else "")
  body = (f"SimCLR step = device augmentation + ResNet-50 forward/backward over both views + "
          f"2-layer head + NT-Xent + LARS; PyTorch on {torch_device}"
          f"{' with autocast(bfloat16)' if args.dtype == 'bfloat16' else ''}. "
          f"{harness.describe_method(rounds, args.reps, args.warmup)} Random uint8 views. "
          f"FLOPs: 3 × forward (8.2 GFLOPs per 224-px view).\n\n" + "\n".join(rows))
  if rates:
    body += ("\n\nInput pipeline alone, in one process after the rounds (decode + 2 random resized "
             f"crops per image, scikit-image photographs in an image folder, {args.size} px, batches "
             f"of {args.batch}, {args.pipeline_seconds:.0f} s each); it must deliver ≥ 2× the step's "
             f"consumption ({rate_jax.value:.1f} images/s):\n\n" + "\n".join(pipe_rows))
  if not args.no_record:
    update_section(f"SimCLR pretraining step, ResNet-50 ({jax_info['backend']}, {args.dtype})", body,
                   runtime=runtime)
  if args.summary_json:
    summary = [rate_jax.row(NAME, f"JAX images/s (B={args.batch}, {args.dtype})", "img/s")]
    if t_torch:
      summary += [s_torch.map(img).row(NAME, "PyTorch images/s", "img/s"),
                  r.row(NAME, "JAX / PyTorch", "×")]
    summary += [{"name": "ssl_pipeline", "metric": f"images/s, {w} workers", "value": v,
                 "unit": "img/s"} for w, v in rates.items()]
    with open(args.summary_json, "w") as f:
      json.dump(summary, f)


if __name__ == "__main__":
  main()
