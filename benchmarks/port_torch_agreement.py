"""Agreement of the PyTorch importers with PyTorch's own forward passes, at the published sizes.

  python benchmarks/port_torch_agreement.py [--images=16] [--size=224] [--species=47375]
      [--locations=10000] [--no_record]

- ResNet-50: torchvision's layout at the published width (benchmarks/torchvision_resnet.py,
  25.6M parameters, 1000-way fc), random weights with BN statistics away from 0/1, saved with
  torch.save and imported by `vision_jax.port_torch.port_file` (what the CLI runs). Pooled
  features of `--images` random images through `load_encoder` and logits through
  `load_classifier`, against PyTorch on the same images standardised as torchvision expects. The
  same weights in a backbone with this project's default SAME padding show why the import
  records "symmetric" padding.
- SINR: the reference's ResidualFCNet (4 -> 256, depth 4) with `--species` classes
  (benchmarks/torch_sinr.py), saved as {'state_dict', 'params'} and imported by
  `sinr_jax.port_torch.port_file`; probabilities, logits and embeddings at `--locations` random
  locations through `sinr_jax.load`, against PyTorch.

Relative errors are max |ours − PyTorch| / max |PyTorch| over the whole array. Both frameworks
run in this process: these are agreement figures, not speed comparisons (import times are of
the importer alone). Writes the `port_torch` section of RESULTS.md.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

FLAGS = {"images": 16, "size": 224, "species": 47375, "locations": 10000}


def _rel(got, want) -> float:
  return float(np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max())


def resnet50(torch, tmp: str, images: int, size: int) -> dict:
  import jax
  import torchvision_resnet
  from vision_jax import port_torch
  from vision_jax.encoder import Encoder, load_encoder
  from vision_jax.resnet import build_resnet

  torch.manual_seed(0)
  net = torchvision_resnet.randomize_batch_norm(torchvision_resnet.ResNet50())
  path = os.path.join(tmp, "resnet50.pth")
  torch.save(net.state_dict(), path)
  t = time.perf_counter()
  run = port_torch.port_file(path, os.path.join(tmp, "r50"), image_size=size)
  port_s = time.perf_counter() - t
  x = np.random.default_rng(0).uniform(0, 1, (images, size, size, 3)).astype(np.float32)
  mean, std = np.array(port_torch.IMAGENET_MEAN), np.array(port_torch.IMAGENET_STD)
  xt = torch.from_numpy(((x - mean) / std).transpose(0, 3, 1, 2).astype(np.float32))
  with torch.no_grad():
    want = net.features(xt).double().numpy()
    want_logits = net.fc(torch.from_numpy(want).float()).double().numpy()
  encoder = load_encoder(run)
  got = encoder.features(x, batch_size=8)
  module, variables = port_torch.load_classifier(run)
  apply = jax.jit(lambda v, im: module.apply(v, im, train=False)[0])
  logits = np.concatenate([np.asarray(apply(variables, x[i:i + 8]))
                           for i in range(0, len(x), 8)])
  same = Encoder(build_resnet({**encoder_spec(run), "padding": "same"}, section="backbone"),
                 encoder.variables, size)
  return {"params": sum(p.numel() for p in net.parameters()), "port_s": port_s,
          "file_mb": os.path.getsize(path) / 2**20, "features": _rel(got, want),
          "logits": _rel(logits, want_logits),
          "top1": float(np.mean(logits.argmax(1) == want_logits.argmax(1))),
          "same_padding": _rel(same.features(x, batch_size=8), want)}


def encoder_spec(run: str) -> dict:
  from vision_jax.encoder import read_model_spec
  return read_model_spec(run)["backbone"]


def sinr(torch, tmp: str, species: int, locations: int) -> dict:
  import sinr_jax
  import torch_sinr
  from sinr_jax import port_torch

  torch.manual_seed(0)
  net = torch_sinr.ResidualFCNet(4, species, 256, 4).eval()
  taxa = np.sort(np.random.default_rng(0).choice(10**6, species, replace=False)).tolist()
  params = {"model": "ResidualFCNet", "input_dim": 4, "num_classes": species, "num_filts": 256,
            "depth": 4, "class_to_taxa": taxa, "input_enc": "sin_cos"}
  path = os.path.join(tmp, "model.pt")
  torch.save({"state_dict": net.state_dict(), "params": params}, path)
  t = time.perf_counter()
  run = port_torch.port_file(path, os.path.join(tmp, "sinr"))
  port_s = time.perf_counter() - t
  rng = np.random.default_rng(1)
  lon = rng.uniform(-180, 180, locations).astype(np.float32)
  lat = rng.uniform(-90, 90, locations).astype(np.float32)
  norm = np.stack([lon / 180.0, lat / 90.0], 1).astype(np.float32)
  enc = np.concatenate([np.sin(math.pi * norm), np.cos(math.pi * norm)], 1)
  cols = np.sort(rng.choice(species, min(200, species), replace=False))
  with torch.no_grad():
    emb = net.feats(torch.from_numpy(enc))
    want_logits = (emb @ net.class_emb.weight[cols].T).double().numpy()
    want_emb = emb.double().numpy()
  model = sinr_jax.load(run)
  got_logits = model.logits(lon, lat, taxa=np.asarray(taxa)[cols])
  sig = lambda z: 1 / (1 + np.exp(-z))
  return {"params": sum(p.numel() for p in net.parameters()), "port_s": port_s,
          "file_mb": os.path.getsize(path) / 2**20,
          "embed": _rel(model.embed(lon, lat), want_emb), "logits": _rel(got_logits, want_logits),
          "prob_abs": float(np.abs(sig(got_logits) - sig(want_logits)).max())}


def main(argv: list[str]) -> int:
  args = dict(FLAGS)
  record = True
  for a in argv:
    name, _, value = a.lstrip("-").partition("=")
    if name == "no_record":
      record = False
    elif name in args:
      args[name] = int(value)
    else:
      raise SystemExit(f"unknown flag {a}; flags: --no_record, " +
                       ", ".join(f"--{k}={v}" for k, v in FLAGS.items()))
  import torch
  with tempfile.TemporaryDirectory() as tmp:
    r = resnet50(torch, tmp, args["images"], args["size"])
    s = sinr(torch, tmp, args["species"], args["locations"])
  body = (
      "Agreement of the importers with PyTorch's forward pass (random weights in the published "
      "layouts and sizes; relative error = max |ours − PyTorch| / max |PyTorch|). Import time is "
      "the importer alone (read with weights_only, convert, write the run directory) on the "
      "shared 2-core machine, loaded by other work while it ran.\n\n"
      "| model | parameters | file | import | compared | relative error |\n"
      "|---|---|---|---|---|---|\n"
      f"| ResNet-50, torchvision layout | {r['params']:,} | {r['file_mb']:.0f} MiB | "
      f"{r['port_s']:.1f} s | pooled features, {args['images']} images {args['size']} px | "
      f"{r['features']:.1e} |\n"
      f"| | | | | 1000-way logits (top-1 agreement {r['top1']:.0%}) | {r['logits']:.1e} |\n"
      f"| | | | | the same weights with SAME padding (this project's default) | "
      f"{r['same_padding']:.1e} |\n"
      f"| SINR ResidualFCNet, {args['species']:,} species | {s['params']:,} | "
      f"{s['file_mb']:.0f} MiB | {s['port_s']:.1f} s | embeddings, {args['locations']:,} "
      f"locations | {s['embed']:.1e} |\n"
      f"| | | | | logits of {min(200, args['species'])} species | {s['logits']:.1e} |\n"
      f"| | | | | probabilities (max absolute difference) | {s['prob_abs']:.1e} |\n")
  print(body)
  if record:
    from results import jax_runtime, torch_runtime
    results.update_section("port_torch", body, runtime=f"{jax_runtime()}; {torch_runtime()}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
