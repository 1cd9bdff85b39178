"""Linear evaluation and fine-tuning of a frozen (or unfrozen) encoder.

`linear_probe` is multinomial logistic regression on standardised features, jitted: Nesterov SGD
with a cosine schedule (SimCLR's protocol: lr 0.1·B/256, momentum 0.9, mini-batches, scales to
millions of rows) or full-batch L-BFGS (exact optimum of mean cross-entropy + l2/2·‖W‖², the
objective of scikit-learn's LogisticRegression with C = 1/(l2·N); the bias is not penalised).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ecorep import trainer
from ecorep.mesh import batch_sharding, data_mesh, replicated, shard_batch
from vision_jax import features as features_lib
from vision_jax.errors import VisionInputError
from vision_jax.heads import LinearHead
from vision_jax.input_pipeline import eval_iterator, pretrain_iterator
from vision_jax.sources import ArraySource, SubsetSource


def label_subset(labels: np.ndarray, *, label_fraction: float | None = None,
                 labels_per_class: int | None = None, seed: int = 0) -> np.ndarray:
  """Sorted indices of a class-stratified subset: ceil(fraction·n_c) or min(k, n_c) per class
  (at least one); all indices when neither is given."""
  labels = np.asarray(labels)
  if label_fraction is not None and labels_per_class is not None:
    raise VisionInputError("give label_fraction or labels_per_class, not both",
                           field="label_fraction")
  if label_fraction is None and labels_per_class is None:
    return np.arange(len(labels))
  if label_fraction is not None and not 0 < label_fraction <= 1:
    raise VisionInputError(f"label_fraction must lie in (0, 1], got {label_fraction}",
                           field="label_fraction")
  if labels_per_class is not None and labels_per_class < 1:
    raise VisionInputError(f"labels_per_class must be >= 1, got {labels_per_class}",
                           field="labels_per_class")
  rng = np.random.default_rng(seed)
  chosen = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    k = (int(np.ceil(label_fraction * len(members))) if label_fraction is not None
         else min(labels_per_class, len(members)))
    chosen.append(rng.permutation(members)[:max(1, k)])
  return np.sort(np.concatenate(chosen))


# ------------------------------------------------------------------------------------- features

def extract_features(encoder, source_or_images, batch_size: int = 256,
                     cache_path: str | os.PathLike | None = None, *, dataset: str = "",
                     run_dir: str | None = None, small_image: bool | None = None,
                     num_threads: int = 2, resize_short: int | None = None,
                     overwrite: bool = False) -> np.ndarray:
  """Frozen features (N, D) float32, rows in source order (vision_jax.features.compute).

  Images go through the evaluation transform (resize short side to `resize_short`, default
  S/0.875, + centre crop S; or a plain resize to S for small images; default: small when the
  encoder has the small stem). With `cache_path` the features are stored with the encoder's
  identity (architecture + digest of its variables), the data set (name, example count) and the
  transform; a cache written by another encoder or for other data raises VisionInputError
  naming it (`overwrite=True` replaces it). An unreadable image raises VisionInputError.
  """
  source = source_or_images
  if isinstance(source_or_images, np.ndarray):
    source = ArraySource(source_or_images, np.zeros(len(source_or_images), np.int32))
  run_dir = os.path.abspath(run_dir) if run_dir else getattr(encoder, "run_dir", None)
  result = features_lib.compute(
      encoder, source, data=features_lib.data_identity(dataset, len(source)),
      batch_size=batch_size, small_image=small_image, resize_short=resize_short,
      cache_path=cache_path, overwrite=overwrite, on_error="raise", num_threads=num_threads,
      info={"run_dir": run_dir, "step": getattr(encoder, "step", None)})
  if result.failed.size:  # a cache written with on_error="mark"
    raise VisionInputError(f"{result.failed.size} image(s) could not be read: "
                           f"{result.failures[0]}", file=cache_path,
                           row=int(result.failed[0]))
  return result.features


# ---------------------------------------------------------------------------------- linear probe

def _cross_entropy(params, x, y, weights=None, class_bias=None):
  logits = x @ params["w"] + params["b"]
  if class_bias is not None:
    logits = logits + class_bias
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  if weights is None:
    return jnp.mean(losses)
  return jnp.sum(losses * weights) / jnp.sum(weights)


def _fit_lbfgs(x, y, weights, class_bias, num_classes, l2, max_iter, tol):
  def loss(p):
    return _cross_entropy(p, x, y, weights, class_bias) + 0.5 * l2 * jnp.sum(p["w"] ** 2)
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def step(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    return optax.apply_updates(params, updates), state

  def keep_going(carry):
    _, state = carry
    count = optax.tree.get(state, "count")
    return (count == 0) | ((count < max_iter) & (optax.tree.norm(optax.tree.get(state, "grad"))
                                                 >= tol))
  params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
  params, _ = jax.lax.while_loop(keep_going, step, (params, opt.init(params)))
  return params


_FIT_LBFGS = jax.jit(_fit_lbfgs, static_argnums=4)  # the class count sets the shapes


def _pow2(n: int, least: int) -> int:
  return max(least, 1 << (max(n, 1) - 1).bit_length())


def _lbfgs_padded(x, y, num_classes, l2, max_iter, tol):
  """L-BFGS on rows, features and classes zero-padded to powers of two (at least 2048 rows, 64
  features, 16 classes), so that label-budget curves, hierarchy levels and encoders of one
  width share one compiled solver (a compile takes seconds to tens of seconds on a CPU; a
  solve of a small problem milliseconds). Padded rows weigh 0; padded features are 0 (their
  weights get no gradient but the L2 term: they stay 0); padded classes get a -1e9 logit
  offset (probability 0). The real parameters follow the unpadded problem's iterates: the
  padding adds only zeros to every inner product."""
  n, d = x.shape
  rows, dims, classes = _pow2(n, 2048), _pow2(d, 64), _pow2(num_classes, 16)
  xp = np.zeros((rows, dims), np.float32)
  xp[:n, :d] = x
  yp = np.zeros(rows, np.int32)
  yp[:n] = y
  weights = (np.arange(rows) < n).astype(np.float32)
  class_bias = np.where(np.arange(classes) < num_classes, 0.0, -1e9).astype(np.float32)
  params = _FIT_LBFGS(xp, yp, weights, class_bias, classes, l2, max_iter, tol)
  return {"w": np.asarray(params["w"])[:d, :num_classes],  # sliced on the host: eager jax ops
          "b": np.asarray(params["b"])[:num_classes]}     # would compile for every new shape


def _fit_sgd(x, y, key, num_classes, l2, lr, momentum, epochs, batch_size):
  n = x.shape[0]
  steps = n // batch_size
  schedule = optax.cosine_decay_schedule(lr, epochs * steps)
  opt = optax.chain(optax.add_decayed_weights(l2, mask={"w": True, "b": False}),
                    optax.sgd(schedule, momentum=momentum, nesterov=True))
  params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}

  def epoch(carry, epoch_key):
    rows = jax.random.permutation(epoch_key, n)[:steps * batch_size].reshape(steps, batch_size)

    def step(carry, idx):
      params, state = carry
      grad = jax.grad(_cross_entropy)(params, x[idx], y[idx])
      updates, state = opt.update(grad, state, params)
      return (optax.apply_updates(params, updates), state), None
    return jax.lax.scan(step, carry, rows)[0], None
  (params, _), _ = jax.lax.scan(epoch, (params, opt.init(params)), jax.random.split(key, epochs))
  return params


def _topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
  k = min(k, logits.shape[1])
  top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
  return float(np.mean(np.any(top == labels[:, None], axis=1))) if len(labels) else float("nan")


def linear_probe(train_feats, train_labels, test_feats, test_labels, *, method: str = "sgd",
                 epochs: int = 90, lr: float | None = None, batch_size: int = 1024,
                 momentum: float = 0.9, l2: float = 0.0, max_iter: int = 500, tol: float = 1e-5,
                 label_fraction: float | None = None, labels_per_class: int | None = None,
                 num_classes: int | None = None, seed: int = 0,
                 return_test_probs: bool = False) -> dict[str, Any]:
  """Trains softmax regression on (a label subset of) the training features; returns top1, top5
  (fractions) on test and train, the sizes, and the final training objective; with
  `return_test_probs` also "test_probs", the (N_test, C) class probabilities (float64)."""
  train_feats, test_feats = np.asarray(train_feats, np.float32), np.asarray(test_feats, np.float32)
  train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
  if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
    raise VisionInputError(f"features must be (N, D) with one D, got {train_feats.shape} and "
                           f"{test_feats.shape}", field="features")
  if len(train_feats) != len(train_labels) or len(test_feats) != len(test_labels):
    raise VisionInputError("features and labels differ in length", field="labels")
  if method not in ("sgd", "lbfgs"):
    raise VisionInputError(f"method must be 'sgd' or 'lbfgs', got '{method}'", field="method")
  if not (np.isfinite(train_feats).all() and np.isfinite(test_feats).all()):
    raise VisionInputError("features hold NaN or inf", field="features")
  rows = label_subset(train_labels, label_fraction=label_fraction,
                      labels_per_class=labels_per_class, seed=seed)
  x, y = train_feats[rows], train_labels[rows].astype(np.int32)
  if num_classes is None:
    num_classes = int(max(y.max(), test_labels.max(initial=0))) + 1
  mean, std = x.mean(0), x.std(0)
  std = np.where(std > 1e-6, std, 1.0)  # constant features stay zero, not inf
  x, x_test = (x - mean) / std, (test_feats - mean) / std
  if method == "lbfgs":
    params = _lbfgs_padded(x, y, num_classes, l2, max_iter, tol)
  else:
    batch_size = min(batch_size, len(x))
    lr = 0.1 * batch_size / 256 if lr is None else lr
    fit = jax.jit(_fit_sgd, static_argnums=(3, 7, 8))
    params = fit(x, y, jax.random.key(seed), num_classes, l2, lr, momentum, epochs, batch_size)
  w, b = np.asarray(params["w"]), np.asarray(params["b"])
  train_logits, test_logits = x @ w + b, x_test @ w + b
  logits = train_logits.astype(np.float64)  # the objective in numpy: no per-shape compiles
  top = logits.max(axis=1, keepdims=True)
  log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
  objective = float(np.mean(log_z - logits[np.arange(len(y)), y]) + 0.5 * l2 * np.sum(w ** 2))
  out = {"top1": _topk(test_logits, test_labels, 1), "top5": _topk(test_logits, test_labels, 5),
         "train_top1": _topk(train_logits, y, 1), "train_objective": objective,
         "num_train": int(len(y)), "num_test": int(len(test_labels)),
         "num_classes": int(num_classes), "method": method}
  if return_test_probs:
    logits = test_logits.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    out["test_probs"] = probs / probs.sum(axis=1, keepdims=True)
  return out


# ------------------------------------------------------------------------------------ fine-tune

@dataclasses.dataclass(frozen=True)
class _CropAndFlip:
  """The host crop, then a horizontal flip with p = 0.5 from the same per-item generator."""
  crop_fn: Any

  def __call__(self, rng: np.random.Generator, image: np.ndarray, size: int) -> np.ndarray:
    view = self.crop_fn(rng, image, size)
    return np.ascontiguousarray(view[:, ::-1]) if rng.random() < 0.5 else view


class _Classifier(nn.Module):
  """The encoder's backbone plus a zero-initialised linear head: (logits, backbone extras)."""
  backbone: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, images, train: bool):
    features, extras = self.backbone(images, train=train)
    return LinearHead(self.num_classes, name="head")(features), extras


def fine_tune(encoder, train_source, test_source, *, epochs: int = 30, batch_size: int = 256,
              lr: float | None = None, momentum: float = 0.9, weight_decay: float = 0.0,
              label_fraction: float | None = None, labels_per_class: int | None = None,
              num_classes: int | None = None, small_image: bool | None = None, seed: int = 0,
              crop_fn=None, worker_count: int = 0, num_threads: int = 2,
              workdir: str | None = None) -> dict[str, Any]:
  """Trains backbone and a new linear head end to end (batch norm in training mode), then
  evaluates every test example. Inputs: one random resized crop and a random flip per image
  (host); Nesterov SGD, cosine decay, lr 0.1·B/256 by default, weight decay on
  kernels only. Data-parallel over all devices; `batch_size` is global. Runs on the shared loop
  (ecorep.trainer): with `workdir` it writes metrics and checkpoints there and resumes."""
  mesh = data_mesh()
  if small_image is None:
    small_image = bool(getattr(encoder.module, "small_stem", False))
  rows = label_subset(train_source.labels, label_fraction=label_fraction,
                      labels_per_class=labels_per_class, seed=seed)
  train = SubsetSource(train_source, rows)
  if num_classes is None:
    num_classes = int(max(train.labels.max(), np.max(test_source.labels, initial=0))) + 1
  size = int(encoder.image_size)
  if crop_fn is None:
    from vision_jax.augment import host_random_resized_crop as crop_fn
  make_batches = lambda state: pretrain_iterator(  # noqa: E731
      train, global_batch_size=batch_size, image_size=size, seed=seed, num_views=1,
      crop_fn=_CropAndFlip(crop_fn), worker_count=worker_count, num_threads=num_threads,
      state=state)
  steps_per_epoch = make_batches(None).steps_per_epoch
  steps = steps_per_epoch * epochs
  model = _Classifier(encoder.module, num_classes)
  base = dict(encoder.variables)
  dim = jax.eval_shape(lambda v: encoder.module.apply(v, jnp.zeros((1, size, size, 3)),
                                                      train=False)[0], base).shape[-1]
  params = {"backbone": base.pop("params"),
            "head": {"kernel": jnp.zeros((dim, num_classes)), "bias": jnp.zeros((num_classes,))}}
  extra = {name: {"backbone": value} for name, value in base.items()}  # batch_stats
  lr = 0.1 * batch_size / 256 if lr is None else lr
  decay_mask = jax.tree.map(lambda p: p.ndim > 1, params)
  schedule = optax.cosine_decay_schedule(lr, max(steps, 1))
  opt = optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask),
                    optax.sgd(schedule, momentum=momentum, nesterov=True))
  # Copies: the loop donates its state, and encoder.variables stay usable.
  state = jax.device_put(jax.tree.map(jnp.copy, trainer.new_state(params, opt, model_state=extra)),
                         replicated(mesh))

  def apply(params, model_state, images, train):
    variables = {"params": params, **model_state}
    if train and model_state:
      (logits, _), model_state = model.apply(variables, images, train=True,
                                             mutable=list(model_state))
      return logits, model_state
    return model.apply(variables, images, train=train)[0], model_state

  def step_fn(state, batch, key):
    del key  # the crops and flips are drawn on the host
    images = batch["views"][:, 0].astype(jnp.float32) / 255.0

    def loss_fn(p):
      logits, new_model_state = apply(p, state.model_state, images, True)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, batch["label"]).mean(), new_model_state
    (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = opt.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates),
                         model_state=model_state, opt_state=opt_state), {"loss": loss}

  def eval_step(state, batch):
    logits, _ = apply(state.params, state.model_state,
                      batch["image"].astype(jnp.float32) / 255.0, False)
    k = min(5, num_classes)
    top = jax.lax.top_k(logits, k)[1]
    hit = top == batch["label"][:, None]
    mask = batch["mask"]
    return jnp.stack([jnp.sum(hit[:, 0] & mask), jnp.sum(jnp.any(hit, 1) & mask),
                      jnp.sum(mask)])

  rep = replicated(mesh)
  task = trainer.Task(
      name="fine-tune", state=state,
      step=trainer.compile_step(step_fn, state_shardings=jax.tree.map(lambda _: rep, state),
                                mesh=mesh),
      batches=make_batches, total_steps=steps, steps_per_epoch=steps_per_epoch,
      batch_size=batch_size, key=jax.random.key(seed), mesh=mesh, learning_rate=schedule,
      throughput_name="images_per_sec")
  result = trainer.fit(task, workdir, trainer.Options(log_every=max(1, steps_per_epoch),
                                                      checkpoint_every=max(1, steps_per_epoch)))
  eval_step = jax.jit(eval_step, in_shardings=(rep, batch_sharding(mesh)), out_shardings=rep)
  counts = np.zeros(3)
  for batch in eval_iterator(test_source, batch_size=batch_size, image_size=size,
                             small_image=small_image, num_threads=num_threads):
    batch = {k: batch[k] for k in ("image", "label", "mask")}
    counts += np.asarray(eval_step(result.state, shard_batch(batch, mesh)))
  return {"top1": float(counts[0] / counts[2]), "top5": float(counts[1] / counts[2]),
          "final_train_loss": float(result.losses[-1]) if result.losses else float("nan"),
          "num_train": int(len(train)), "num_test": int(counts[2]),
          "num_classes": int(num_classes), "steps": int(steps)}
