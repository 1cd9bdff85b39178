"""SPML experiments: learning-rate × batch-size search, model selection, test and recovery MAP.

  python -m vision_jax.spml --config=configs/spml.py:<loss>,<linear|finetune>[,...] \
      [--workdir=runs/spml_x] [--config.train.lr=1e-3,1e-4 ...]

`train.lr` and `train.batch_size` are tuples: the grid searched. Protocols:
- linear: a linear classifier on fixed features (`train.num_epochs`, 25 in the reference) for
  every (lr, batch size) of the grid; the run with the best validation MAP (at its best epoch)
  wins.
- finetune ("+LinearInit"): features of the (frozen) backbone, BN statistics first estimated on
  the training images; a linear search on them (`linear_init.*`), then end-to-end training
  (`train.num_epochs`, 10 in the reference) of backbone + head from the best linear head and,
  for ROLE, its label estimates, for every (lr, batch size) of `train.*`.
Reported for the selected run: test MAP, training-set MAP of the classifier against the hidden
full labels (label recovery, seed Table 5.2) and, for ROLE, of its label estimates.
With --workdir, completed runs are recorded in `search.json` and the best state in
`best/`; rerunning the same command skips finished runs (fine-tune runs also resume per epoch).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Callable

import jax
import ml_collections
import numpy as np

from ecorep import io, runconfig, trainer
from ecorep.cli import flag_is_true, run_cli
from ecorep.config import parse_cli
from ecorep.errors import ConfigError, InputError, NonFiniteLossError
from ecorep.mesh import check_batch_size, data_mesh, is_main_process
from ecorep.runconfig import ALLOW_FLAG
from vision_jax.spml import data as data_lib
from vision_jax.spml import labels as lab
from vision_jax.spml import losses, protocol, role
from vision_jax.spml import step as step_lib
from vision_jax.spml.metrics import mean_average_precision
from vision_jax.spml.models import Classifier, make_classifier

_log = logging.getLogger("vision_jax.spml")


def load_data(cfg: ml_collections.ConfigDict) -> data_lib.SPMLData:
  d = cfg.data
  num_neg = 1 if cfg.train.loss in losses.USES_OBSERVED_NEGATIVES else 0
  common = dict(seed=d.obs_seed, split_seed=d.split_seed, val_frac=d.val_frac)
  if d.name == "yeast":
    return data_lib.load_yeast(d.path or data_lib.YEAST_FILE, empty=d.empty_rows,
                               num_neg=num_neg, **common)
  if d.name == "digits":
    from vision_jax.spml.composite import load_digits
    g = d.digits
    return load_digits(num_train=g.num_train, num_test=g.num_test, cell=g.cell, grid=g.grid,
                       min_digits=g.min_digits, max_digits=g.max_digits,
                       num_neg=num_neg, mnist_csv=g.mnist_csv or None, **common)
  if d.name == "published":
    if num_neg:
      raise InputError("IU needs observed negatives; the published observed labels have none",
                       field="loss")
    return data_lib.load_published(
        d.path, features=d.features if cfg.protocol == "linear" else None,
        images_dir=d.images_dir or None, image_size=d.image_size, empty=d.empty_rows, **common)
  raise InputError(f"data.name must be yeast, digits or published, got '{d.name}'",
                   field="data.name")


def resolve_k(cfg: ml_collections.ConfigDict, data: data_lib.SPMLData) -> float | None:
  """EPR/ROLE's k: `train.k` = "data" (mean positives per validation row) or a number."""
  if not losses.uses_k(cfg.train.loss):
    return None
  text = str(cfg.train.k).strip()
  if text == "data":
    k = data.k_from_data()
  else:
    try:
      k = float(text)
    except ValueError:
      raise InputError(f"train.k must be 'data' or a number, got '{text}'", field="train.k")
  return lab.check_k(k, data.num_classes)


@dataclasses.dataclass
class Setup:
  """What every run of one experiment shares."""
  cfg: ml_collections.ConfigDict
  mesh: object
  loss_fn: Callable
  mode: str | None     # ROLE estimator storage, None for other losses
  key: jax.Array


def _init_state(setup: Setup, model: Classifier, tx, observed: np.ndarray, lr: float, *,
                image_shape=None, start: dict | None = None) -> step_lib.TrainState:
  """The state one run starts from; `start` = {"params", "model_state", "table"} to continue
  from (fine-tuning from the linear phase). Every run of a search starts from the same draw."""
  k_model, k_est = jax.random.split(jax.random.fold_in(setup.key, 1))
  if start is None:
    params, batch_stats = model.init(k_model, image_shape)
    est, table = step_lib.init_estimator(k_est, observed, setup.mesh, mode=setup.mode,
                                         rank=setup.cfg.role.rank)
    if est:
      params["est"] = est
  else:
    # Copies: the jitted step donates the state, and every run starts from `start`.
    params, batch_stats, table = protocol._copy(
        (start["params"], start["model_state"], start["table"]))
  return step_lib.place_state(step_lib.new_state(params, batch_stats, tx, table, lr),
                              setup.mesh)


def _train_step(setup: Setup, model: Classifier, params_like) -> tuple:
  tx = step_lib.make_optimizer(params_like)
  train_step = step_lib.make_train_step(
      model, setup.loss_fn, tx, mode=setup.mode, lr_mult=setup.cfg.train.lr_mult,
      mesh=setup.mesh, flip=setup.cfg.data.flip and model.backbone is not None)
  return tx, train_step


def recovery_maps(setup: Setup, best: protocol.RunResult, train: data_lib.Split,
                  train_scores: np.ndarray) -> dict:
  out = {"train_map": mean_average_precision(train.labels, train_scores).map}
  if setup.mode is not None:
    est = role.estimated_logits(setup.mode, step_lib.table_of(best.best),
                                best.best.params.get("est"), train.observed)
    out["estimator_map"] = mean_average_precision(train.labels, est).map
  return out


def _linear_phase(setup: Setup, model: Classifier, feats: dict, splits: dict, sec,
                  workdir: str | None):
  train, val = splits["train"], splits["val"]
  fval = dataclasses.replace(val, x=feats["val"])
  keys = ["head"] + (["est"] if setup.mode in ("dense", "lowrank") else [])
  tx, step_fn = _train_step(setup, model, dict.fromkeys(keys))
  template = lambda lr: _init_state(setup, model, tx, train.observed, lr)
  shardings = step_lib.state_shardings(jax.eval_shape(template, sec.lr[0]), setup.mesh)
  arrays = protocol.device_arrays(dataclasses.replace(train, x=feats["train"]), setup.mesh)
  epoch_step = protocol.make_linear_epoch(step_fn, setup.mesh, shardings, arrays)
  predict = step_lib.make_predict(model, setup.mesh, batch_size=8192)

  def run(lr, bs, run_dir):
    return protocol.linear_run(template(lr), epoch_step, predict, len(train), fval,
                               epochs=sec.num_epochs, batch_size=bs, lr=lr, seed=setup.cfg.seed,
                               key=setup.key, mesh=setup.mesh)
  return protocol.search(setup.mesh, run, sec.lr, sec.batch_size, workdir, template)


def validate_config(cfg: ml_collections.ConfigDict, mesh) -> None:
  """Settings checked before any data is read or anything is written."""
  if cfg.protocol not in ("linear", "finetune"):
    raise ConfigError(f"protocol must be linear or finetune, got '{cfg.protocol}'",
                      field="protocol")
  losses.check_loss_name(cfg.train.loss)
  for section in ("train", "linear_init"):
    sec = cfg[section]
    trainer.validate_train_config(sec, mesh)
    if not sec.lr or any(not (isinstance(v, (int, float)) and v > 0) for v in sec.lr):
      raise ConfigError(f"{section}.lr must be a tuple of positive learning rates, got "
                        f"{sec.lr!r}", field=f"{section}.lr")
  check_batch_size(cfg.eval.batch_size, mesh, field="eval.batch_size")
  if losses.needs_estimator(cfg.train.loss) and cfg.role.mode not in role.MODES:
    raise ConfigError(f"role.mode must be one of {role.MODES}, got '{cfg.role.mode}'",
                      field="role.mode")


def train(cfg: ml_collections.ConfigDict, workdir: str | None = None, *, mesh=None,
          data: data_lib.SPMLData | None = None, allow_config_change: bool = False) -> dict:
  """Runs the experiment of `cfg`; returns (and with a workdir writes) its results."""
  t_start = time.perf_counter()
  mesh = data_mesh() if mesh is None else mesh
  validate_config(cfg, mesh)
  data = load_data(cfg) if data is None else data
  loss_name = cfg.train.loss
  if loss_name in losses.USES_OBSERVED_NEGATIVES and not (data.train.observed == -1).any():
    raise InputError(f"loss '{loss_name}' needs observed negatives and the training labels have "
                     "none", field="train.loss")
  k = resolve_k(cfg, data)
  loss_fn = losses.get_loss(loss_name, k=k, ls_coef=cfg.train.ls_coef,
                            epr_weight=cfg.train.epr_weight, me_weight=cfg.train.me_weight)
  mode = cfg.role.mode if losses.needs_estimator(loss_name) else None
  setup = Setup(cfg, mesh, loss_fn, mode, jax.random.key(cfg.seed))
  splits = {"train": data.train, "val": data.val, "test": data.test}
  if cfg.protocol == "linear" and (not isinstance(data.train.x, np.ndarray)
                                   or data.train.x.ndim != 2):
    raise InputError("the linear protocol needs (N, D) features; set data.features",
                     field="data.features")
  if workdir and is_main_process():
    search_file = os.path.join(workdir, "search.json")
    runconfig.claim(workdir, cfg, resume_step=0 if os.path.exists(search_file) else None,
                    allow_changes=allow_config_change)

  if cfg.protocol == "linear":
    model = make_classifier(cfg.model, data.num_classes, data.train.x.shape[1])
    feats = {s: np.asarray(v.x, np.float32) for s, v in splits.items()}
    best, runs = _linear_phase(setup, model, feats, splits, cfg.train, workdir)
    linear_runs = None
  else:
    backbone, init = pretrained_backbone(cfg.model.init) if cfg.model.init else (None, None)
    model = make_classifier(cfg.model, data.num_classes, backbone=backbone)
    best, runs, linear_runs, feats = _finetune(setup, model, splits, workdir, init)

  predict = step_lib.make_predict(model, mesh, cfg.eval.batch_size)
  scores = {}
  for s in ("test", "train"):
    get = (lambda i, s=s: feats[s][i]) if cfg.protocol == "linear" else splits[s].x.batch
    scores[s] = predict(best.best.params, best.best.model_state, get, len(splits[s]))
  test = mean_average_precision(data.test.labels, scores["test"])
  results = {
      "loss": loss_name, "protocol": cfg.protocol, "data": data.name, "k": k,
      "role_mode": mode, "num_train": len(data.train), "num_val": len(data.val),
      "num_test": len(data.test), "num_classes": data.num_classes, "skipped_rows": data.skipped,
      "selected": best.summary(), "val_map": best.val_map, "test_map": test.map,
      "test_classes_excluded": int(test.num_excluded),
      **recovery_maps(setup, best, data.train, scores["train"]),
      "search": runs, "linear_init_search": linear_runs,
      "seconds": round(time.perf_counter() - t_start, 1), "devices": mesh.devices.size}
  if workdir and is_main_process():
    io.write_json(os.path.join(workdir, "results.json"), results)
  return results


def pretrained_backbone(run_dir: str):
  """The encoder run `model.init` names (a pretraining run of this project, or published weights
  imported with vision_jax.port_torch): its module and (params, batch_stats)."""
  from vision_jax.encoder import load_encoder
  encoder = load_encoder(run_dir)
  variables = jax.device_get(encoder.variables)
  return encoder.module, (variables["params"], variables.get("batch_stats", {}))


def _finetune(setup: Setup, model: Classifier, splits: dict, workdir: str | None,
              init: tuple | None = None):
  cfg, mesh = setup.cfg, setup.mesh
  train, val = splits["train"], splits["val"]
  image_shape = train.x.shape
  params0, stats0 = model.init(jax.random.split(jax.random.fold_in(setup.key, 1))[0],
                               image_shape)
  if init is not None:  # a pretrained backbone: its weights and BN statistics as they are
    params0["backbone"], stats0 = init
  else:
    stats0 = protocol.precise_batch_stats(model, params0, stats0, train.x.batch, len(train),
                                          cfg.eval.batch_size, mesh)
  predict_feats = step_lib.make_features(model, mesh, cfg.eval.batch_size)
  feats = {s: predict_feats(params0, stats0, v.x.batch, len(v)) for s, v in splits.items()}
  linear = dataclasses.replace(model, backbone=None)
  sub = os.path.join(workdir, "linear_init") if workdir else None
  lin_best, lin_runs = _linear_phase(setup, linear, feats, splits, cfg.linear_init, sub)
  start = {"params": {**lin_best.best.params, "backbone": params0["backbone"]},
           "model_state": stats0,
           "table": step_lib.table_of(lin_best.best)}

  tx, step_fn = _train_step(setup, model, start["params"])
  template = lambda lr: _init_state(setup, model, tx, train.observed, lr, start=start)
  shardings = step_lib.state_shardings(jax.eval_shape(template, cfg.train.lr[0]), mesh)
  step = trainer.compile_step(step_fn, state_shardings=shardings, mesh=mesh)
  predict = step_lib.make_predict(model, mesh, cfg.eval.batch_size)

  def run(lr, bs, run_dir):
    return protocol.finetune_run(template(lr), step, predict, train, val,
                                 epochs=cfg.train.num_epochs, batch_size=bs, lr=lr,
                                 seed=cfg.seed, mesh=mesh, key=setup.key, workdir=run_dir)
  best, runs = protocol.search(mesh, run, cfg.train.lr, cfg.train.batch_size, workdir, template)
  return best, runs, lin_runs, feats


USAGE = f"""usage: python -m vision_jax.spml --config=configs/spml.py:<loss>,<linear|finetune>[,...]
                          [--workdir=<dir>] [--config.<key>=<value> ...] [{ALLOW_FLAG}]
losses: """ + ", ".join(losses.LOSSES)


def main(argv: list[str]) -> int:
  def body(argv):
    cfg, flags = parse_cli(argv, allowed=("workdir", ALLOW_FLAG[2:]))
    workdir = flags.get("workdir") or os.path.join("runs",
                                                   f"spml_{cfg.train.loss}_{cfg.protocol}")
    r = train(cfg, os.path.abspath(workdir),
              allow_config_change=flag_is_true(flags, ALLOW_FLAG[2:]))
    print(f"{r['loss']} ({r['protocol']}, {r['data']}): test MAP {100 * r['test_map']:.2f}, "
          f"val MAP {100 * r['val_map']:.2f}, training-set MAP {100 * r['train_map']:.2f}"
          + (f", label-estimate MAP {100 * r['estimator_map']:.2f}" if "estimator_map" in r else "")
          + f" (lr {r['selected']['lr']:g}, batch {r['selected']['batch_size']}); "
          f"written to {workdir}")
  return run_cli(argv, body, USAGE, errors=(NonFiniteLossError,),
                 flags=("config", "config.<key>", "workdir", ALLOW_FLAG[2:]),
                 configs=("vision_jax.configs.spml",))
