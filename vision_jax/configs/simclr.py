"""SimCLR pretraining configs.

  --config=configs/simclr.py:<tokens>   comma-separated, applied left to right:
    v1 (default)   2-layer projection head (d→d→128)
    v2             3-layer projection head (d→d→d→128)
    cifar          small stem, 32 px, no blur, colour strength 0.5, τ 0.5, B 512,
                   LARS with √B scaling (0.075·√B), as the reference's CIFAR-10 setting
    demo           (with the shared demo token) mnist_5k digits on a CPU: ResNet-18 base width 16,
                   B 128, 15 epochs, LARS 0.075·√B, τ 0.5, no blur / hue / saturation,
                   torchvision crops of 20–100% (measured better on 28 px digits)
  and the shared tokens of vision_jax/configs/pretrain_common.py (r18, r50, r50x4, small, bf16, demo, tiny).
Defaults are the reference's ImageNet setting: ResNet-50, B 4096, LARS 0.3·B/256, weight decay
1e-6, 10 warm-up epochs of 100, τ 0.1, colour strength 1.0, blur p 0.5, crops from TF's
sample_distorted_bounding_box (area 0.08–1, aspect 3/4–4/3, ≥ 10% covered, 100 tries). The loss
is in the TF reference's form (the sum of the two directions' means = 2× the mean over 2N
anchors; see vision_jax/ssl/simclr.py), so its learning rates transfer unchanged to every
parameter group.
"""
from __future__ import annotations

import ml_collections

from vision_jax.configs.pretrain_common import apply_tokens, base_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = base_config("simclr")
  c.objective.temperature = 0.1
  c.objective.head_layers = 2
  c.objective.hidden_dim = 0   # 0: the backbone's feature dimension
  c.objective.out_dim = 128
  c.data.crop_sampler = "tf"
  return apply_tokens(c, arg, _own)


def _own(c: ml_collections.ConfigDict, token: str) -> bool:
  if token == "v1":
    c.objective.head_layers = 2
  elif token == "v2":
    c.objective.head_layers = 3
  elif token == "cifar":
    c.model.small_stem, c.data.image_size = True, 32
    c.augment.blur_prob = (0.0, 0.0)
    for k, v in (("brightness", 0.4), ("contrast", 0.4), ("saturation", 0.4), ("hue", 0.1)):
      c.augment[k] = v
    c.objective.temperature = 0.5
    c.train.batch_size = 512
    c.optim.base_lr, c.optim.lr_scaling = 0.075, "sqrt"
  elif token == "demo":  # then the shared demo token: MNIST digits on a CPU
    c.augment.blur_prob = (0.0, 0.0)
    c.augment.hue = 0.0  # gray digits: hue and saturation do nothing
    c.augment.saturation = 0.0
    c.objective.temperature = 0.5
    c.train.batch_size = 128
    c.train.num_epochs = 15
    # SimCLR's small-batch rule: peak lr 0.075·√B (≈ 0.85 at B = 128)
    c.optim.base_lr, c.optim.lr_scaling, c.optim.warmup_epochs = 0.075, "sqrt", 1.0
    return False
  else:
    return False
  return True
