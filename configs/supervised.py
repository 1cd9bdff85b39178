"""Supervised pretraining configs: the tokens and every key are documented in
vision_jax/configs/supervised.py, which this file re-exports for
`--config=configs/supervised.py:<tokens>`."""
from vision_jax.configs.supervised import get_config  # noqa: F401
