"""MoCo v2 pretraining configs (the reference's ImageNet setting by default).

  --config=configs/moco.py:<tokens>   the shared tokens of vision_jax/configs/pretrain_common.py
ResNet-50, B 256, SGD 0.03·B/256, momentum 0.9, weight decay 1e-4 on every parameter (as
PyTorch's SGD), cosine without warm-up, 200 epochs; MLP head 2048→2048→128; τ 0.2, key-encoder
momentum 0.999, queue of 65,536 keys; MoCo v2 augmentation: torchvision's RandomResizedCrop
with scale (0.2, 1), jitter (0.4, 0.4, 0.4, 0.1) with p 0.8 (torchvision's ColorJitter: brightness
multiplicative), grayscale p 0.2, blur p 0.5, flip.
"""
from __future__ import annotations

import ml_collections

from vision_jax.configs.pretrain_common import apply_tokens, base_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = base_config("moco")
  c.objective.temperature = 0.2
  c.objective.momentum = 0.999
  c.objective.queue_size = 65536
  c.objective.hidden_dim = 0   # 0: the backbone's feature dimension
  c.objective.out_dim = 128
  c.data.crop_scale, c.data.crop_sampler = (0.2, 1.0), "torchvision"  # main_moco.py --aug-plus
  for k, v in (("brightness", 0.4), ("contrast", 0.4), ("saturation", 0.4), ("hue", 0.1)):
    c.augment[k] = v
  c.optim.name, c.optim.base_lr, c.optim.weight_decay = "sgd", 0.03, 1e-4
  c.optim.exclude_bn_bias = False
  c.optim.warmup_epochs = 0.0
  c.train.batch_size, c.train.num_epochs = 256, 200
  return apply_tokens(c, arg, _own)


def _own(c: ml_collections.ConfigDict, token: str) -> bool:
  if token == "tiny":  # a short queue for tests, then the shared tiny token
    c.objective.queue_size, c.objective.out_dim = 32, 16
  return False
