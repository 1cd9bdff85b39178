"""Visual representation learning in JAX: ResNet backbones, self-supervised pretraining, linear
evaluation and fine-tuning, single-positive multi-label learning, localisation and hierarchies."""
from vision_jax.errors import VisionInputError

__all__ = ["VisionInputError"]
