"""The config layout every pretraining family shares (configs/{simclr,byol,moco,supervised}.py).

  data        dataset ('folder' or 'array_record' with root, or a bundled set), split, image_size,
              worker_count, crop_scale and crop_sampler (the host random resized crop)
  model       ResNet: depth, width_multiplier, small_stem, base_width, dtype (float32|bfloat16)
  objective   the objective's own fields (e.g. temperature)
  augment     vision_jax.augment.Policy fields
  optim       vision_jax.optim: name, base_lr, lr_scaling, weight_decay, momentum, ...
  train       loss (the objective: vision_jax.ssl.OBJECTIVES), batch_size, num_epochs,
              max_steps (> 0: at most that many steps; the schedules span the run's length),
              log/checkpoint cadence

Tokens shared by all families (comma-separated after the colon, applied left to right):
  r18 | r50 | r50x4   backbone
  small               small-image stem, 32 px crops (CIFAR-like data)
  bf16                bfloat16 compute (GPU/TPU)
  demo                ResNet-18 (base width 16), standard stem, mnist_5k train split, 28 px,
                      torchvision crops of 20–100% of a digit, CPU-sized
  tiny                ResNet-10 (base width 4), 16 px, 8-image batches, 4 steps: for tests
"""
from __future__ import annotations

import ml_collections


def base_config(method: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = method
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  # 'folder' (data.root = <root>/<class>/<images>), 'array_record' (data.root = a file or a
  # folder of *.array_record shards), or a bundled set
  c.data.dataset = "folder"
  c.data.root = ""
  c.data.split = "train"
  c.data.image_size = 224
  c.data.crop_scale = (0.08, 1.0)  # area range of the host random resized crop
  # Its box sampler (vision_jax.augment.CROP_SAMPLERS): 'torchvision' (RandomResizedCrop: area
  # uniform, aspect log-uniform) or 'tf' (sample_distorted_bounding_box as SimCLR: height
  # uniform, aspect uniform, ≥ 10% of the image, 100 tries).
  c.data.crop_sampler = "torchvision"
  c.data.worker_count = 0     # grain worker processes for decoding and cropping (0: threads)

  c.model = ml_collections.ConfigDict()
  c.model.depth = 50
  c.model.width_multiplier = 1
  c.model.small_stem = False
  c.model.base_width = 64
  c.model.dtype = "float32"

  c.objective = ml_collections.ConfigDict()

  c.augment = ml_collections.ConfigDict()
  c.augment.flip = True
  c.augment.brightness = 0.8
  c.augment.contrast = 0.8
  c.augment.saturation = 0.8
  c.augment.hue = 0.2
  c.augment.color_prob = 0.8
  c.augment.grayscale_prob = 0.2
  c.augment.blur_prob = (0.5, 0.5)
  c.augment.solarize_prob = (0.0, 0.0)
  c.augment.multiplicative_brightness = True  # False: additive delta ∈ [−b, b] (SimCLR v1, BYOL)

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "lars"
  c.optim.base_lr = 0.3
  c.optim.lr_scaling = "linear"  # peak = base_lr·B/256 | 'sqrt': base_lr·√B | 'none'
  c.optim.weight_decay = 1e-6
  c.optim.momentum = 0.9
  c.optim.nesterov = False
  c.optim.trust_coefficient = 1e-3
  c.optim.exclude_bn_bias = True
  c.optim.warmup_epochs = 10.0
  c.optim.warmup_steps = -1      # >= 0 overrides warmup_epochs

  c.train = ml_collections.ConfigDict()
  c.train.loss = method          # the objective: simclr | byol | moco | supervised
  c.train.batch_size = 4096
  c.train.num_epochs = 100
  c.train.max_steps = -1         # > 0: the run stops there (and its schedules end there)
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.keep_checkpoints = 3
  return c


def apply_common_token(c: ml_collections.ConfigDict, token: str) -> bool:
  """Applies a shared token; False if `token` is not one."""
  if token in ("r18", "r50"):
    c.model.depth = int(token[1:])
  elif token == "r50x4":
    c.model.depth, c.model.width_multiplier = 50, 4
  elif token == "small":
    c.model.small_stem = True
    c.data.image_size = 32
  elif token == "bf16":
    c.model.dtype = "bfloat16"
  elif token == "demo":
    c.data.dataset, c.data.split, c.data.image_size = "mnist_5k", "train", 28
    c.data.crop_scale = (0.2, 1.0)  # an 8% crop of a 28 px digit is mostly background
    # torchvision's sampler (uniform area) even for SimCLR: TF's favours small boxes, and the
    # 300-step digit run's linear probe measured 0.801/0.801 with it vs 0.817/0.828 (seeds 0/1).
    c.data.crop_sampler = "torchvision"
    # The standard stem (stride 4 before stage 1) is ~5x cheaper than the small stem at 28 px
    # and still leaves 7x7 maps in stage 1.
    c.model.depth, c.model.base_width, c.model.small_stem = 18, 16, False
    c.train.log_every, c.train.checkpoint_every = 25, 100
  elif token == "tiny":
    c.data.image_size = 16
    c.model.depth, c.model.base_width, c.model.small_stem = 10, 4, True
    c.train.batch_size, c.train.max_steps = 8, 4
    c.train.log_every, c.train.checkpoint_every = 2, 2
    c.optim.warmup_steps = 1
  else:
    return False
  return True


def apply_tokens(c: ml_collections.ConfigDict, arg: str, own) -> ml_collections.ConfigDict:
  """Applies comma-separated tokens: `own(c, token)` first, then the shared ones."""
  for token in [t.strip() for t in (arg or "").split(",") if t.strip()]:
    if not (own(c, token) or apply_common_token(c, token)):
      raise ValueError(f"unknown variant token '{token}'")
  return c
