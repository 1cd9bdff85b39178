"""Single-positive multi-label learning (Cole et al. 2021): losses, ROLE's label estimator at
scale, observed-label protocols, MAP, data readers and the linear / fine-tune experiments.

  python -m vision_jax.spml --config=configs/spml.py:<loss>,<linear|finetune>

See vision_jax/spml/README.md.
"""
from vision_jax.spml.losses import LOSSES, get_loss
from vision_jax.spml.metrics import mean_average_precision

__all__ = ["LOSSES", "get_loss", "mean_average_precision"]
