"""Progress reporting: a tqdm bar on the main process, silent elsewhere."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm

from ecorep.mesh import is_main_process


def progress_bar(total: int, *, desc: str = "", initial: int = 0, unit: str = "step") -> tqdm:
  """A bar that redraws often on a terminal and rarely in log files (CI, batch jobs)."""
  interactive = sys.stderr.isatty()
  return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
              disable=not is_main_process(), mininterval=0.5 if interactive else 30.0,
              leave=interactive)
