"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
  """Calls `write(tmp_path)` on a temporary file in the target's directory, then renames it."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                             suffix=".tmp")
  os.close(fd)
  try:
    write(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path: str | os.PathLike, text: str) -> None:
  def _write(tmp):
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
  atomic_write(path, _write)


def read_versioned_json(path: str | os.PathLike, fmt: str, *, what: str,
                        error: type[Exception]) -> dict:
  """Reads a JSON file whose "format" must equal `fmt`; a missing, corrupt or foreign file
  raises `error` (an InputError subclass) naming it."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise error(f"not a {what} (no {os.path.basename(path)})", file=path)
  try:
    with open(path, encoding="utf-8") as f:
      spec = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise error(f"corrupt {os.path.basename(path)} ({e})", file=path) from e
  if not isinstance(spec, dict) or spec.get("format") != fmt:
    found = spec.get("format") if isinstance(spec, dict) else None
    raise error(f"unknown run format {found!r}, expected {fmt!r}", file=path, field="format")
  return spec


def write_json(path: str | os.PathLike, obj: Any) -> None:
  write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
