"""Metric writing: JSON lines always, TensorBoard event files when tensorboardX is installed.

A run killed mid-write leaves a cut last line, and a resumed run repeats the steps after its
last checkpoint. So the reader skips lines that do not parse (and says how many), and a writer
opened for a resumed run first rewrites the file without the cut line and without the rows
logged after the step it resumes from.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Mapping

import numpy as np

from ecorep import io
from ecorep.mesh import is_main_process

_log = logging.getLogger(__name__)
FILENAME = "metrics.jsonl"


def _plain(v):
  v = np.asarray(v).item() if not isinstance(v, (int, float, str)) else v
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)  # JSON has no NaN/inf; keep them visible as strings
  return v


def _parse(lines) -> tuple[list[dict], int]:
  rows, bad = [], 0
  for line in lines:
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      bad += 1
      continue
    if isinstance(row, dict) and "step" in row:
      rows.append(row)
    else:
      bad += 1
  return rows, bad


def read_metrics(path: str | os.PathLike, *, with_skipped: bool = False):
  """Rows of a metrics.jsonl, skipping lines cut short by a killed run (or otherwise unreadable).

  Returns the rows, or (rows, number of skipped lines) with `with_skipped`.
  """
  with open(path, encoding="utf-8", errors="replace") as f:
    rows, bad = _parse(f)
  return (rows, bad) if with_skipped else rows


class MetricWriter:
  """Appends `{"step": s, "time": t, name: value...}` lines to `<workdir>/metrics.jsonl`.

  Only the main process writes. Each line is flushed, so a killed run keeps what it logged.
  `resume_step`: the step a resumed run restarts from; rows logged after it (the steps it is
  about to redo) and a cut last line are dropped first. None keeps every readable row.
  """

  def __init__(self, workdir: str | os.PathLike, *, tensorboard: bool = True,
               filename: str = FILENAME, resume_step: int | None = None):
    self.path = os.path.join(os.fspath(workdir), filename)
    self._enabled = is_main_process()
    self._file = None
    self._tb = None
    if not self._enabled:
      return
    os.makedirs(os.fspath(workdir), exist_ok=True)
    self._repair(resume_step)
    self._file = open(self.path, "a", encoding="utf-8")
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter  # optional extra: ecorep-jax[tensorboard]
      except ImportError:
        pass
      else:
        self._tb = SummaryWriter(os.path.join(os.fspath(workdir), "tensorboard"))

  def _repair(self, resume_step: int | None) -> None:
    if not os.path.exists(self.path):
      return
    with open(self.path, encoding="utf-8", errors="replace") as f:
      text = f.read()
    rows, bad = _parse(text.splitlines())
    keep = rows if resume_step is None else [r for r in rows if r["step"] <= resume_step]
    if bad == 0 and len(keep) == len(rows) and (not text or text.endswith("\n")):
      return
    io.write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))
    _log.info("%s: dropped %d unreadable line(s) and %d row(s) logged after step %s",
              self.path, bad, len(rows) - len(keep), resume_step)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._enabled:
      return
    row = {"step": int(step), "time": round(time.time(), 3)}
    row.update({k: _plain(v) for k, v in scalars.items()})
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        if isinstance(row[k], (int, float)):
          self._tb.add_scalar(k, row[k], int(step))

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
