"""The exceptions sinr_jax raises. All input problems are `SinrInputError` (a ValueError)."""
from __future__ import annotations

from ecorep.errors import InputError


class SinrInputError(InputError):
  """Bad observations, rasters, evaluation files or run directories (names file, row, field)."""


class CheckpointMismatchError(SinrInputError):
  """A run directory whose saved model does not match the model being built or restored."""


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN/inf loss; the run stopped and the last good checkpoint is kept."""
