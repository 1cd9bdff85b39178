"""Representation evaluation configs: the variants and every key are documented in
vision_jax/configs/repr_eval.py, which this file re-exports for
`--config=configs/repr_eval.py:<variant>`."""
from vision_jax.configs.repr_eval import get_config  # noqa: F401
