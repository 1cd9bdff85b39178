"""Geo prior configs (Mac Aodha, Cole & Perona, ICCV 2019; seed chapter 7): a presence-only prior
P(y | longitude, latitude, day of year) with photographer embeddings, trained by
`python -m sinr_jax.train --config=configs/geo_prior.py:<tokens> --workdir=runs/gp`.

  tokens, comma-separated, applied left to right:
    full             the seed's model and settings (the default): date and photographer terms,
                     wrapped inputs, batch 1024, 30 epochs, Adam lr 5e-4 ×0.98 per epoch, D 256,
                     dropout 0.5, at most 100 observations per class re-drawn every epoch
    no_date          Table 7.2 ablations: no day-of-year input
    no_photographer  ... no photographer embeddings (L = L_o_loc only)
    no_wrap          ... raw [λ, φ, t] inputs instead of sin/cos
    cap10 | cap100 (default) | cap1000 | capall    per-class cap of the epoch's fresh draw
    inat2017 | inat2018   read the iNat geo-prior files (data.format=inat): set data.train_file
                     to the split's *_locations.json and data.annotations_file to its JSON
    demo             12 epochs instead of 30 (a shorter CPU run on the simulated world)
    tiny             a few species and steps, for tests
The loss is train.loss = gp (L_GP in sinr_jax.losses, also a loss token of configs/sinr.py).
Without data.train_file the run trains on the simulated world of data.world (every WorldConfig
field, sinr_jax/world/config.py), here with migratory species (data.world.migratory_fraction),
photographer home ranges and taxon preferences switched on.
"""
from __future__ import annotations

import ml_collections

from sinr_jax.configs.sinr import world_config

CAPS = {"cap10": 10, "cap100": 100, "cap1000": 1000, "capall": -1}
TOKENS = ("full", "no_date", "no_photographer", "no_wrap", *CAPS, "inat2017", "inat2018", "demo",
          "tiny")
# The simulated world of the geo prior: the SINR demo world plus seasons and photographer habits.
WORLD = dict(migratory_fraction=0.3, user_groups=8, user_group_concentration=0.3,
             user_travel_log_sigma=0.7)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = "geo_prior"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.format = "csv"          # csv (SINR/iNat CSV or Parquet) | inat (iNat2017/2018 JSON)
  c.data.train_file = ""         # "" = the simulated world
  c.data.annotations_file = ""   # format=inat: the split's annotations JSON
  c.data.world_dir = ""          # where the simulated world lives; "" = <workdir>/world
  c.data.world = world_config(**WORLD)
  c.data.taxa_file = ""          # a taxa.json restricting training to those taxa
  c.data.strict = False          # raise on invalid coordinates instead of dropping them
  c.data.bad_dates = "drop"      # missing/unparseable/future dates: drop (and count) | error
  c.data.max_date = ""           # dates after this are "future"; "" = today
  c.data.cap = 100               # at most this many rows per class, re-drawn every epoch (-1 all)
  c.data.min_photographer_obs = 10  # users with fewer rows share the "other" photographer

  c.model = ml_collections.ConfigDict()
  c.model.family = "geo_prior"   # sinr_jax.train dispatches on this key
  c.model.use_date = True
  c.model.photographers = True
  c.model.wrap = True            # sin/cos of the normalised inputs; False: raw values
  c.model.width = 256            # D
  c.model.depth = 4
  c.model.dropout = 0.5

  c.train = ml_collections.ConfigDict()
  c.train.loss = "gp"            # L_GP (sinr_jax.losses), λ = number of classes
  c.train.batch_size = 1024
  c.train.num_epochs = 30
  c.train.max_steps = -1
  c.train.lr = 5e-4
  c.train.lr_decay = 0.98        # per epoch
  c.train.head_block_size = 256  # classes per block of the fused head (0 = whole matrix)
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.keep_checkpoints = 3

  for token in [t.strip() for t in arg.split(",") if t.strip()]:
    _apply(c, token)
  return c


def _apply(c: ml_collections.ConfigDict, token: str) -> None:
  if token == "full":
    c.name = "geo_prior"
  elif token == "no_date":
    c.model.use_date = False
    c.name += "_no_date"
  elif token == "no_photographer":
    c.model.photographers = False
    c.name += "_no_photographer"
  elif token == "no_wrap":
    c.model.wrap = False
    c.name += "_no_wrap"
  elif token in CAPS:
    c.data.cap = CAPS[token]
  elif token in ("inat2017", "inat2018"):
    year = token[-4:]
    c.data.format = "inat"
    c.data.train_file = f"train{year}_locations.json"
    c.data.annotations_file = f"train{year}.json"
    c.name = f"geo_prior_{token}"
  elif token == "demo":
    c.data.world = world_config(**WORLD)
    c.train.num_epochs = 12
    c.train.log_every = 25
    c.train.checkpoint_every = 200
  elif token == "tiny":
    c.data.world = world_config(**WORLD, num_species=30, h3_res=2, num_observations=6000,
                                num_users=40)
    c.data.min_photographer_obs = 5
    c.model.width = 32
    c.model.depth = 2
    c.train.batch_size = 256
    c.train.num_epochs = 2
    c.train.head_block_size = 8
    c.train.log_every = 5
    c.train.checkpoint_every = 10
  else:
    raise ValueError(f"unknown token '{token}' in configs/geo_prior.py variant; known: "
                     f"{', '.join(TOKENS)}")
