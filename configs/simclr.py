"""SimCLR pretraining configs: the tokens and every key are documented in
vision_jax/configs/simclr.py, which this file re-exports for
`--config=configs/simclr.py:<tokens>`."""
from vision_jax.configs.simclr import get_config  # noqa: F401
