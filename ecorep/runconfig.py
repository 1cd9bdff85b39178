"""A run directory's config: written when a run starts, compared when it resumes.

  <run>/config.json           the config the run trains with now
  <run>/config_history.jsonl  one line per start or resume: step, time, settings changed

Resuming with a setting that changes the trajectory (batch size, learning rate, seed, data...)
would silently mix two experiments: the schedule restarts, the saved data position means
other batches. So it is refused with the field named, unless the caller allows it; an allowed
change is recorded in the history rather than overwriting config.json without a trace.
Settings that only change bookkeeping (logging and checkpoint cadence, evaluation) may change.
"""
from __future__ import annotations

import fnmatch
import json
import os
import time
from typing import Any, Iterable

import ml_collections

from ecorep import io
from ecorep.config import config_to_json
from ecorep.errors import ConfigChangedError

CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.jsonl"
# Keys (fnmatch patterns over dotted names) that never change what a run computes.
BOOKKEEPING_KEYS = ("name", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
                    "train.eval_every", "train.evals", "eval.*", "data.worker_count",
                    "data.num_threads")
ALLOW_FLAG = "--allow_config_change"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """{"a.b.c": leaf} of nested dicts (lists/tuples are leaves, compared as lists)."""
  if isinstance(tree, ml_collections.ConfigDict):
    tree = tree.to_dict()
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: list(tree) if isinstance(tree, tuple) else tree}


def changed_settings(saved: dict, new: dict,
                     ignore: Iterable[str] = BOOKKEEPING_KEYS) -> dict[str, tuple[Any, Any]]:
  """{key: (saved value, new value)} for keys that differ, bookkeeping keys left out."""
  a, b = flatten(saved), flatten(new)
  ignore = tuple(ignore)
  out = {}
  for key in sorted(set(a) | set(b)):
    if any(fnmatch.fnmatchcase(key, pattern) for pattern in ignore):
      continue
    old, value = a.get(key, "<absent>"), b.get(key, "<absent>")
    if old != value:
      out[key] = (old, value)
  return out


def claim(workdir: str, cfg: ml_collections.ConfigDict, *, resume_step: int | None,
          allow_changes: bool = False, ignore: Iterable[str] = BOOKKEEPING_KEYS) -> None:
  """Records the config a run (re)starts with. `resume_step` None: a fresh start (config.json
  is replaced); else the saved config must agree on every trajectory setting."""
  path = os.path.join(workdir, CONFIG_FILE)
  new = json.loads(config_to_json(cfg))
  entry = {"event": "start", "step": 0, "time": round(time.time(), 3)}
  if resume_step is not None and os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
    changes = changed_settings(saved, new, ignore)
    if changes and not allow_changes:
      key, (old, value) = next(iter(changes.items()))
      more = f" (and {len(changes) - 1} more: {', '.join(list(changes)[1:6])})" if len(
          changes) > 1 else ""
      raise ConfigChangedError(
          f"this run was trained to step {resume_step} with {key} = {old!r}; resuming with "
          f"{value!r} would change its trajectory{more}. Use a new --workdir, restore the "
          f"setting, or pass {ALLOW_FLAG} to continue with it (recorded in {HISTORY_FILE})",
          file=path, field=key)
    entry = {"event": "resume", "step": int(resume_step), "time": entry["time"],
             "changed": {k: {"from": o, "to": v} for k, (o, v) in
                         changed_settings(saved, new, ()).items()}}
  os.makedirs(workdir, exist_ok=True)
  io.write_text(path, config_to_json(cfg))
  with open(os.path.join(workdir, HISTORY_FILE), "a", encoding="utf-8") as f:
    f.write(json.dumps(entry, default=str) + "\n")
