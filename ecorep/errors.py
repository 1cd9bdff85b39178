"""Exception types raised at input boundaries (files, configs, arrays)."""
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
