"""BYOL pretraining configs (DeepMind's reference ImageNet setting by default).

  --config=configs/byol.py:<tokens>   the shared tokens of vision_jax/configs/pretrain_common.py
ResNet-50, B 4096, LARS 0.2·B/256 with weight decay 1.5e-6 (BN and biases excluded from decay
and adaptation), 10 warm-up epochs, cosine; projector and predictor 4096→256; EMA
τ 0.996 → 1 (cosine over all steps); asymmetric augmentation: blur p (1.0, 0.1), solarize
p (0, 0.2), jitter (0.4, 0.4, 0.2, 0.1) with p 0.8 (brightness additive, a delta uniform in
[−0.4, 0.4] as tf.image.random_brightness), grayscale p 0.2.
"""
from __future__ import annotations

import ml_collections

from vision_jax.configs.pretrain_common import apply_tokens, base_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = base_config("byol")
  c.objective.base_decay = 0.996
  c.objective.hidden_dim = 4096
  c.objective.out_dim = 256
  c.augment.brightness, c.augment.contrast = 0.4, 0.4
  c.augment.saturation, c.augment.hue = 0.2, 0.1
  c.augment.blur_prob = (1.0, 0.1)
  c.augment.solarize_prob = (0.0, 0.2)
  c.augment.multiplicative_brightness = False
  c.optim.base_lr, c.optim.weight_decay = 0.2, 1.5e-6
  c.train.num_epochs = 300
  return apply_tokens(c, arg, _own)


def _own(c: ml_collections.ConfigDict, token: str) -> bool:
  if token == "tiny":  # small heads for tests, then the shared tiny token
    c.objective.hidden_dim, c.objective.out_dim = 32, 16
  return False
