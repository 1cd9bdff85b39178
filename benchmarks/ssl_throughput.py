"""SimCLR training step (ResNet-50, two views, augmentation on the device): vision_jax.pretrain vs
the plain-PyTorch step of benchmarks/torch_resnet.py, and the grain input pipeline alone.

Same machine, same run, same batch: the two steps are timed in alternation after a warm-up
step each, so that load changes hit both. Images/s counts source images (each gives 2 views).
The pipeline (host decode + random resized crop of 2 views, vision_jax.input_pipeline) reads real
photographs (scikit-image's, as an image folder) and must deliver at least 2× what the step
consumes.

  python benchmarks/ssl_throughput.py [--batch=16] [--size=224] [--reps=3]
      [--dtype=float32|bfloat16] [--workers=0,1,2] [--pipeline_seconds=5]
      [--torch_channels_last] [--no_torch] [--no_record] [--summary_json=F]
On a GPU use --dtype=bfloat16: the PyTorch step then runs under autocast(bfloat16) (AMP).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ecorep.config import load_config  # noqa: E402
from ecorep.mesh import data_mesh, shard_batch  # noqa: E402
from results import median, timeit, update_section  # noqa: E402
from vision_jax import pretrain  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R50_FORWARD_FLOPS = 2 * 4.09e9  # multiply-adds ×2 at 224 px


def random_views(batch: int, size: int) -> np.ndarray:
  return np.random.default_rng(0).integers(0, 256, (batch, 2, size, size, 3), dtype=np.uint8)


def jax_runner(batch: int, size: int, dtype: str):
  cfg = load_config(os.path.join(REPO, "configs/simclr.py"), [
      f"train.batch_size={batch}", f"data.image_size={size}", f"model.dtype={dtype}"])
  mesh = data_mesh()
  setup = pretrain.setup_run(cfg, num_examples=batch * 10_000, num_classes=None, mesh=mesh)
  holder = {"state": setup.init(0)}
  views = shard_batch({"views": random_views(batch, size),
                       "label": np.zeros(batch, np.int32)}, mesh)

  def run():
    holder["state"], metrics = setup.train_step(holder["state"], views)
    float(metrics["loss"])  # waits for the step
  return run


def torch_runner(batch: int, size: int, dtype: str, channels_last: bool):
  import torch
  from torch_resnet import TorchSimCLR
  torch.manual_seed(0)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  model = TorchSimCLR(device, amp=dtype == "bfloat16" and device == "cuda",
                      channels_last=channels_last)
  views = torch.from_numpy(random_views(batch, size)).to(device)

  def run():
    model.step(views).item()
  return run, device


def photo_folder() -> str:
  """scikit-image's bundled photographs as an image folder (two classes)."""
  from vision_jax.datasets import skimage_photo_paths
  root = tempfile.mkdtemp(prefix="ssl_bench_photos_")
  for i, path in enumerate(skimage_photo_paths()):
    folder = os.path.join(root, f"class{i % 2}")
    os.makedirs(folder, exist_ok=True)
    shutil.copy(path, os.path.join(folder, os.path.basename(path)))
  return root


def pipeline_rates(size: int, batch: int, workers: list[int], seconds: float) -> dict[int, float]:
  from vision_jax.input_pipeline import measure_pipeline_throughput
  from vision_jax.sources import ImageFolderSource
  root = photo_folder()
  try:
    source = ImageFolderSource(root)
    reps = max(1, -(-batch // len(source)))  # the batch must fit in the source
    if reps > 1:
      from vision_jax.sources import PooledSource
      source = PooledSource([source] * reps)
    return {w: measure_pipeline_throughput(source, size, batch, w, seconds) for w in workers}
  finally:
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--size", type=int, default=224)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--workers", default="0,1,2", help="grain worker processes to time (0: threads)")
  p.add_argument("--pipeline_seconds", type=float, default=5.0)
  p.add_argument("--torch_channels_last", action="store_true")
  p.add_argument("--no_torch", action="store_true")
  p.add_argument("--no_record", action="store_true")
  p.add_argument("--summary_json", default="")
  args = p.parse_args()
  backend = jax.default_backend()

  runners = {"jax": jax_runner(args.batch, args.size, args.dtype)}
  torch_device = None
  if not args.no_torch and importlib.util.find_spec("torch") is None:
    print("PyTorch is not installed: timing JAX only (pip install -e '.[bench]' for the comparison)")
    args.no_torch = True
  if not args.no_torch:
    runners["torch"], torch_device = torch_runner(args.batch, args.size, args.dtype,
                                                  args.torch_channels_last)
  for name, run in runners.items():  # compile / warm up
    print(f"warming up {name} ...", flush=True)
    run()
  times = {k: [] for k in runners}
  for _ in range(args.reps):
    for k, run in runners.items():
      times[k] += timeit(run, 1)
  t_jax = median(times["jax"])
  t_torch = median(times["torch"]) if "torch" in times else float("nan")
  step_flops = 3 * 2 * args.batch * R50_FORWARD_FLOPS * (args.size / 224) ** 2
  rate_jax, rate_torch = args.batch / t_jax, args.batch / t_torch
  rows = ["| B (×2 views) | px | dtype | JAX s/step | JAX images/s | PyTorch s/step "
          "| PyTorch images/s | JAX / PyTorch | JAX GFLOP/s |",
          "|---|---|---|---|---|---|---|---|---|"]
  rows.append(f"| {args.batch} | {args.size} | {args.dtype} | {t_jax:.3f} | {rate_jax:.1f} | "
              f"{t_torch:.3f} | {rate_torch:.1f} | {t_torch / t_jax:.2f}× | "
              f"{step_flops / t_jax / 1e9:.0f} |")
  print("\n".join(rows), flush=True)

  workers = [int(w) for w in args.workers.split(",") if w.strip()]
  rates = pipeline_rates(args.size, args.batch, workers, args.pipeline_seconds)
  pipe_rows = ["| grain workers | images/s | images/s per worker | ÷ JAX step consumption |",
               "|---|---|---|---|"]
  for w, r in rates.items():
    label = f"{w}" if w else "0 (2 threads in-process)"
    pipe_rows.append(f"| {label} | {r:.1f} | {r / max(w, 1):.1f} | {r / rate_jax:.1f}× |")
  print("\n".join(pipe_rows), flush=True)

  body = (f"SimCLR step = device augmentation + ResNet-50 forward/backward over both views + "
          f"2-layer head + NT-Xent + LARS; PyTorch on {torch_device or '—'}"
          f"{' with autocast(bfloat16)' if args.dtype == 'bfloat16' else ''}. Median of "
          f"{args.reps} alternating repetitions after a warm-up step each; random uint8 "
          f"views. FLOPs: 3 × forward (8.2 GFLOPs per 224-px view).\n\n" + "\n".join(rows) +
          "\n\nInput pipeline alone (decode + 2 random resized crops per image, scikit-image "
          f"photographs in an image folder, {args.size} px, batches of {args.batch}, "
          f"{args.pipeline_seconds:.0f} s each); it must deliver ≥ 2× the step's consumption "
          f"({rate_jax:.1f} images/s):\n\n" + "\n".join(pipe_rows))
  if not args.no_record:
    update_section(f"SimCLR pretraining step, ResNet-50 ({backend}, {args.dtype})", body)
  if args.summary_json:
    summary = [{"name": "ssl_step", "metric": f"JAX images/s (B={args.batch}, {args.dtype})",
                "value": rate_jax, "unit": "img/s"},
               {"name": "ssl_step", "metric": "PyTorch images/s", "value": rate_torch,
                "unit": "img/s"},
               {"name": "ssl_step", "metric": "JAX / PyTorch", "value": t_torch / t_jax,
                "unit": "×"}]
    summary += [{"name": "ssl_pipeline", "metric": f"images/s, {w} workers", "value": r,
                 "unit": "img/s"} for w, r in rates.items()]
    with open(args.summary_json, "w") as f:
      json.dump(summary, f)


if __name__ == "__main__":
  main()
