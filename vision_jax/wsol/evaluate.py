"""Localising a split: maps on the device, metrics on the host.

A localiser maps a batch of uint8 images (B, S, S, 3) and their target nodes (B,) to
normalised maps (B, S, S) in [0, 1] (and, for classifiers, logits). `CamLocalizer` and
`MaskLocalizer` run jitted and data-parallel over the mesh (the batch padded to a multiple of
the devices, the padding dropped); `ConstantLocalizer` (the Center baseline) is one fixed map.
`evaluate_split` streams a split through a localiser into MaxBoxAccV2 (where it has boxes),
PxAP (where it has masks) and top-1 against the targets.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ecorep.mesh import batch_sharding, data_mesh, replicate
from vision_jax.wsol import cam as cam_lib
from vision_jax.wsol.analysis import Analyses
from vision_jax.wsol.data import LocSplit
from vision_jax.wsol.metrics import MaxBoxAccV2, PxAP, binarize
from vision_jax.wsol import boxes as box_lib


@functools.lru_cache(maxsize=16)
def _cam_program(net, size: int, mesh):
  rows = batch_sharding(mesh)

  def run(variables, images, weights):
    x = images.astype(jnp.float32) / 255.0
    logits, extras = net.apply(variables, x, train=False)
    maps = cam_lib.upsample_normalize(cam_lib.raw_cams(extras["feature_map"], weights), size)
    return maps, logits
  return jax.jit(run, out_shardings=(rows, rows))


@functools.lru_cache(maxsize=16)
def _mask_program(net, size: int, mesh):
  rows = batch_sharding(mesh)

  def run(variables, images):
    logits, _ = net.apply(variables, images.astype(jnp.float32) / 255.0, train=False)
    probs = jax.nn.sigmoid(jax.image.resize(logits, (logits.shape[0], size, size), "bilinear"))
    return cam_lib.upsample_normalize(probs, size)
  return jax.jit(run, out_shardings=rows)


def _padded(n: int, batch_size: int, n_dev: int) -> int:
  """Batches are padded to one size (one compiled program): `batch_size` rounded up to the
  devices, or a multiple of them for a larger call."""
  return -(-max(n, batch_size) // n_dev) * n_dev


@dataclasses.dataclass
class CamLocalizer:
  """CAMs of `net` (a classifier) for the targets' columns of `kernel` (C, K): the head's own
  kernel, or `cam.aggregate_kernel` of it for CAM-Agg."""
  net: Any
  variables: dict
  kernel: np.ndarray
  image_size: int
  mesh: Any = None
  logit_groups: np.ndarray | None = None  # leaf -> node: logits re-scored at the node level
  batch_size: int = 1                     # calls are padded to at least this many images

  def __post_init__(self):
    self.mesh = self.mesh or data_mesh(jax.local_devices())
    self.variables = replicate(self.variables, self.mesh)
    self._run = _cam_program(self.net, int(self.image_size), self.mesh)

  def __call__(self, images: np.ndarray, targets: np.ndarray):
    n = len(images)
    size = _padded(n, self.batch_size, self.mesh.devices.size)
    weights = np.asarray(self.kernel, np.float32).T[np.asarray(targets)]
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], size - n, 0)]) if size > n else a  # noqa
    sharding = batch_sharding(self.mesh)
    maps, logits = self._run(self.variables, jax.device_put(pad(images), sharding),
                             jax.device_put(pad(weights), sharding))
    logits = np.asarray(logits, np.float64)[:n]
    if self.logit_groups is not None:  # node probability = sum of its leaves' probabilities
      probs = np.exp(logits - logits.max(axis=1, keepdims=True))
      probs /= probs.sum(axis=1, keepdims=True)
      onehot = np.eye(int(self.logit_groups.max()) + 1)[self.logit_groups]
      logits = np.log(np.maximum(probs @ onehot, 1e-300))
    return np.asarray(maps)[:n], logits


@dataclasses.dataclass
class MaskLocalizer:
  """FSL-Seg: the mask head's sigmoid, upsampled and normalised (targets are ignored)."""
  net: Any
  variables: dict
  image_size: int
  mesh: Any = None
  batch_size: int = 1

  def __post_init__(self):
    self.mesh = self.mesh or data_mesh(jax.local_devices())
    self.variables = replicate(self.variables, self.mesh)
    self._run = _mask_program(self.net, int(self.image_size), self.mesh)

  def __call__(self, images: np.ndarray, targets: np.ndarray):
    del targets
    n, size = len(images), _padded(len(images), self.batch_size, self.mesh.devices.size)
    if size > n:
      images = np.concatenate([images, np.repeat(images[-1:], size - n, 0)])
    maps = self._run(self.variables, jax.device_put(images, batch_sharding(self.mesh)))
    return np.asarray(maps)[:n], None


@dataclasses.dataclass
class ConstantLocalizer:
  """The same map for every image (the Center baseline)."""
  map: np.ndarray

  def __call__(self, images: np.ndarray, targets: np.ndarray):
    return np.broadcast_to(self.map, (len(images), *self.map.shape)), None


def center_map(size: int, sigma: float) -> np.ndarray:
  """A centred isotropic Gaussian, σ as a fraction of the image side, normalised to [0, 1]."""
  c = (size - 1) / 2.0
  yy, xx = np.mgrid[:size, :size]
  g = np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2.0 * (sigma * size) ** 2))
  return ((g - g.min()) / (g.max() - g.min())).astype(np.float32)


def _batches(n: int, batch_size: int):
  for start in range(0, n, batch_size):
    yield np.arange(start, min(start + batch_size, n))


def evaluate_split(localize: Callable, split: LocSplit, targets: np.ndarray, *,
                   batch_size: int = 256, interval: float = 0.01,
                   convention: str = "reference") -> dict:
  """MaxBoxAccV2 (boxes), PxAP (masks) and top-1 of the logits against `targets`."""
  boxacc = MaxBoxAccV2(interval, convention=convention) if split.has_boxes else None
  pxap = PxAP(interval) if split.masks is not None else None
  hits, seen = 0, 0
  for rows in _batches(len(split), batch_size):
    maps, logits = localize(split.images.eval(rows), targets[rows])
    if boxacc is not None:
      boxacc.accumulate(maps, [split.boxes[i] for i in rows])
    if pxap is not None:
      pxap.accumulate(maps, split.masks(rows))
    if logits is not None:
      hits += int(np.sum(np.argmax(logits, -1) == targets[rows]))
      seen += len(rows)
  out = {"num_images": len(split)}
  if boxacc is not None:
    out.update(boxacc.result())
    out["boxacc_curves"] = boxacc.accuracy_curves().round(4).tolist()
  if pxap is not None:
    out["pxap"] = pxap.result()["pxap"]
  if seen:
    out["top1"] = hits / seen
  return out


def selection_score(metrics: dict) -> float:
  """What D_f ranks runs by: MaxBoxAccV2 where there are boxes, else PxAP."""
  return float(metrics["maxboxacc"] if "maxboxacc" in metrics else metrics["pxap"])


def analyze_split(localize: Callable, split: LocSplit, targets: np.ndarray, tau: float, *,
                  batch_size: int = 256, convention: str = "reference") -> dict:
  """The Fig. 4.5 analyses (vision_jax.wsol.analysis) at threshold τ."""
  acc = Analyses(tau, convention)
  for rows in _batches(len(split), batch_size):
    maps, _ = localize(split.images.eval(rows), targets[rows])
    acc.accumulate(maps, [split.boxes[i] for i in rows])
  return acc.summary()


def overlay_examples(localize: Callable, split: LocSplit, targets: np.ndarray,
                     rows: np.ndarray, tau: float, convention: str = "reference") -> dict:
  """Images, maps, ground-truth boxes and the best predicted box at τ, for the overlays."""
  images = split.images.eval(rows)
  maps, _ = localize(images, targets[rows])
  predicted = []
  for m, i in zip(maps, rows):
    boxes = box_lib.contour_boxes(binarize(m, np.array([tau])), convention)[0]
    gt = split.boxes[i] if split.has_boxes else np.zeros((0, 4), np.int64)
    if len(boxes) and len(gt):
      boxes = boxes[np.argmax(box_lib.iou_matrix(boxes, gt).max(axis=1))][None]
    predicted.append(boxes[:1])
  return {"images": images, "maps": np.asarray(maps), "predicted": predicted,
          "truth": [split.boxes[i] if split.has_boxes else np.zeros((0, 4)) for i in rows]}
