"""Single-positive multi-label (SPML) configs (`configs/spml.py` re-exports this module).

  --config=configs/spml.py:<tokens>   tokens separated by commas, applied left to right:
    loss:     bce | bce_ls | iun | iu | an (default) | an_ls | wan | epr | role | me
              (vision_jax.spml.losses.LOSSES; sets train.loss)
    protocol: linear (default; 25 epochs on fixed features) |
              finetune (+LinearInit: linear phase, then 10 epochs end to end)
    data:     yeast (default for linear) | digits (default for finetune: 2–4 real MNIST digits
              per image) | published (the reference's formatted files in data.path: VOC12, COCO,
              NUS-WIDE, CUB; ResNet-50 at 448 px for finetune)
    role:     dense (default) | sparse | lowrank   (ROLE's label-estimator storage)
    size:     quick (one lr × batch point, for the benchmark table)
              tiny (a few epochs, small images: tests)
The reference's search grid is lr ∈ {1e-2, 1e-3, 1e-4, 1e-5} × batch ∈ {8, 16} (Adam):
train.lr and train.batch_size (and linear_init.*) are tuples, the grid searched.
"""
from __future__ import annotations

import ml_collections

from vision_jax.spml.losses import LOSSES

REFERENCE_LRS = (1e-2, 1e-3, 1e-4, 1e-5)
REFERENCE_BATCH_SIZES = (8, 16)
# Expected positives per image in the reference (used with data=published, train.k=<value>).
REFERENCE_K = {"pascal": 1.5, "coco": 2.9, "nuswide": 1.9, "cub": 31.4}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = "spml"
  c.seed = 0
  c.protocol = "linear"

  c.data = ml_collections.ConfigDict()
  c.data.name = ""              # "" = yeast for linear, digits for finetune
  c.data.path = ""              # yeast CSV ("" = data/yeast/yeast.csv.gz) or published folder
  c.data.features = "imagenet_resnet50"  # published: {train,val}_features_<this>.npy
  c.data.images_dir = ""        # published: image folder ("" = data.path)
  c.data.image_size = 448       # published: images resized to this square (reference: 448)
  c.data.flip = False           # random horizontal flips when fine-tuning (reference: True)
  c.data.val_frac = 0.2         # share of the training pool held out, fully labelled
  c.data.obs_seed = 1200        # seed of the single positives (drawn once per data set)
  c.data.split_seed = 1200      # seed of the train/val split (the reference's)
  c.data.empty_rows = "error"   # rows without positives: error (default) | skip (and count)
  c.data.digits = ml_collections.ConfigDict({
      "num_train": 2000, "num_test": 500, "cell": 16, "grid": 2, "min_digits": 2,
      "max_digits": 4, "mnist_csv": ""})

  c.model = ml_collections.ConfigDict()   # backbone of the finetune protocol
  c.model.depth = 10
  c.model.width_multiplier = 1
  c.model.base_width = 16
  c.model.small_stem = True
  c.model.init = ""             # finetune: an encoder run to start from (a pretraining run, or
                                # ImageNet weights imported by vision_jax.port_torch); "" = random

  c.train = ml_collections.ConfigDict()
  c.train.loss = "an"
  c.train.num_epochs = 25
  c.train.lr = REFERENCE_LRS               # the grid searched
  c.train.batch_size = REFERENCE_BATCH_SIZES
  c.train.lr_mult = 10.0        # ROLE's label estimator learns 10× faster (reference)
  c.train.k = "data"            # EPR/ROLE k: "data" (mean positives per validation row) | number
  c.train.ls_coef = 0.1
  c.train.epr_weight = 1.0
  c.train.me_weight = 1.0

  c.linear_init = ml_collections.ConfigDict()  # the linear phase of finetune
  c.linear_init.num_epochs = 25
  c.linear_init.lr = REFERENCE_LRS
  c.linear_init.batch_size = REFERENCE_BATCH_SIZES

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 256       # prediction batches (every example is evaluated)

  c.role = ml_collections.ConfigDict()
  c.role.mode = "dense"
  c.role.rank = 16               # lowrank mode

  tokens = [t.strip() for t in arg.split(",") if t.strip()]
  for token in tokens:
    _apply(c, token)
  if not c.data.name:
    c.data.name = "yeast" if c.protocol == "linear" else "digits"
  c.name = f"spml_{c.train.loss}_{c.protocol}_{c.data.name}"
  return c


def _apply(c: ml_collections.ConfigDict, token: str) -> None:
  if token in LOSSES:
    c.train.loss = token
  elif token == "linear":
    c.protocol = "linear"
    c.train.num_epochs = 25
  elif token == "finetune":
    c.protocol = "finetune"
    c.train.num_epochs = 10
  elif token in ("yeast", "digits"):
    c.data.name = token
  elif token == "published":
    c.data.name = "published"
    c.data.flip = True
    c.model.update({"depth": 50, "base_width": 64, "small_stem": False})
    c.eval.batch_size = 64
  elif token in ("dense", "sparse", "lowrank"):
    c.role.mode = token
  elif token == "quick":
    c.train.lr = (1e-3,)
    c.train.batch_size = (16,)
    c.linear_init.lr = (1e-3,)
    c.linear_init.batch_size = (16,)
  elif token == "tiny":
    c.train.num_epochs = 2
    c.train.lr = (1e-3,)
    c.train.batch_size = (16,)
    c.eval.batch_size = 64
    c.linear_init.num_epochs = 2
    c.linear_init.lr = (1e-2,)
    c.linear_init.batch_size = (16,)
    c.data.digits.update({"num_train": 160, "num_test": 48, "cell": 8})
    c.model.update({"depth": 10, "base_width": 4, "small_stem": True})
  else:
    raise ValueError(f"unknown token '{token}' (losses {', '.join(LOSSES)}; linear, finetune; "
                     "yeast, digits, published; dense, sparse, lowrank; quick, tiny)")
