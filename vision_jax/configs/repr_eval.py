"""Representation evaluation protocols (`python -m vision_jax.evaluate_representation`).

  --config=configs/repr_eval.py:<variant>   (default: seed)
    seed   the published settings: features of the 224 centre crop of images resized to short
           side 256; NeWT: LinearSVC, C in {1e-4..1e3} by 3-fold CV, tol 1e-5, <= 1,000
           iterations; fine-grained sets: SGD hinge SVM, alpha in {1e-6..10} by 3-fold CV, tol
           1e-5, <= 3,000 epochs; label budgets 1..100 images per class over 3 seeds, linear
           probe (L-BFGS) and fine-tuning (30 epochs, batch 256)
    demo   CPU-sized: budgets 1..50 over 3 seeds, fine-tuning 8 epochs on budgets 2, 10, 50
    tiny   for tests: small grids, 2 seeds, no fine-tuning
Every key below can be overridden: --config.newt.workers=8 --config.budget.seeds=0,1
"""
from __future__ import annotations

import ml_collections

SVC_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
SGD_ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def get_config(arg: str = "seed") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.features = ml_collections.ConfigDict()
  c.features.batch_size = 256
  c.features.resize_short = 0     # short side before the centre crop; 0: image_size / 0.875
                                  # (256 for the 224 crop, the seed's transform)
  c.features.small_image = -1     # 1 / 0 force a plain resize / resize + crop; -1: the data
                                  # set's own setting (the bundled sets are small images)
  c.features.cache_dir = ""       # "": <out>/features/<encoder>/<data>.npz
  c.features.num_threads = 4      # host threads decoding and cropping
  c.features.overwrite = False    # replace caches written by another encoder or for other data

  c.data = ml_collections.ConfigDict()
  c.data.missing = "error"        # missing/unreadable images: 'error' names them and stops;
                                  # 'count' leaves them out of training and scores them wrong

  c.newt = ml_collections.ConfigDict()
  c.newt.C = SVC_CS
  c.newt.max_iter = 1000
  c.newt.tol = 1e-5
  c.newt.folds = 3
  c.newt.workers = -1             # processes for the tasks; -1: one per CPU core

  c.fgvc = ml_collections.ConfigDict()
  c.fgvc.alpha = SGD_ALPHAS
  c.fgvc.max_iter = 3000
  c.fgvc.tol = 1e-5
  c.fgvc.folds = 3
  c.fgvc.workers = -1             # processes for the CV grid
  c.fgvc.train_splits = ("train",)  # e.g. ("train", "val") for Flowers102's train + val

  c.probe = ml_collections.ConfigDict()  # vision_jax.probe.linear_probe (budget, granularity)
  c.probe.method = "lbfgs"
  c.probe.l2 = 1e-4
  c.probe.max_iter = 500
  c.probe.epochs = 90
  c.probe.batch_size = 1024
  c.probe.lr = -1.0               # sgd only; -1: 0.1 · batch / 256

  c.budget = ml_collections.ConfigDict()
  c.budget.labels_per_class = (1, 2, 5, 10, 20, 50, 100)
  c.budget.seeds = (0, 1, 2)
  c.budget.finetune = True        # also fine-tune (encoders with weights, not features files)
  c.budget.finetune_budgets = ()  # (): the same budgets as the linear probe
  c.budget.finetune_seeds = ()    # (): the same seeds as the linear probe

  c.finetune = ml_collections.ConfigDict()  # vision_jax.probe.fine_tune
  c.finetune.epochs = 30
  c.finetune.batch_size = 256
  c.finetune.lr = -1.0            # -1: 0.1 · batch / 256
  c.finetune.momentum = 0.9
  c.finetune.weight_decay = 0.0
  c.finetune.worker_count = 0

  c.fusion = ml_collections.ConfigDict()
  c.fusion.protocol = "fgvc"      # fgvc | newt | linear (probe.linear_probe top-1)
  c.fusion.groups = ""            # "a+b,a+c": encoders fused together; "": all of them

  c.granularity = ml_collections.ConfigDict()
  c.granularity.levels = ""       # comma-separated level names of the taxonomy; "": all
  c.granularity.taxonomy_levels = ""  # the --taxonomy file's levels, coarsest first ("a,b,c");
                                      # "": its kingdom…species columns (needed for a
                                      # (child, parent) file)

  variant = arg or "seed"
  if variant == "demo":
    c.budget.labels_per_class = (1, 2, 5, 10, 20, 50)
    c.budget.finetune_budgets = (2, 10, 50)
    c.finetune.epochs, c.finetune.batch_size = 8, 64
    c.features.num_threads = 2
  elif variant == "tiny":
    c.features.batch_size, c.features.num_threads = 32, 2
    c.newt.C, c.newt.workers = (0.01, 1.0, 100.0), 1
    c.fgvc.alpha, c.fgvc.max_iter, c.fgvc.workers = (1e-4, 1e-2), 200, 1
    c.probe.max_iter = 30
    c.budget.labels_per_class, c.budget.seeds = (2, 8), (0, 1)
    c.budget.finetune = False
    c.finetune.epochs, c.finetune.batch_size = 1, 16
  elif variant != "seed":
    raise ValueError(f"unknown variant '{variant}' (seed, demo, tiny)")
  return c
