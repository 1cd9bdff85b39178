"""MoCo v2 pretraining configs: the tokens and every key are documented in
vision_jax/configs/moco.py, which this file re-exports for `--config=configs/moco.py:<tokens>`."""
from vision_jax.configs.moco import get_config  # noqa: F401
