"""Atomic file and directory writes: a reader sees the old one or the new one, never half of one."""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any, Callable


def _umask() -> int:
  """The process umask. Read from /proc where possible: setting it to read it (the portable
  way) briefly changes it for every thread of the process."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except OSError:
    pass
  umask = os.umask(0)
  os.umask(umask)
  return umask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
  """Calls `write(tmp_path)` on a temporary file in the target's directory, then renames it.

  The file gets the mode a plain `open(path, "w")` would give (0666 less the umask), not
  mkstemp's 0600, so colleagues on a shared machine can read a run.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                             suffix=".tmp")
  os.close(fd)
  try:
    write(tmp)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


@contextlib.contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary directory beside `directory` to fill; on success it replaces `directory`
  (an old one is moved aside first, then deleted), on any error it is removed and the old one kept."""
  target = pathlib.Path(directory).absolute()
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
  aside = None
  try:
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the final directory the usual mode
    yield tmp
    if target.exists():
      aside = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
      os.rename(target, aside / "old")
    os.rename(tmp, target)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    if aside is not None and (aside / "old").exists() and not target.exists():
      os.rename(aside / "old", target)  # the swap failed half-way: put the old directory back
    raise
  finally:
    if aside is not None:
      shutil.rmtree(aside, ignore_errors=True)


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


def write_or_check_model_spec(path: str | os.PathLike, spec: dict, *, check: bool,
                              read: Callable[[], dict], fields: Callable[[dict], dict],
                              error: type[Exception]) -> None:
  """With `check` (a run being resumed), the saved spec (`read()`) must agree on every entry of
  `fields(spec)` (a flat {"section.key": value} view), else `error` names the first field that
  differs; otherwise (a fresh start, even over files a run that never saved a checkpoint left
  behind) `spec` is written."""
  path = os.fspath(path)
  if not check or not os.path.exists(path):
    write_json(path, spec)
    return
  saved = fields(read())
  for key, value in fields(spec).items():
    if saved.get(key) != value:
      raise error(f"this run directory holds a model with {key} = {saved.get(key)!r}, the config "
                  f"asks for {value!r}; use a new --workdir or match the saved model",
                  file=path, field=key)
