"""The exceptions of every package: input problems at a boundary, and training faults.

sinr_jax and vision_jax each add one subclass of InputError for their own inputs; everything
else (checkpoints, configs, non-finite losses) is raised as one of the types below.
"""
from __future__ import annotations


class InputError(ValueError):
  """Bad input caught at a boundary. Names the file, row and field it concerns.

  Rows are 1-based line numbers of the file as a text editor shows them (the header is line 1),
  or 0-based indices for in-memory arrays, as the message says.
  """

  def __init__(self, message: str, *, file=None, row=None, field=None):
    self.file = None if file is None else str(file)
    self.row = row
    self.field = field
    where = []
    if self.file is not None:
      where.append(self.file)
    if row is not None:
      where.append(f"row {row}")
    if field is not None:
      where.append(f"field '{field}'")
    self.message = message
    super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ConfigError(InputError):
  """A config that names an unknown key, variant or value."""


class ConfigChangedError(ConfigError):
  """Resuming a run with a setting that changes its trajectory (batch size, learning rate...)."""


class CheckpointMismatchError(InputError):
  """A run directory whose saved model or arrays do not match the model being built."""


class CheckpointCorruptError(InputError):
  """No checkpoint of a run directory could be read back."""


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN/inf loss or gradient; the run stopped.

  `step` is the 1-based number of the bad update (the same numbering as checkpoints and
  metrics: checkpoint N holds the state after N updates); `last_checkpoint` the newest saved
  step, or None when the run saved none yet.
  """

  def __init__(self, message: str, *, step: int | None = None,
               last_checkpoint: int | None = None):
    self.step = step
    self.last_checkpoint = last_checkpoint
    super().__init__(message)
