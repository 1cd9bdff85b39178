"""Orbax checkpointing: atomic, keep-last-N, resume from the newest.

A checkpoint holds the train state (any pytree of arrays, restored with the shardings of a
template) and a small JSON dict for the rest (data-iterator state, epoch, bookkeeping). Orbax
writes each step to a temporary directory and renames it when complete, so a run killed while
saving leaves no checkpoint that a later resume would trust.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from ecorep.errors import InputError

_log = logging.getLogger(__name__)


class CheckpointMismatchError(InputError):
  """A checkpoint whose arrays do not have the shapes of the model being restored."""


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` with a `state` pytree and an `extra` JSON item."""

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
        enable_async_checkpointing=async_save)
    # Handlers are named up front so that a fresh manager can read metadata of old steps.
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "extra": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, extra: dict | None = None) -> None:
    """Starts an (asynchronous) save; call `wait()` before reading it back or exiting."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra or {})), force=True)

  def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores `step` (default: newest) into arrays shaped, typed and sharded like `template`.

    `template` may hold arrays or `jax.ShapeDtypeStruct`s (with `.sharding`). Raises
    CheckpointMismatchError naming the first leaf whose saved shape differs.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise InputError("no checkpoint to restore", file=self.directory)
    self._check_shapes(template, step)
    abstract = jax.tree.map(_abstract, template)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["extra"] or {})

  def restore_as_saved(self, step: int | None = None) -> tuple[dict, dict]:
    """Restores without a template: nested dicts of arrays as saved (for readers that only need
    part of the state, e.g. parameters for inference)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise InputError("no checkpoint to restore", file=self.directory)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), extra=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["extra"] or {})

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
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


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
