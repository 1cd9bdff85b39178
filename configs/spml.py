"""Single-positive multi-label configs: the tokens and every key are documented in
vision_jax/configs/spml.py, which this file re-exports for `--config=configs/spml.py:<tokens>`."""
from vision_jax.configs.spml import get_config  # noqa: F401
