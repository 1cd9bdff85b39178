"""Progress reporting: a tqdm bar on the main process, silent elsewhere.

In Jupyter or Colab the bar is tqdm's widget (ipywidgets, the `notebooks` extra), redrawn twice a
second and kept when done; tests/test_notebooks.py checks both in executed notebooks.
"""
from __future__ import annotations

import sys

from tqdm.auto import tqdm

from ecorep.mesh import is_main_process


def in_notebook() -> bool:
  """True inside a Jupyter/Colab kernel (tqdm.auto then draws a widget that redraws cheaply)."""
  shell = sys.modules.get("IPython")
  try:
    ip = shell.get_ipython() if shell is not None else None
  except Exception:  # IPython present but not running
    return False
  return ip is not None and type(ip).__name__ in ("ZMQInteractiveShell", "Shell")


def progress_bar(total: int, *, desc: str = "", initial: int = 0, unit: str = "step") -> tqdm:
  """A bar that redraws often on a terminal or in a notebook (and stays there), rarely in log
  files (CI, batch jobs)."""
  live = sys.stderr.isatty() or in_notebook()
  return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
              disable=not is_main_process(), mininterval=0.5 if live else 30.0, leave=live)
