"""WSOL experiments: train on D_w's image labels (coarsened to a level), pick on D_f, test.

  python -m vision_jax.wsol --config=configs/wsol.py:<method>,<level>[,...] --workdir=runs/x

1. Labels: D_w's leaf labels coarsened to the config's level, c_k(y) (ecorep.taxonomy); CAM-Agg
   trains at the leaves and aggregates at the level instead.
2. Training: one run per learning rate of `train.lr` (vision_jax.wsol.runs) from the encoder
   run of `init.run`, on the shared loop (resumable, checkpoints, metrics.jsonl).
3. Selection: every run's final state localises D_f (fully labelled); the best MaxBoxAccV2 (PxAP
   without boxes) wins. Baselines: Center picks its σ on D_f; FSL-Seg trains on half of D_f's
   boxes and picks on the other half.
4. Test: D_test's MaxBoxAccV2 (IoU 0.3/0.5/0.7), PxAP where masks exist, top-1 at the level,
   the Fig. 4.5 analyses at the IoU-0.5 operating threshold, and overlays/test.png.
Writes <workdir>/results.json. Every setting is checked before any data is read.
"""
from __future__ import annotations

import logging
import os
import time

import jax
import ml_collections
import numpy as np

from ecorep import io, runconfig
from ecorep.cli import flag_is_true, run_cli
from ecorep.config import parse_cli
from ecorep.errors import ConfigError, NonFiniteLossError
from ecorep.mesh import check_batch_size, data_mesh, is_main_process
from ecorep.runconfig import ALLOW_FLAG
from vision_jax.configs.wsol import METHODS
from vision_jax.wsol import baselines, evaluate, formats, overlays, runs, synthetic
from vision_jax.wsol import boxes as box_lib
from vision_jax.wsol import model as model_lib
from vision_jax.wsol import step as step_lib
from vision_jax.wsol.cam import aggregate_kernel
from vision_jax.wsol.data import LocDataset, per_class_subset

_log = logging.getLogger("vision_jax.wsol")


def validate_config(cfg: ml_collections.ConfigDict, mesh) -> None:
  """Settings checked before any data is read or anything is written."""
  if cfg.method not in METHODS:
    raise ConfigError(f"unknown method '{cfg.method}'; known: {', '.join(METHODS)}",
                      field="method")
  if cfg.data.name not in ("synthetic", "inatloc500", "cub", "wsoleval"):
    raise ConfigError(f"unknown data.name '{cfg.data.name}'", field="data.name")
  for section, lrs in (("train", cfg.train.lr), ("fsl", cfg.fsl.lr)):
    if not lrs or any(not (isinstance(v, (int, float)) and v > 0) for v in lrs):
      raise ConfigError(f"{section}.lr must be a tuple of positive learning rates, got {lrs!r}",
                        field=f"{section}.lr")
  for name, bs in (("train.batch_size", cfg.train.batch_size),
                   ("fsl.batch_size", cfg.fsl.batch_size)):
    if not isinstance(bs, int) or bs <= 0:
      raise ConfigError(f"{name} must be a positive integer, got {bs!r}", field=name)
    check_batch_size(bs, mesh, field=name)
  from ecorep.trainer import validate_train_config
  validate_train_config(cfg.train, mesh)
  s = cfg.data.image_size
  if s < 8 or cfg.data.train_resize < s:
    raise ConfigError(f"need data.image_size >= 8 and data.train_resize >= data.image_size, "
                      f"got {s} and {cfg.data.train_resize}", field="data.train_resize")
  box_lib.check_convention(cfg.eval.box_convention)
  if cfg.optim.name not in step_lib.OPTIMIZERS:
    raise ConfigError(f"optim.name must be one of {step_lib.OPTIMIZERS}, got "
                      f"'{cfg.optim.name}'", field="optim.name")
  checks = ((0 < cfg.has.patch_frac <= 1, "has.patch_frac", "lie in (0, 1]"),
            (0 <= cfg.has.drop_rate <= 1, "has.drop_rate", "lie in [0, 1]"),
            (0 <= cfg.adl.drop_rate <= 1, "adl.drop_rate", "lie in [0, 1]"),
            (0 <= cfg.adl.threshold <= 1, "adl.threshold", "lie in [0, 1]"),
            (cfg.cutmix.beta > 0, "cutmix.beta", "be positive"),
            (0 <= cfg.cutmix.prob <= 1, "cutmix.prob", "lie in [0, 1]"),
            (0 < cfg.fsl.holdout < 1, "fsl.holdout", "lie in (0, 1)"),
            (cfg.fsl.num_epochs > 0, "fsl.num_epochs", "be positive"),
            (len(cfg.center.sigmas) > 0 and min(cfg.center.sigmas) > 0, "center.sigmas",
             "be positive fractions of the image side"),
            (0 < cfg.eval.cam_interval < 1, "eval.cam_interval", "lie in (0, 1)"),
            (cfg.eval.batch_size > 0, "eval.batch_size", "be positive"),
            (cfg.data.per_class == -1 or cfg.data.per_class >= 1, "data.per_class",
             "be -1 (all) or >= 1"))
  for ok, key, what in checks:
    if not ok:
      raise ConfigError(f"{key} must {what}", field=key)
  if not cfg.init.run and not cfg.init.allow_random and cfg.method != "center":
    raise ConfigError(
        "init.run is empty: WSOL starts from a pretrained encoder run (a SimCLR/supervised run "
        "of this project, or ImageNet ResNet-50 weights converted by python -m "
        "vision_jax.port_torch); set init.allow_random=true to start from random weights "
        "(tests)", field="init.run")


def load_dataset(cfg: ml_collections.ConfigDict) -> LocDataset:
  d = cfg.data
  if d.name == "synthetic":
    return synthetic.make_dataset(synthetic.SyntheticConfig(image_size=d.image_size,
                                                            **d.synthetic.to_dict()))
  common = dict(image_size=d.image_size, train_resize=d.train_resize)
  if d.name == "inatloc500":
    return formats.read_inatloc500(d.metadata_dir, d.images_dir, size_order=d.size_order,
                                   **common)
  if d.name == "cub":
    return formats.read_cub(d.root, val_per_class=d.val_per_class, seed=cfg.seed,
                            hierarchy=d.hierarchy, hierarchy_levels=d.hierarchy_levels, **common)
  return formats.read_wsoleval(d.metadata_dir, d.images_dir, hierarchy=d.hierarchy,
                               hierarchy_levels=d.hierarchy_levels, **common)


def load_init(cfg: ml_collections.ConfigDict):
  """The encoder the backbone starts from (None: random)."""
  if not cfg.init.run:
    return None
  from vision_jax.encoder import load_encoder
  return load_encoder(cfg.init.run, None if cfg.init.step < 0 else cfg.init.step)


def level_name(taxonomy, level: str) -> str:
  """The hierarchy level a config token names: a level's name, or up<k> (k levels above the
  leaves). An unknown level, or one deeper than the hierarchy, is a TaxonomyError."""
  key = int(level[2:]) if level.startswith("up") and level[2:].isdigit() else level
  return taxonomy.levels[taxonomy.level(key)]


def backbone_spec(cfg, encoder) -> dict:
  if encoder is not None:
    return model_lib.backbone_spec(model_lib.WsolNet(encoder.module, 1))
  return cfg.model.to_dict()


def _overlay_rows(targets: np.ndarray, count: int) -> np.ndarray:
  """Up to `count` test rows, cycling over the target classes (one of each first)."""
  order = [np.flatnonzero(targets == c) for c in np.unique(targets)]
  rows = []
  for k in range(max(len(o) for o in order)):
    rows += [o[k] for o in order if k < len(o)]
  return np.asarray(rows[:count], np.int64)


def finish(cfg, ds: LocDataset, localizer, targets: np.ndarray, workdir: str | None,
           results: dict) -> dict:
  """Test metrics, analyses and overlays of the selected localiser into `results`."""
  e = cfg.eval
  kw = dict(batch_size=e.batch_size, convention=e.box_convention)
  test = evaluate.evaluate_split(localizer, ds.test, targets, interval=e.cam_interval, **kw)
  results["test"] = test
  tau = test.get("best_tau@50")
  if tau is not None and e.analyses:
    results["analyses"] = evaluate.analyze_split(localizer, ds.test, targets, tau, **kw)
  if workdir and e.overlays > 0 and tau is not None and is_main_process():
    level = results["level"]
    nodes = ds.taxonomy.coarsen(ds.test.labels, level)
    rows = _overlay_rows(nodes, e.overlays)
    examples = evaluate.overlay_examples(localizer, ds.test, targets, rows, tau,
                                         e.box_convention)
    titles = [ds.taxonomy.names[ds.taxonomy.level(level)][nodes[i]] for i in rows]
    results["overlays"] = overlays.write_grid(os.path.join(workdir, "overlays", "test.png"),
                                              examples, titles)
  return results


def run_wsol(cfg, ds: LocDataset, encoder, workdir, mesh, allow_config_change) -> dict:
  tax = ds.taxonomy
  eval_level = level_name(tax, cfg.level)
  agg = cfg.method == "cam_agg"
  train_level = tax.levels[-1] if agg else eval_level
  num_classes = tax.num_classes(train_level)
  if num_classes < 2:
    raise ConfigError(f"level '{train_level}' has one class: there is nothing to "
                      "classify (method cam_agg localises there with a leaf-level model)",
                      field="level")
  y = tax.coarsen(ds.train.labels, train_level)
  rows = (per_class_subset(y, cfg.data.per_class, cfg.data.subset_seed)
          if cfg.data.per_class > 0 else np.arange(len(y)))
  net = model_lib.build(backbone_spec(cfg, encoder), num_classes)
  params, stats = model_lib.init_variables(net, cfg.data.image_size, cfg.seed, encoder)
  o, s = cfg.optim, cfg.data.image_size
  settings = step_lib.StepSettings(
      method="cam" if agg else cfg.method, total_steps=1, optimizer=o.name,
      momentum=o.momentum, weight_decay=o.weight_decay, head_lr_mult=o.head_lr_mult,
      has_patch=max(1, round(cfg.has.patch_frac * s)), has_drop_rate=cfg.has.drop_rate,
      cutmix_beta=cfg.cutmix.beta, cutmix_prob=cfg.cutmix.prob,
      adl_drop_rate=cfg.adl.drop_rate, adl_threshold=cfg.adl.threshold)
  val_targets = tax.coarsen(ds.val.labels, eval_level)
  groups = tax.index[:, tax.level(eval_level)] if agg else None

  def localizer(state):
    kernel = np.asarray(state.params["head"]["kernel"])
    if agg:
      kernel = aggregate_kernel(kernel, tax, eval_level)
    return evaluate.CamLocalizer(net, runs.variables_of(state), kernel, s, mesh,
                                 logit_groups=groups, batch_size=cfg.eval.batch_size)

  def score_val(state):
    return evaluate.evaluate_split(localizer(state), ds.val, val_targets,
                                   batch_size=cfg.eval.batch_size,
                                   interval=cfg.eval.cam_interval,
                                   convention=cfg.eval.box_convention)
  # The training runs' own config: what they train (CAM-Agg trains a leaf-level CAM model, so
  # `train.runs_dir` may point at an existing one's runs and reuse them).
  run_cfg = ml_collections.ConfigDict(cfg.to_dict())
  run_cfg.method, run_cfg.level, run_cfg.train.runs_dir = settings.method, train_level, ""
  best, trials = runs.search(
      run_cfg, net=net, params=params, batch_stats=stats, settings=settings,
      read=runs.ClassReader(ds.train.subset(rows).images, y[rows], cfg.seed),
      num_train=len(rows), batch_size=cfg.train.batch_size, num_epochs=cfg.train.num_epochs,
      lrs=cfg.train.lr, evaluate=score_val, score=evaluate.selection_score,
      workdir=cfg.train.runs_dir or workdir, mesh=mesh, image_size=s,
      allow_config_change=allow_config_change)
  results = _summary(cfg, ds, eval_level, train_level, trials, best, num_train=len(rows))
  return finish(cfg, ds, localizer(best.state), tax.coarsen(ds.test.labels, eval_level),
                workdir, results)


def _summary(cfg, ds, eval_level, train_level, trials, best, *, num_train) -> dict:
  tax = ds.taxonomy
  strip = lambda m: {k: v for k, v in m.items() if k != "boxacc_curves"}  # noqa: E731
  return {"method": cfg.method, "level": eval_level,
          "train_level": train_level, "num_classes": tax.num_classes(train_level),
          "dataset": ds.name, "num_train": int(num_train), "per_class": cfg.data.per_class,
          "init": cfg.init.run or "random",
          "search": [{"lr": t.lr, "val": strip(t.val), "seconds": round(t.seconds, 1)}
                     for t in trials],
          "selected": {"lr": best.lr}, "val": strip(best.val)}


def run(cfg: ml_collections.ConfigDict, workdir: str | None = None, *,
        dataset: LocDataset | None = None, encoder=None, mesh=None,
        allow_config_change: bool = False) -> dict:
  """Runs the experiment of `cfg`; returns (and with a workdir writes) its results."""
  t0 = time.perf_counter()
  mesh = data_mesh() if mesh is None else mesh
  validate_config(cfg, mesh)
  if encoder is None and cfg.method != "center":
    encoder = load_init(cfg)
  ds = load_dataset(cfg) if dataset is None else dataset
  level_name(ds.taxonomy, cfg.level)   # an unknown or too deep level fails before writing
  if workdir and is_main_process():
    workdir = os.path.abspath(workdir)
    done = os.path.exists(os.path.join(workdir, "results.json"))
    runconfig.claim(workdir, cfg, resume_step=0 if done else None,
                    allow_changes=allow_config_change,
                    ignore=runconfig.BOOKKEEPING_KEYS + ("train.lr", "fsl.lr", "center.sigmas"))
  if cfg.method == "center":
    results = baselines.run_center(cfg, ds, workdir)
  elif cfg.method == "fsl_seg":
    results = baselines.run_fsl(cfg, ds, encoder, workdir, mesh, allow_config_change)
  else:
    results = run_wsol(cfg, ds, encoder, workdir, mesh, allow_config_change)
  results.update(seconds=round(time.perf_counter() - t0, 1), devices=mesh.devices.size,
                 data_info=ds.info)
  if workdir and is_main_process():
    io.write_json(os.path.join(workdir, "results.json"), results)
  return results


USAGE = f"""usage: python -m vision_jax.wsol --config=configs/wsol.py:<method>,<level>[,...]
                          [--workdir=<dir>] [--config.<key>=<value> ...] [{ALLOW_FLAG}]"""


def describe(r: dict) -> str:
  t = r["test"]
  parts = [f"{r['method']} at {r['level']} ({r['dataset']}): test MaxBoxAccV2 "
           f"{100 * t['maxboxacc']:.1f} (IoU .3/.5/.7: {100 * t['boxacc@30']:.1f}/"
           f"{100 * t['boxacc@50']:.1f}/{100 * t['boxacc@70']:.1f})" if "maxboxacc" in t
           else f"{r['method']} at {r['level']} ({r['dataset']}):"]
  if "pxap" in t:
    parts.append(f"PxAP {100 * t['pxap']:.1f}")
  if "top1" in t:
    parts.append(f"top-1 {100 * t['top1']:.1f}")
  parts.append("selected " + ", ".join(f"{k} {v:g}" for k, v in r["selected"].items()))
  return ", ".join(parts)


def main(argv: list[str]) -> int:
  def body(argv):
    cfg, flags = parse_cli(argv, allowed=("workdir", ALLOW_FLAG[2:]))
    jax.devices()  # start the backend before the first timing
    workdir = os.path.abspath(flags.get("workdir") or os.path.join("runs", cfg.name))
    r = run(cfg, workdir, allow_config_change=flag_is_true(flags, ALLOW_FLAG[2:]))
    print(describe(r) + f"; written to {workdir}")
  return run_cli(argv, body, USAGE, errors=(NonFiniteLossError,),
                 flags=("config", "config.<key>", "workdir", ALLOW_FLAG[2:]),
                 configs=("vision_jax.configs.wsol",))
