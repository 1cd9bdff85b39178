"""Geo prior configs: the tokens and every key are documented in sinr_jax/configs/geo_prior.py,
which this file re-exports for `--config=configs/geo_prior.py:<tokens>`."""
from sinr_jax.configs.geo_prior import get_config  # noqa: F401
