"""Metric writing: JSON lines always, TensorBoard event files when tensorboardX is installed."""
from __future__ import annotations

import json
import math
import os
import time
from typing import Mapping

import numpy as np

from ecorep.mesh import is_main_process


def _plain(v):
  v = np.asarray(v).item() if not isinstance(v, (int, float, str)) else v
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)  # JSON has no NaN/inf; keep them visible as strings
  return v


class MetricWriter:
  """Appends `{"step": s, "time": t, name: value...}` lines to `<workdir>/metrics.jsonl`.

  Only the main process writes. Each line is flushed, so a killed run keeps what it logged.
  """

  def __init__(self, workdir: str | os.PathLike, *, tensorboard: bool = True,
               filename: str = "metrics.jsonl"):
    self.path = os.path.join(os.fspath(workdir), filename)
    self._enabled = is_main_process()
    self._file = None
    self._tb = None
    if not self._enabled:
      return
    os.makedirs(os.fspath(workdir), exist_ok=True)
    self._file = open(self.path, "a", encoding="utf-8")
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter  # optional extra: ecorep-jax[tensorboard]
      except ImportError:
        pass
      else:
        self._tb = SummaryWriter(os.path.join(os.fspath(workdir), "tensorboard"))

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


def read_metrics(path: str | os.PathLike) -> list[dict]:
  """Reads a metrics.jsonl back (skipping a last line cut short by a killed run)."""
  rows = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return rows
