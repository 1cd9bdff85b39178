"""Linear evaluation / fine-tuning configs: the tokens and every key are documented in
vision_jax/configs/linear_eval.py, which this file re-exports for
`--config=configs/linear_eval.py:<tokens>`."""
from vision_jax.configs.linear_eval import get_config  # noqa: F401
