"""Small runtime shared by sinr_jax and vision_jax: device mesh and sharding, checkpoints,
metric writing, configs and progress reporting."""
from ecorep.errors import ConfigError, InputError

__all__ = ["ConfigError", "InputError"]
