"""Weakly supervised object localisation configs (`configs/wsol.py` re-exports this module).

  --config=configs/wsol.py:<tokens>   comma-separated, applied left to right:
    method:  cam (default) | has | adl | cutmix    train a classifier on D_w, localise with CAMs
             cam_agg       train at the leaves, localise with CAMs averaged over the level's nodes
             fsl_seg       a mask head on the backbone, trained on D_f's boxes only (baseline)
             center        a centred Gaussian map, σ picked on D_f (baseline)
    level:   kingdom | phylum | class | order | family | genus | species | label | up<k>
             the training labels c_k(y) (up<k>: k levels above the leaves); default: the leaves
    data:    synthetic (default: real digits on real photographs, vision_jax.wsol.synthetic) |
             inatloc500 (data.metadata_dir, data.images_dir) | cub (data.root) |
             wsoleval (data.metadata_dir = metadata/<CUB|ILSVRC|OpenImages>, data.images_dir)
    size:    demo (default; CPU: 32 px, ResNet-10 base width 8, small stem: 8x8 CAMs) |
             tiny (tests) | full (ResNet-50, 224 px, layer 4 at stride 1: 14x14 CAMs)
`train.lr` is the grid searched; the run with the best D_f localisation (MaxBoxAccV2, or PxAP
without boxes) is the one reported on D_test. WSOL starts from a pretrained encoder run
(`init.run`: a SimCLR/supervised run of this project, or ImageNet ResNet-50 weights converted
by `python -m vision_jax.port_torch`); `init.allow_random=true` allows a random start (tests).
"""
from __future__ import annotations

import ml_collections

METHODS = ("cam", "has", "adl", "cutmix", "cam_agg", "fsl_seg", "center")
LEVEL_TOKENS = ("kingdom", "phylum", "class", "order", "family", "genus", "species", "label")
DATA_TOKENS = ("synthetic", "inatloc500", "cub", "wsoleval")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = "wsol"
  c.seed = 0
  c.method = "cam"
  c.level = "up0"            # a level name of the data's hierarchy, or up<k> (k above leaves)

  c.data = ml_collections.ConfigDict()
  c.data.name = "synthetic"
  c.data.image_size = 32
  c.data.train_resize = 32   # training: resize to this, random image_size crop, flip
  c.data.metadata_dir = ""   # inatloc500 / wsoleval metadata folder
  c.data.images_dir = ""     # the image paths of the metadata are relative to this
  c.data.root = ""           # cub: the CUB_200_2011 folder (or its parent)
  c.data.val_per_class = 5   # cub: D_f images per class held out of the train split
  c.data.size_order = "auto"  # inatloc500 image_sizes.txt: auto | wh | hw (see formats.py)
  c.data.hierarchy = ""      # cub / wsoleval: optional level table or child,parent CSV
  c.data.hierarchy_levels = ()
  c.data.per_class = -1      # D_w images per category at the training level (-1: all)
  c.data.subset_seed = 0
  c.data.synthetic = ml_collections.ConfigDict({
      "train_per_class": 200, "val_per_class": 30, "test_per_class": 70,
      "min_scale": 0.45, "max_scale": 0.85, "background_blur": 1.5, "seed": 0})

  c.init = ml_collections.ConfigDict()
  c.init.run = ""            # an encoder run directory (vision_jax.encoder.load_encoder)
  c.init.step = -1           # its checkpoint (-1: newest)
  c.init.allow_random = False

  c.model = ml_collections.ConfigDict()  # used only without init.run
  c.model.depth = 10
  c.model.width_multiplier = 1
  c.model.base_width = 8
  c.model.small_stem = True
  c.model.dtype = "float32"

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64
  c.train.num_epochs = 16
  c.train.max_steps = -1
  c.train.lr = (0.01, 0.03)  # the grid searched on D_f
  c.train.runs_dir = ""      # where the per-lr runs live ("": the workdir); cam_agg can point
                             # it at a species-level cam experiment to reuse its runs
  c.train.log_every = 20
  c.train.checkpoint_every = 200
  c.train.keep_checkpoints = 1

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"       # sgd (momentum) | adamw
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-4
  c.optim.head_lr_mult = 1.0  # the new head's learning-rate factor (full: 10)

  c.has = ml_collections.ConfigDict({"patch_frac": 0.25, "drop_rate": 0.5})
  c.adl = ml_collections.ConfigDict({"drop_rate": 0.75, "threshold": 0.9})
  c.cutmix = ml_collections.ConfigDict({"beta": 1.0, "prob": 1.0})
  c.center = ml_collections.ConfigDict({"sigmas": (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)})
  c.fsl = ml_collections.ConfigDict({"num_epochs": 30, "batch_size": 32, "lr": (0.01, 0.03),
                                     "holdout": 0.5})

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 128
  c.eval.cam_interval = 0.01
  c.eval.box_convention = "reference"
  c.eval.overlays = 12       # test images drawn in overlays/test.png (0: none)
  c.eval.analyses = True     # the Fig. 4.5 analyses on D_test

  for token in [t.strip() for t in arg.split(",") if t.strip()]:
    _apply(c, token)
  c.name = f"wsol_{c.method}_{c.level}_{c.data.name}"
  return c


def _apply(c: ml_collections.ConfigDict, token: str) -> None:
  if token in METHODS:
    c.method = token
  elif token in LEVEL_TOKENS or (token.startswith("up") and token[2:].isdigit()):
    c.level = token
  elif token in DATA_TOKENS:
    c.data.name = token
  elif token == "demo":
    pass
  elif token == "tiny":
    c.data.image_size = c.data.train_resize = 16
    c.data.synthetic.update({"train_per_class": 4, "val_per_class": 2, "test_per_class": 2})
    c.model.update({"depth": 10, "base_width": 4, "small_stem": True})
    c.train.update({"batch_size": 16, "num_epochs": 1, "max_steps": 2, "lr": (0.05,),
                    "log_every": 1, "checkpoint_every": 2})
    c.fsl.update({"num_epochs": 1, "batch_size": 8, "lr": (0.05,)})
    c.init.allow_random = True
    c.eval.batch_size = 16
    c.eval.overlays = 4
  elif token == "full":
    c.data.image_size, c.data.train_resize = 224, 256
    c.model.update({"depth": 50, "base_width": 64, "small_stem": False})
    c.train.update({"batch_size": 32, "num_epochs": 10, "lr": (1e-4, 1e-3, 1e-2),
                    "log_every": 100, "checkpoint_every": 1000})
    c.optim.head_lr_mult = 10.0
    c.fsl.update({"num_epochs": 30, "batch_size": 32, "lr": (1e-4, 1e-3, 1e-2)})
    c.eval.batch_size = 64
  else:
    raise ValueError(f"unknown token '{token}' (methods {', '.join(METHODS)}; levels "
                     f"{', '.join(LEVEL_TOKENS)}, up<k>; data {', '.join(DATA_TOKENS)}; "
                     "demo, tiny, full)")
