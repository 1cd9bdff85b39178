"""SINR range-model configs: the tokens and every key are documented in
sinr_jax/configs/sinr.py, which this file re-exports for `--config=configs/sinr.py:<tokens>`."""
from sinr_jax.configs.sinr import get_config  # noqa: F401
