"""Orbax checkpointing: atomic, keep-last-N, resume from the newest intact step.

A checkpoint holds the train state (any pytree of arrays, restored with the shardings of a
template) and a small JSON dict for the rest (data-iterator state, epoch, bookkeeping). Orbax
writes each step to a temporary directory and renames it when complete, so a run killed while
saving leaves no checkpoint that a later resume would trust. A complete step can still be
damaged later (a disk error, a copy cut short): restore then names the bad step and file and
falls back to the newest step that reads back; it deletes nothing.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import time
import weakref
from typing import Any

import jax
import orbax.checkpoint as ocp

from ecorep.errors import CheckpointCorruptError, CheckpointMismatchError, InputError

__all__ = ["Checkpointer", "CheckpointCorruptError", "CheckpointMismatchError"]

_log = logging.getLogger(__name__)
UNREADABLE_DIR = "unreadable"  # beside the steps: where a resuming run moves damaged steps


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` with a `state` pytree and an `extra` JSON item."""

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3,
               async_save: bool = True, read_only: bool = False):
    self.directory = os.path.abspath(os.fspath(directory))
    # read_only: a reader (e.g. a model loaded while its run still trains) must not remove the
    # writer's unfinished saves. (Orbax's own read_only option logs warnings on every open.)
    self.read_only = read_only
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=not read_only, cleanup_tmp_directories=not read_only,
        enable_async_checkpointing=async_save and not read_only)
    # Handlers are named up front so that a fresh manager can read metadata of old steps.
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "extra": ocp.JsonCheckpointHandler()})
    # Orbax removes unfinished saves in a background thread; a process that exits before it
    # ends prints "cannot schedule new futures after interpreter shutdown". Wait for it here
    # (it lists one directory), and close managers left open at exit.
    wait_cleanup = getattr(self._manager, "_maybe_await_cleanup_tmp_directory", None)
    if wait_cleanup is not None:
      wait_cleanup()
    self._closed = False
    _OPEN.add(self)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def step_path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def save(self, step: int, state: Any, extra: dict | None = None) -> None:
    """Starts an (asynchronous) save; call `wait()` before reading it back or exiting."""
    if self.read_only:
      raise RuntimeError(f"{self.directory} was opened read-only")
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra or {})), force=True)

  def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores `step` into arrays shaped, typed and sharded like `template`; default: the
    newest step that reads back (see `restore_newest_intact`).

    `template` may hold arrays or `jax.ShapeDtypeStruct`s (with `.sharding`). Raises
    CheckpointMismatchError naming the first leaf whose saved shape differs.
    """
    if step is None:
      state, extra, _ = self.restore_newest_intact(template)
      return state, extra
    return self._restore_step(step, template)

  def restore_as_saved(self, step: int | None = None) -> tuple[dict, dict]:
    """Restores without a template: nested dicts of arrays as saved (for readers that only need
    part of the state, e.g. parameters for inference)."""
    if step is None:
      state, extra, _ = self.restore_newest_intact(None)
      return state, extra
    return self._restore_step(step, None)

  def restore_newest_intact(self, template: Any | None, *,
                            set_aside: bool = False) -> tuple[Any, dict, int]:
    """(state, extra, step) of the newest step that reads back, trying older ones in turn.

    Each unreadable step is logged with the file and reason. With `set_aside` (a run about to
    save new steps here) unreadable steps are moved to `<directory>/unreadable/`, so their
    numbers can be written again; nothing is deleted. A template whose shapes differ from a
    readable step is a CheckpointMismatchError, not a fallback.
    """
    steps = self.all_steps()
    if not steps:
      raise InputError("no checkpoint to restore", file=self.directory)
    failures = []
    for step in reversed(steps):
      try:
        state, extra = self._restore_step(step, template)
      except CheckpointMismatchError:
        raise
      except Exception as e:  # orbax/TensorStore raise many types for damaged files
        reason = _first_line(e)
        failures.append((step, reason))
        _log.warning("checkpoint step %d in %s cannot be read (%s)%s", step, self.directory,
                     reason, "; trying the previous one" if step != steps[0] else "")
        continue
      if failures:
        moved = [self._set_aside(s) for s, _ in failures] if set_aside else []
        _log.warning("resuming from step %d, the newest intact checkpoint in %s%s", step,
                     self.directory,
                     f"; unreadable steps moved to {os.path.dirname(moved[0])}" if moved else
                     "")
      return state, extra, step
    detail = "; ".join(f"step {s}: {r}" for s, r in failures)
    raise CheckpointCorruptError(f"no checkpoint reads back ({detail}); the files are left as "
                                 "they are", file=self.directory)

  def _restore_step(self, step: int, template: Any | None) -> tuple[Any, dict]:
    if template is None:
      args = ocp.args.Composite(state=ocp.args.StandardRestore(),
                                extra=ocp.args.JsonRestore())
    else:
      self._check_shapes(template, step)
      args = ocp.args.Composite(state=ocp.args.StandardRestore(jax.tree.map(_abstract, template)),
                                extra=ocp.args.JsonRestore())
    restored = self._manager.restore(step, args=args)
    return restored["state"], dict(restored["extra"] or {})

  def _set_aside(self, step: int) -> str:
    """Moves an unreadable step out of the manager's sight; returns where it went."""
    target = os.path.join(self.directory, UNREADABLE_DIR, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.move(self.step_path(step), target)
    self._manager.reload()
    return target

  def _check_shapes(self, template: Any, step: int) -> None:
    saved = self._manager.item_metadata(step)["state"]
    saved_leaves = {_path_names(p): leaf
                    for p, leaf in jax.tree_util.tree_flatten_with_path(saved)[0]}
    for path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
      got = saved_leaves.get(_path_names(path))
      name = "/".join(_path_names(path))
      if got is None:
        raise CheckpointMismatchError(
            f"checkpoint step {step} has no array for {name}", file=self.directory, field=name)
      if tuple(got.shape) != tuple(leaf.shape):
        raise CheckpointMismatchError(
            f"checkpoint step {step} holds shape {tuple(got.shape)} for {name}, the model "
            f"expects {tuple(leaf.shape)}: this run directory belongs to a different model",
            file=self.directory, field=name)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    _OPEN.discard(self)
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


_OPEN: "weakref.WeakSet[Checkpointer]" = weakref.WeakSet()


@atexit.register
def _close_open_checkpointers() -> None:
  for ckpt in list(_OPEN):
    try:
      ckpt.close()
    except Exception as e:  # exiting anyway: report, don't raise from atexit
      _log.warning("closing checkpoints in %s at exit failed: %s", ckpt.directory, e)


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def _path_names(path) -> tuple[str, ...]:
  """Key names of a pytree path; dataclass fields and dict keys compare equal (orbax saves both
  as dicts)."""
  names = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        names.append(str(getattr(k, attr)))
        break
    else:
      names.append(str(k))
  return tuple(names)


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
