"""vision_jax.port_torch: torchvision-layout ResNet state dicts ported into encoder runs, checked
against a float64 numpy forward pass with torchvision's semantics (symmetric padding,
standardised input, eval-mode BN) and, when PyTorch is installed, PyTorch's own forward pass of a
torchvision-layout ResNet-50 (benchmarks/torchvision_resnet.py; at the published width, 224 px:
benchmarks/port_torch_agreement.py)."""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from vision_jax import port_torch
from vision_jax.encoder import load_encoder
from vision_jax.errors import VisionInputError

LAYOUTS = {10: ((1, 1, 1, 1), False), 50: ((3, 4, 6, 3), True)}  # basic / bottleneck blocks
MEAN, STD = np.array(port_torch.IMAGENET_MEAN), np.array(port_torch.IMAGENET_STD)


def _tv_state_dict(rng, depth, width, *, small_stem=False, num_classes=None):
  """torchvision's ResNet state dict (names, OIHW shapes, BN buffers) with random weights and
  BN statistics, written out from torchvision's construction rules."""
  counts, bottleneck = LAYOUTS[depth]
  sd = {}

  def conv(name, out, inp, k):
    sd[name + ".weight"] = rng.normal(size=(out, inp, k, k)) * np.sqrt(2.0 / (inp * k * k))

  def bn(name, c):
    sd[name + ".weight"] = rng.uniform(0.5, 1.0, c)
    sd[name + ".bias"] = rng.normal(size=c) * 0.1
    sd[name + ".running_mean"] = rng.normal(size=c) * 0.1
    sd[name + ".running_var"] = rng.uniform(0.5, 2.0, c)
    sd[name + ".num_batches_tracked"] = np.array(7, np.int64)

  conv("conv1", width, 3, 3 if small_stem else 7)
  bn("bn1", width)
  inplanes, expansion = width, 4 if bottleneck else 1
  for s, n in enumerate(counts, start=1):
    planes = width * 2 ** (s - 1)
    for b in range(n):
      p = f"layer{s}.{b}"
      if bottleneck:
        conv(p + ".conv1", planes, inplanes, 1)
        conv(p + ".conv2", planes, planes, 3)
        conv(p + ".conv3", planes * 4, planes, 1)
        for j, c in ((1, planes), (2, planes), (3, planes * 4)):
          bn(f"{p}.bn{j}", c)
      else:
        conv(p + ".conv1", planes, inplanes, 3)
        conv(p + ".conv2", planes, planes, 3)
        bn(p + ".bn1", planes)
        bn(p + ".bn2", planes)
      stride = 2 if s > 1 and b == 0 else 1
      if b == 0 and (stride != 1 or inplanes != planes * expansion):
        conv(p + ".downsample.0", planes * expansion, inplanes, 1)
        bn(p + ".downsample.1", planes * expansion)
      inplanes = planes * expansion
  if num_classes:
    sd["fc.weight"] = rng.normal(size=(num_classes, inplanes)) / np.sqrt(inplanes)
    sd["fc.bias"] = rng.normal(size=num_classes) * 0.1
  return {k: v if v.dtype == np.int64 else v.astype(np.float32) for k, v in sd.items()}


def _conv64(x, w, stride, pad):
  """NCHW cross-correlation with zero padding `pad` on every side, float64."""
  n, c, h, wd = x.shape
  o, _, kh, kw = w.shape
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
  out = np.zeros((n, o, ho, wo))
  for i in range(kh):
    for j in range(kw):
      window = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
      out += np.einsum("nchw,oc->nohw", window, w[:, :, i, j])
  return out


def _forward64(sd, images, depth, *, small_stem=False, normalise=True):
  """torchvision's ResNet forward (eval mode) in float64: (pooled features, fc logits)."""
  sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
  counts, bottleneck = LAYOUTS[depth]
  x = images.transpose(0, 3, 1, 2).astype(np.float64)
  if normalise:
    x = (x - MEAN[:, None, None]) / STD[:, None, None]
  relu = lambda a: np.maximum(a, 0)

  def bn(a, name):
    scale = sd[name + ".weight"] / np.sqrt(sd[name + ".running_var"] + 1e-5)
    shift = sd[name + ".bias"] - sd[name + ".running_mean"] * scale
    return a * scale[:, None, None] + shift[:, None, None]

  if small_stem:
    x = relu(bn(_conv64(x, sd["conv1.weight"], 1, 1), "bn1"))
  else:
    x = relu(bn(_conv64(x, sd["conv1.weight"], 2, 3), "bn1"))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    ho, wo = (x.shape[2] - 1) // 2 + 1, (x.shape[3] - 1) // 2 + 1
    x = np.max([xp[:, :, i:i + 2 * (ho - 1) + 1:2, j:j + 2 * (wo - 1) + 1:2]
                for i in range(3) for j in range(3)], axis=0)
  for s, n in enumerate(counts, start=1):
    for b in range(n):
      p, stride = f"layer{s}.{b}", 2 if s > 1 and b == 0 else 1
      if bottleneck:
        y = relu(bn(_conv64(x, sd[p + ".conv1.weight"], 1, 0), p + ".bn1"))
        y = relu(bn(_conv64(y, sd[p + ".conv2.weight"], stride, 1), p + ".bn2"))
        y = bn(_conv64(y, sd[p + ".conv3.weight"], 1, 0), p + ".bn3")
      else:
        y = relu(bn(_conv64(x, sd[p + ".conv1.weight"], stride, 1), p + ".bn1"))
        y = bn(_conv64(y, sd[p + ".conv2.weight"], 1, 1), p + ".bn2")
      if p + ".downsample.0.weight" in sd:
        x = bn(_conv64(x, sd[p + ".downsample.0.weight"], stride, 0), p + ".downsample.1")
      x = relu(x + y)
  feats = x.mean(axis=(2, 3))
  logits = feats @ sd["fc.weight"].T + sd["fc.bias"] if "fc.weight" in sd else None
  return feats, logits


def _benchmark_module(name):
  """A PyTorch equivalent from benchmarks/ (their one home), e.g. torchvision's ResNet-50."""
  path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", name + ".py")
  spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _rel_err(got, want):
  return float(np.abs(got - want).max() / np.abs(want).max())


def test_resnet50_port_matches_float64_forward_and_pytorch(tmp_path, capsys):
  """The ResNet-50 layout (ImageNet stem, standardised input, fc head) at width 8, 40 px: even
  sizes are where SAME and torchvision's padding differ (40 -> 20 -> 10 -> 5 -> 3 -> 2).
  Without PyTorch the state dict is built here and ported from memory; with it, it comes from a
  torch.nn ResNet-50 through torch.save and the CLI, and PyTorch's forward is a second reference."""
  try:
    import torch
  except ImportError:
    torch = None
  rng = np.random.default_rng(50)
  images = rng.uniform(0, 1, (8, 40, 40, 3)).astype(np.float32)
  out = str(tmp_path / "run")
  if torch is None:
    sd = _tv_state_dict(rng, 50, 8, num_classes=10)
    port_torch.write_run(*port_torch.port_resnet(sd), out, image_size=40)
  else:
    torchvision_resnet = _benchmark_module("torchvision_resnet")
    torch.manual_seed(0)
    net = torchvision_resnet.randomize_batch_norm(torchvision_resnet.ResNet50(8, 10))
    torch.save(net.state_dict(), tmp_path / "resnet50.pth")
    assert port_torch.main([f"--resnet50={tmp_path / 'resnet50.pth'}", f"--out={out}",
                            "--image_size=40"]) == 0, capsys.readouterr().err
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
  want, logits = _forward64(sd, images, 50)
  got = load_encoder(out).features(images)
  assert got.shape == (8, 256) and _rel_err(got, want) < 1e-5
  # The fc layer is the ResNet's LinearHead "classifier" (kernel (D, C), bias): same logits.
  module, variables = port_torch.load_classifier(out)
  head = variables["params"]["classifier"]
  assert module.num_classes == 10 and head["kernel"].shape == (256, 10)
  assert _rel_err(got @ head["kernel"] + head["bias"], logits) < 1e-5
  backbone = json.load(open(tmp_path / "run/model.json"))["backbone"]
  assert backbone["padding"] == "symmetric" and backbone["input_std"] == list(STD)
  if torch is not None:
    x = torch.from_numpy(((images - MEAN) / STD).transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
      assert _rel_err(got, net.features(x).numpy()) < 1e-4
    # --resnet50 checks the depth it was promised.
    torch.save({"state_dict": {k: v for k, v in net.state_dict().items()
                               if not k.startswith("layer3.5.")}}, tmp_path / "r.pth")
    assert port_torch.main([f"--resnet50={tmp_path / 'r.pth'}", f"--out={tmp_path / 'r'}"]) == 2
    assert "(3, 4, 5, 3) blocks" in capsys.readouterr().err


def test_basic_block_small_stem_port_matches_float64_forward(tmp_path):
  """Basic blocks (the ResNet-18/34 layout, here one per stage: depth 10), a 3x3 stem without
  max-pool, [0, 1] input (no standardisation), no fc."""
  rng = np.random.default_rng(10)
  sd = _tv_state_dict(rng, 10, 4, small_stem=True)
  spec, variables, head = port_torch.port_resnet(sd, input_mean=None, input_std=None)
  assert (spec["depth"], spec["small_stem"], spec["base_width"], head) == (10, True, 4, None)
  out = port_torch.write_run(spec, variables, head, str(tmp_path / "run"), image_size=40)
  images = rng.uniform(0, 1, (8, 40, 40, 3)).astype(np.float32)
  want, _ = _forward64(sd, images, 10, small_stem=True, normalise=False)
  assert _rel_err(load_encoder(out).features(images), want) < 1e-5
  assert "input_mean" not in json.load(open(tmp_path / "run/model.json"))["backbone"]


def test_bad_state_dicts_name_the_key():
  rng = np.random.default_rng(0)
  base = _tv_state_dict(rng, 10, 4, num_classes=3)

  def error(sd, match, **kw):
    with pytest.raises(VisionInputError, match=match) as e:
      port_torch.port_resnet(sd, source="w.pth", **kw)
    assert e.value.file == "w.pth"
    return e.value.field

  sd = dict(base)
  del sd["layer3.0.bn2.running_var"]
  assert error(sd, "lacks 'layer3.0.bn2.running_var'") == "layer3.0.bn2.running_var"
  sd = {**base, "layer2.0.conv3.weight": np.zeros((8, 8, 1, 1), np.float32)}
  assert error(sd, "unexpected 'layer2.0.conv3.weight'") == "layer2.0.conv3.weight"
  sd = {**base, "layer2.0.conv2.weight": base["layer2.0.conv2.weight"][:, :4]}
  assert error(sd, r"'layer2.0.conv2.weight' has shape \(8, 4, 3, 3\)") == "layer2.0.conv2.weight"
  sd = {k: v for k, v in base.items() if k != "conv1.weight"}
  assert error(sd, "not a torchvision-layout ResNet") == "conv1.weight"
  sd = {k: v for k, v in base.items() if not k.startswith("layer4.")}
  assert error(sd, r"\(1, 1, 1, 0\) blocks") == "layer1..layer4"
  sd = {**base, "fc.weight": np.zeros((3, 64), np.float32)}  # width 4: 32 features
  assert error(sd, r"'fc.weight' has shape \(3, 64\)") == "fc.weight"
  sd = {k: v for k, v in base.items() if not k.startswith("fc.")}
  sd.update({"fc.0.weight": np.zeros((32, 32), np.float32), "fc.2.weight": np.zeros((8, 32))})
  assert error(sd, "--no_classifier") == "fc.0.weight"   # e.g. an SSL projection head
  assert port_torch.port_resnet(sd, classifier=False)[2] is None


def test_select_unwraps_checkpoints():
  sd = {"module.encoder_q.conv1.weight": 1, "module.encoder_q.fc.weight": 2, "module.queue": 3}
  assert port_torch.select({"state_dict": sd, "epoch": 3}, "module.encoder_q.") == {
      "conv1.weight": 1, "fc.weight": 2}
  assert port_torch.select({"module.conv1.weight": 1}) == {"conv1.weight": 1}
  with pytest.raises(VisionInputError, match="no key starts with"):
    port_torch.select(sd, "encoder_k.")


def test_non_weights_file_is_refused(tmp_path, capsys):
  torch = pytest.importorskip("torch")
  torch.save({"state_dict": {"conv1.weight": torch.zeros(4, 3, 7, 7)},
              "optimizer": torch.optim.SGD}, tmp_path / "ckpt.pth")
  assert port_torch.main([f"--resnet={tmp_path / 'ckpt.pth'}", f"--out={tmp_path / 'r'}"]) == 2
  err = capsys.readouterr().err
  assert "refused" in err and "torch.optim" in err and "--trust_pickle" in err
  assert not (tmp_path / "r").exists()
