"""The non-WSOL baselines of the seed's Table 4.2.

- Center: the same centred Gaussian map for every image; σ (a fraction of the image side) is
  picked on D_f from `center.sigmas`. It measures how far a data set's object placement alone
  goes.
- FSL-Seg: full supervision, few images: the backbone plus a 1x1-convolution mask head trained
  on D_f's boxes only (pixels inside a box are foreground; per-pixel logistic loss on the
  bilinearly upsampled logits), D_w unused. D_f is split once (seeded) into a training part and
  a selection part (`fsl.holdout`), on which the learning rate is picked.
"""
from __future__ import annotations

import numpy as np

from vision_jax.wsol import evaluate, runs
from vision_jax.wsol import boxes as box_lib
from vision_jax.wsol import model as model_lib
from vision_jax.wsol import step as step_lib
from vision_jax.wsol.data import LocDataset


def _eval_kw(cfg) -> dict:
  return dict(batch_size=cfg.eval.batch_size, interval=cfg.eval.cam_interval,
              convention=cfg.eval.box_convention)


def run_center(cfg, ds: LocDataset, workdir) -> dict:
  from vision_jax.wsol.train import finish
  s, tax = cfg.data.image_size, ds.taxonomy
  targets = lambda split: np.zeros(len(split), np.int64)  # noqa: E731 (class-agnostic)
  trials = []
  for sigma in cfg.center.sigmas:
    loc = evaluate.ConstantLocalizer(evaluate.center_map(s, sigma))
    trials.append((float(sigma), evaluate.evaluate_split(loc, ds.val, targets(ds.val),
                                                         **_eval_kw(cfg))))
  sigma, val = max(trials, key=lambda t: evaluate.selection_score(t[1]))
  strip = lambda m: {k: v for k, v in m.items() if k != "boxacc_curves"}  # noqa: E731
  results = {"method": "center", "level": tax.levels[-1], "dataset": ds.name,
             "search": [{"sigma": g, "val": strip(m)} for g, m in trials],
             "selected": {"sigma": sigma}, "val": strip(val)}
  return finish(cfg, ds, evaluate.ConstantLocalizer(evaluate.center_map(s, sigma)),
                targets(ds.test), workdir, results)


def box_masks(split, image_size: int) -> np.ndarray:
  """uint8 (N, S, S): 1 inside any of an image's boxes."""
  return np.stack([box_lib.boxes_mask(b, (image_size, image_size)) for b in split.boxes]
                  ).astype(np.uint8)


def run_fsl(cfg, ds: LocDataset, encoder, workdir, mesh, allow_config_change) -> dict:
  from vision_jax.wsol.train import backbone_spec, finish
  if not ds.val.has_boxes:
    raise ValueError("FSL-Seg trains on D_f's boxes; this data set's D_f has none")
  s = cfg.data.image_size
  order = np.random.default_rng(cfg.seed).permutation(len(ds.val))
  n_select = max(1, int(round(cfg.fsl.holdout * len(order))))
  fit_rows, select_rows = np.sort(order[n_select:]), np.sort(order[:n_select])
  fit, select = ds.val.subset(fit_rows), ds.val.subset(select_rows)
  net = model_lib.build(backbone_spec(cfg, encoder), 1, mask_head=True)
  params, stats = model_lib.init_variables(net, s, cfg.seed, encoder)
  o = cfg.optim
  settings = step_lib.StepSettings("fsl_seg", 1, optimizer=o.name, momentum=o.momentum,
                                   weight_decay=o.weight_decay, head_lr_mult=o.head_lr_mult)
  zeros = lambda split: np.zeros(len(split), np.int64)  # noqa: E731

  def score(state):
    loc = evaluate.MaskLocalizer(net, runs.variables_of(state), s, mesh, cfg.eval.batch_size)
    return evaluate.evaluate_split(loc, select, zeros(select), **_eval_kw(cfg))
  best, trials = runs.search(
      cfg, net=net, params=params, batch_stats=stats, settings=settings,
      read=runs.MaskReader(fit.images, box_masks(fit, s), cfg.seed), num_train=len(fit),
      batch_size=cfg.fsl.batch_size, num_epochs=cfg.fsl.num_epochs, lrs=cfg.fsl.lr,
      evaluate=score, score=evaluate.selection_score, workdir=workdir, mesh=mesh,
      image_size=s, allow_config_change=allow_config_change)
  strip = lambda m: {k: v for k, v in m.items() if k != "boxacc_curves"}  # noqa: E731
  results = {"method": "fsl_seg", "level": ds.taxonomy.levels[-1], "dataset": ds.name,
             "num_train": len(fit), "init": cfg.init.run or "random",
             "search": [{"lr": t.lr, "val": strip(t.val), "seconds": round(t.seconds, 1)}
                        for t in trials],
             "selected": {"lr": best.lr}, "val": strip(best.val)}
  loc = evaluate.MaskLocalizer(net, runs.variables_of(best.state), s, mesh,
                               cfg.eval.batch_size)
  return finish(cfg, ds, loc, zeros(ds.test), workdir, results)
