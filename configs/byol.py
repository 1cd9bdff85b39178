"""BYOL pretraining configs: the tokens and every key are documented in vision_jax/configs/byol.py,
which this file re-exports for `--config=configs/byol.py:<tokens>`."""
from vision_jax.configs.byol import get_config  # noqa: F401
