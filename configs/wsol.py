"""Weakly supervised object localisation configs: the tokens and every key are documented in
vision_jax/configs/wsol.py, which this file re-exports for `--config=configs/wsol.py:<tokens>`."""
from vision_jax.configs.wsol import get_config  # noqa: F401
