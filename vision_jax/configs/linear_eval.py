"""Linear evaluation / fine-tuning of a pretrained encoder (`python -m vision_jax.linear_eval`).

  --config=configs/linear_eval.py:<variant>   (default: simclr)
    simclr   SimCLR's protocol: frozen features, Nesterov SGD, 90 epochs, lr 0.1·B/256, B 4096;
             fine-tuning 30 epochs, B 256 (run on an accelerator)
    lbfgs    full-batch L-BFGS with a small L2 (exact optimum; fast for <= ~100k examples)
    demo     CPU-sized: SGD 60 epochs, B 256; fine-tuning 3 epochs
    tiny     for tests: a few epochs on small batches
Label-fraction curves: --label_fraction=0.01 / 0.1 or --labels_per_class=N on the command line.
"""
from __future__ import annotations

import ml_collections


def get_config(arg: str = "simclr") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.feature_batch_size = 256     # frozen-feature extraction (padded to the device count)
  c.cache_features = True        # <run>/features/<dataset>_<split>_step<N>.npz
  c.data = ml_collections.ConfigDict()
  c.data.tfds_data_dir = ""      # for --dataset=tfds:<name>
  c.data.tfds_train_split = "train"
  c.data.tfds_test_split = "test"
  c.data.small_image = -1        # 1 / 0 force the eval transform; -1: from the encoder's stem

  c.probe = ml_collections.ConfigDict()
  c.probe.method = "sgd"         # sgd | lbfgs
  c.probe.epochs = 90
  c.probe.batch_size = 4096
  c.probe.lr = -1.0              # -1: 0.1 · batch_size / 256
  c.probe.momentum = 0.9
  c.probe.l2 = 0.0
  c.probe.max_iter = 500         # lbfgs only

  c.finetune = ml_collections.ConfigDict()
  c.finetune.epochs = 30
  c.finetune.batch_size = 256
  c.finetune.lr = -1.0           # -1: 0.1 · batch_size / 256
  c.finetune.momentum = 0.9
  c.finetune.weight_decay = 0.0
  c.finetune.worker_count = 0

  variant = arg or "simclr"
  if variant == "lbfgs":
    c.probe.method = "lbfgs"
    c.probe.l2 = 1e-4
  elif variant == "demo":
    c.probe.epochs, c.probe.batch_size = 60, 256
    c.finetune.epochs, c.finetune.batch_size = 3, 128
  elif variant == "tiny":
    c.feature_batch_size = 64
    c.probe.epochs, c.probe.batch_size = 5, 64
    c.finetune.epochs, c.finetune.batch_size = 1, 64
  elif variant != "simclr":
    raise ValueError(f"unknown variant '{variant}' (simclr, lbfgs, demo, tiny)")
  return c
