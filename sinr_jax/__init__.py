"""SINR in JAX: presence-only species range models, their losses, training and evaluation.

  import sinr_jax
  model = sinr_jax.load("runs/demo")
  probs = model.predict(lon, lat, taxa=[...])
"""
from sinr_jax.errors import CheckpointMismatchError, NonFiniteLossError, SinrInputError
from sinr_jax.predictor import RangePredictor, load

__all__ = ["CheckpointMismatchError", "NonFiniteLossError", "RangePredictor", "SinrInputError",
           "load"]
