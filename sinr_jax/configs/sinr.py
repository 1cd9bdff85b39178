"""SINR range-model configs (`configs/sinr.py` is this module; the package carries it so that
`sinr_jax.configs.sinr.get_config("demo")` works wherever the package is installed).

  --config=configs/sinr.py:<tokens>   tokens separated by commas, applied left to right:
    loss:   an_full (default) | an_ssdl | an_slds | me_full | me_ssdl | me_slds
            | gp (L_GP of the geo prior, coordinates only; sinr_jax.losses.LOSSES)
    input:  coords (default) | env | env_coords
    cap:    cap10 | cap100 | cap1000 (default) | capall
    model:  lr (logistic regression: identity encoder)
    size:   demo (the bundled simulated world, CPU-sized)
            tiny (a few species, for tests)
            full (the reference defaults on the published data: set data.train_file, and
                  data.env_raster for env inputs; meant for a GPU/TPU launch)
            small (a user's own file of a few hundred to tens of thousands of presences:
                   batch 128, 100 epochs, no cap)
            single_species (small, and the presence file holds one species: no taxon_id
                   column needed)
With no size token the run uses the reference architecture and optimiser on the default
simulated world, with pos_weight and the learning-rate decay interval scaled to the data
(train.pos_weight = -1 and train.lr_decay_rows = -1: see sinr_jax/sizing.py); demo, tiny and
full pin the reference values (2048; once per epoch).
Your own presence data (sinr_jax/README.md): data.crs, data.lon_column/lat_column/taxon_column,
data.background_file, data.covariates (columns), data.covariate_rasters (GeoTIFFs), data.region.*,
train.random_locations=region|background.
data.world.* holds every field of the simulated world's WorldConfig (sinr_jax/world/config.py):
e.g. --config.data.world.num_species=2000 --config.data.world.num_observations=500000.
"""
from __future__ import annotations

import ml_collections

from sinr_jax.features import INPUT_KINDS as INPUTS
from sinr_jax.losses import LOSSES
from sinr_jax.world.config import WorldConfig

CAPS = {"cap10": 10, "cap100": 100, "cap1000": 1000, "capall": -1}
SIZES = ("demo", "tiny", "full", "small", "single_species")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = "sinr"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.train_file = ""     # published-format CSV/Parquet; "" = the simulated default world
  c.data.env_raster = ""     # (H, W, C) .npy raster for env inputs; "" = the world's env.npy
  c.data.world_dir = ""      # where the simulated world lives; "" = <workdir>/world
  # The simulated world: every WorldConfig field (sinr_jax/world/config.py documents each), so
  # that e.g. data.world.num_observations / min_obs_per_species / num_users can be overridden.
  c.data.world = world_config()
  c.data.taxa_file = ""      # a taxa.json (class index) restricting training to those taxa
  c.data.strict = False      # raise on invalid coordinates instead of dropping and counting them
  c.data.cap = 1000          # max training observations per class (-1 = all), chosen once
  c.data.cap_seed = 9472     # the reference's hard-cap seed
  # A user's own presence data (sinr_jax/README.md, "Your own presence data").
  c.data.crs = ""            # CRS of the files' coordinates, e.g. EPSG:32610; "" = lon/lat
  c.data.lon_column = "longitude"   # x (easting) column when data.crs is projected
  c.data.lat_column = "latitude"    # y (northing)
  c.data.taxon_column = "taxon_id"  # "" = the file holds one species, class id data.taxon_id
  c.data.taxon_id = 0
  c.data.background_file = ""       # background points (lon/lat or x/y columns + covariates)
  c.data.covariates = ""            # comma-separated covariate columns of both files
  c.data.covariate_rasters = ""     # comma-separated GeoTIFFs (any CRS) sampled at the points
  c.data.covariate_crs = ""         # CRS of the GeoTIFFs when their own is user-defined
  c.data.region = ml_collections.ConfigDict()   # study region (sinr_jax/region.py): name one
  c.data.region.polygon = ""        # GeoJSON file of (Multi)Polygons
  c.data.region.bbox = ""           # "lon_min,lat_min,lon_max,lat_max"
  c.data.region.hull_buffer_km = -1.0   # >= 0: convex hull of the presences + this buffer
  c.data.region.hull_points = "presences"   # or "all": the hull of presences and background
  c.data.region.land_only = True    # keep only the region's land (any land in a 1/3° cell)
  c.data.region.pool_size = 100_000     # pseudo-absences drawn once in the region
  c.data.region.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.encoder = "resfc"  # resfc (ResidualFCNet) | linear (logistic regression)
  c.model.input = "coords"   # coords | env | env_coords
  c.model.width = 256
  c.model.depth = 4
  c.model.dropout = 0.5

  c.train = ml_collections.ConfigDict()
  c.train.loss = "an_full"
  c.train.pos_weight = -1.0       # λ; -1 = auto: min(2048, number of species) (sinr_jax/sizing.py)
  # sphere (uniform by area) | box (uniform in lon/lat) | region (uniform over data.region) |
  # background (rows of data.background_file)
  c.train.random_locations = "sphere"
  c.train.batch_size = 2048
  c.train.num_epochs = 10
  c.train.max_steps = -1         # > 0: stop after that many steps (the schedule is per epoch)
  c.train.lr = 5e-4
  c.train.lr_decay = 0.98        # per epoch
  c.train.lr_decay_rows = -1     # an epoch counts at least this many rows; -1 auto (2^17), 0 off
  # Species per block in the fused head of the *_full losses (0 = whole matrix at once). Blocks
  # keep the B×S logits in cache on CPUs; on GPUs larger blocks (or 0) are usually faster.
  c.train.head_block_size = 256
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.keep_checkpoints = 3
  c.train.evals = ()             # evaluator hooks, e.g. ("range_map",) on the simulated world
  c.train.eval_every = 0         # steps between evaluations; 0 = after the last step only

  c.eval = ml_collections.ConfigDict()
  c.eval.h3_res = 3              # truth cells of the simulated world

  for token in [t.strip() for t in arg.split(",") if t.strip()]:
    _apply(c, token)
  return c


def world_config(**fields) -> ml_collections.ConfigDict:
  """data.world: every WorldConfig field at its default, `fields` overriding some."""
  return ml_collections.ConfigDict({**WorldConfig().to_dict(), **fields})


def _apply(c: ml_collections.ConfigDict, token: str) -> None:
  if token in LOSSES:
    c.train.loss = token
  elif token in INPUTS:
    c.model.input = token
  elif token in CAPS:
    c.data.cap = CAPS[token]
  elif token == "lr":
    c.model.encoder = "linear"
    c.model.dropout = 0.0
    c.name = "lr"
  elif token in ("small", "single_species"):
    c.name = token
    c.data.cap = -1
    c.train.batch_size = 128
    c.train.num_epochs = 100
    c.train.log_every = 50
    c.train.checkpoint_every = 5000
    if token == "single_species":
      c.data.taxon_column = ""
  elif token == "demo":
    c.name = "demo"
    _reference_weighting(c)
    c.data.world = world_config()
    c.train.batch_size = 1024
    c.train.num_epochs = 8
    c.train.log_every = 25
    c.train.checkpoint_every = 250
  elif token == "tiny":
    c.name = "tiny"
    c.data.world = world_config(num_species=30, h3_res=2, num_observations=8000)
    c.model.width = 32
    c.model.depth = 2
    c.train.batch_size = 256
    c.train.num_epochs = 2
    c.train.log_every = 10
    c.train.checkpoint_every = 20
    _reference_weighting(c)
  elif token == "full":
    c.name = "full"
    c.data.train_file = "geo_prior_train.csv"
    c.data.cap = 1000
    c.train.batch_size = 2048
    c.train.num_epochs = 10
    c.train.lr = 5e-4
    c.train.lr_decay = 0.98
    c.train.log_every = 512
    c.train.checkpoint_every = 5000
    _reference_weighting(c)
  else:
    raise ValueError(f"unknown token '{token}' in configs/sinr.py variant; known: "
                     f"{', '.join([*LOSSES, *INPUTS, *CAPS, 'lr', *SIZES])}")


def _reference_weighting(c: ml_collections.ConfigDict) -> None:
  """The reference's λ and per-epoch decay (the recorded demo/tiny/full figures use them)."""
  c.train.pos_weight = 2048.0
  c.train.lr_decay_rows = 0
