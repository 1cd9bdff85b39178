"""The exceptions vision_jax raises. All input problems are `VisionInputError` (a ValueError)."""
from __future__ import annotations

from ecorep.errors import InputError


class VisionInputError(InputError):
  """Bad images, label files, configs or checkpoints (names the file, row/index and field)."""
