"""The WSOL training variants, as transforms of a training batch or of the forward pass.

All run inside the jitted train step from the step's key; at evaluation none is active.
- HaS (Hide-and-Seek, Singh & Lee 2017): the image is cut into a grid of patches and each is
  hidden with probability `drop_rate` (filled with the batch's mean colour: the reference fills
  0 after mean subtraction, i.e. the mean).
- CutMix (Yun et al. 2019): one λ ~ Beta(β, β) and one permutation per batch; a box of area
  (1 − λ) of the image is pasted from the permuted images, the loss is
  λ'·CE(y) + (1 − λ')·CE(y_perm) with λ' the box's exact complement area; applied to a batch
  with probability `prob`.
- ADL (Choe & Shim 2019): after the first block of stage 3 and the first and last blocks of
  stage 4 (the reference's positions in ResNet-50), the block output is multiplied by either a
  drop mask (self-attention = channel mean; 0 where it is >= threshold·max of the image, else 1)
  or the importance map sigmoid(attention); the drop mask with probability `drop_rate`, one draw
  per layer and batch as the reference. Applied through flax's method interceptor, so the shared
  ResNet needs no hook.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.resnet import STAGES, BasicBlock, BottleneckBlock

WSOL_METHODS = ("cam", "has", "adl", "cutmix")


def hide_patches(key: jax.Array, images: jax.Array, patch: int, drop_rate: float) -> jax.Array:
  """HaS on float images (B, H, W, C): each `patch` x `patch` cell hidden with `drop_rate`."""
  b, h, w, _ = images.shape
  gh, gw = -(-h // patch), -(-w // patch)
  hidden = jax.random.bernoulli(key, drop_rate, (b, gh, gw))
  hidden = jnp.repeat(jnp.repeat(hidden, patch, axis=1), patch, axis=2)[:, :h, :w, None]
  fill = images.mean(axis=(0, 1, 2))
  return jnp.where(hidden, fill, images)


def cutmix(key: jax.Array, images: jax.Array, beta: float, prob: float = 1.0):
  """(mixed images, permutation, λ'): the loss weights the labels by λ' and the permuted
  labels by 1 − λ' (λ' = 1 when the batch is left unmixed)."""
  k_lam, k_perm, k_box, k_apply = jax.random.split(key, 4)
  b, h, w, _ = images.shape
  lam = jax.random.beta(k_lam, beta, beta)
  perm = jax.random.permutation(k_perm, b)
  cut = jnp.sqrt(1.0 - lam)
  cut_h, cut_w = (h * cut).astype(jnp.int32), (w * cut).astype(jnp.int32)
  cy = jax.random.randint(k_box, (), 0, h)
  cx = jax.random.randint(jax.random.fold_in(k_box, 1), (), 0, w)
  y0, y1 = jnp.clip(cy - cut_h // 2, 0, h), jnp.clip(cy + cut_h // 2, 0, h)
  x0, x1 = jnp.clip(cx - cut_w // 2, 0, w), jnp.clip(cx + cut_w // 2, 0, w)
  rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
  apply = jax.random.uniform(k_apply) < prob
  inside = inside & apply
  mixed = jnp.where(inside[None, :, :, None], images[perm], images)
  lam_exact = 1.0 - inside.sum() / (h * w)
  return mixed, perm, lam_exact


def adl_block_names(depth: int) -> tuple[str, ...]:
  """Blocks whose outputs ADL rescales: stage 3's first, stage 4's first and last."""
  blocks, _ = STAGES[depth]
  return tuple(dict.fromkeys(("stage3_block1", "stage4_block1", f"stage4_block{blocks[3]}")))


def adl_map(key: jax.Array, x: jax.Array, drop_rate: float, threshold: float) -> jax.Array:
  """The (B, H, W, 1) map ADL multiplies a feature map (B, H, W, C) by."""
  attention = x.astype(jnp.float32).mean(axis=-1, keepdims=True)
  peak = attention.max(axis=(1, 2), keepdims=True)
  drop = (attention < threshold * peak).astype(jnp.float32)
  use_drop = jax.random.uniform(key) < drop_rate
  return jnp.where(use_drop, drop, jax.nn.sigmoid(attention))


@contextlib.contextmanager
def adl(key: jax.Array, depth: int, drop_rate: float, threshold: float) -> Iterator[None]:
  """Within this context (a training forward pass), ADL acts after `adl_block_names(depth)`."""
  names = adl_block_names(depth)

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if (context.method_name == "__call__" and isinstance(module, (BasicBlock, BottleneckBlock))
        and module.name in names):
      k = jax.random.fold_in(key, names.index(module.name))
      out = out * adl_map(k, out, drop_rate, threshold).astype(out.dtype)
    return out

  with nn.intercept_methods(interceptor):
    yield
