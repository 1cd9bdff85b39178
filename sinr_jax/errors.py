"""The exceptions sinr_jax raises: input problems are `SinrInputError` (a ValueError); run
directory and training faults are the shared types of ecorep.errors, re-exported here."""
from __future__ import annotations

from ecorep.errors import (CheckpointCorruptError, CheckpointMismatchError, ConfigChangedError,
                           InputError, NonFiniteLossError)

__all__ = ["SinrInputError", "CheckpointCorruptError", "CheckpointMismatchError",
           "ConfigChangedError", "NonFiniteLossError"]


class SinrInputError(InputError):
  """Bad observations, rasters, evaluation files or run directories (names file, row, field)."""
