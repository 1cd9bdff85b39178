"""Linear evaluation and fine-tuning of a frozen (or unfrozen) encoder.

`linear_probe` is multinomial logistic regression on standardised features, jitted: Nesterov SGD
with a cosine schedule (SimCLR's protocol: lr 0.1·B/256, momentum 0.9, mini-batches, scales to
millions of rows) or full-batch L-BFGS (exact optimum of mean cross-entropy + l2/2·‖W‖², the
objective of scikit-learn's LogisticRegression with C = 1/(l2·N); the bias is not penalised).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ecorep import trainer
from ecorep.io import atomic_write
from ecorep.mesh import batch_sharding, data_mesh, replicated, shard_batch
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

def _digest(variables: Any) -> str:
  h = hashlib.blake2b(digest_size=16)
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return h.hexdigest()


def extract_features(encoder, source_or_images, batch_size: int = 256,
                     cache_path: str | os.PathLike | None = None, *, dataset: str = "",
                     run_dir: str | None = None, small_image: bool | None = None,
                     num_threads: int = 2) -> np.ndarray:
  """Frozen features (N, D) float32, rows in source order.

  Images go through the evaluation transform (resize short side to S/0.875 + centre crop S, or a
  plain resize to S for small images; default: small when the encoder has the small stem). With
  `cache_path` the features are stored in an npz keyed by the run directory, checkpoint step,
  dataset name, example count, transform and a digest of the encoder's variables; a cache whose
  key differs is recomputed and overwritten. Every process computes all the features.
  """
  source = source_or_images
  if isinstance(source_or_images, np.ndarray):
    source = ArraySource(source_or_images, np.zeros(len(source_or_images), np.int32))
  if small_image is None:
    small_image = bool(getattr(encoder.module, "small_stem", False))
  size = int(encoder.image_size)
  run_dir = os.path.abspath(run_dir) if run_dir else getattr(encoder, "run_dir", None)
  key = json.dumps({"run_dir": run_dir,
                    "step": getattr(encoder, "step", None), "dataset": dataset,
                    "num_examples": len(source), "image_size": size,
                    "small_image": small_image, "variables": _digest(encoder.variables)},
                   sort_keys=True)
  if cache_path is not None and os.path.isfile(cache_path):
    try:
      with np.load(cache_path) as cached:
        if str(cached["key"]) == key:
          return cached["features"]
    except (OSError, ValueError, KeyError):  # unreadable cache: recompute
      pass
  chunks = []
  for batch in eval_iterator(source, batch_size=batch_size, image_size=size,
                             small_image=small_image, num_threads=num_threads, process_index=0,
                             process_count=1):
    feats = np.asarray(encoder.features(batch["image"], batch_size=batch_size), np.float32)
    chunks.append(feats[batch["mask"]])
  features = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
  if cache_path is not None:
    def write(tmp):
      with open(tmp, "wb") as f:
        np.savez(f, features=features, key=np.asarray(key))
    atomic_write(cache_path, write)
  return features


# ---------------------------------------------------------------------------------- linear probe

def _cross_entropy(params, x, y):
  logits = x @ params["w"] + params["b"]
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _fit_lbfgs(x, y, num_classes, l2, max_iter, tol):
  def loss(p):
    return _cross_entropy(p, x, y) + 0.5 * l2 * jnp.sum(p["w"] ** 2)
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
                 num_classes: int | None = None, seed: int = 0) -> dict[str, Any]:
  """Trains softmax regression on (a label subset of) the training features; returns top1, top5
  (fractions) on test and train, the sizes, and the final training objective."""
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
    fit = jax.jit(_fit_lbfgs, static_argnums=(2, 4))
    params = fit(x, y, num_classes, l2, max_iter, tol)
  else:
    batch_size = min(batch_size, len(x))
    lr = 0.1 * batch_size / 256 if lr is None else lr
    fit = jax.jit(_fit_sgd, static_argnums=(3, 7, 8))
    params = fit(x, y, jax.random.key(seed), num_classes, l2, lr, momentum, epochs, batch_size)
  w, b = np.asarray(params["w"]), np.asarray(params["b"])
  train_logits, test_logits = x @ w + b, x_test @ w + b
  objective = float(_cross_entropy(params, x, y) + 0.5 * l2 * np.sum(w ** 2))
  return {"top1": _topk(test_logits, test_labels, 1), "top5": _topk(test_logits, test_labels, 5),
          "train_top1": _topk(train_logits, y, 1), "train_objective": objective,
          "num_train": int(len(y)), "num_test": int(len(test_labels)),
          "num_classes": int(num_classes), "method": method}


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
