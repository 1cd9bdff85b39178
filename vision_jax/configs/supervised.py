"""Supervised pretraining configs: the baseline for the self-supervised objectives.

  --config=configs/supervised.py:<tokens>   the shared tokens of vision_jax/configs/pretrain_common.py
ResNet-50, B 1024, SGD (Nesterov) 0.1·B/256, momentum 0.9, weight decay 1e-4 (BN and biases
excluded), 5 warm-up epochs of 90, cosine; random resized crop + flip only. The class count
comes from the source's labels unless objective.num_classes is set.
"""
from __future__ import annotations

import ml_collections

from vision_jax.configs.pretrain_common import apply_tokens, base_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = base_config("supervised")
  c.objective.num_classes = 0   # 0: from the source's labels
  c.objective.label_smoothing = 0.0
  c.augment.color_prob, c.augment.grayscale_prob = 0.0, 0.0
  c.augment.blur_prob = (0.0, 0.0)
  c.optim.name, c.optim.base_lr, c.optim.weight_decay = "sgd", 0.1, 1e-4
  c.optim.nesterov = True
  c.optim.warmup_epochs = 5.0
  c.train.batch_size, c.train.num_epochs = 1024, 90
  return apply_tokens(c, arg, lambda c, t: False)
