"""Notebook (Jupyter, Colab) setup: the project's INFO lines in the cell outputs, figures shown
inline whatever matplotlib backend a module chose, and an install hint when an extra is missing.

  from ecorep import notebook
  notebook.setup()        # checks the `notebooks` extra; project INFO logging into the cells
  notebook.show(fig)      # a matplotlib figure as a PNG in the cell output

Progress bars need nothing here: `ecorep.progress` sees the notebook and draws a widget bar
(ipywidgets, from the `notebooks` extra) that redraws twice a second and stays when done.
"""
from __future__ import annotations

import importlib.metadata
import io
import logging
import sys

from ecorep.cli import LOG_FORMAT, PROJECT_LOGGERS

DISTRIBUTION = "ecorep-jax"


class MissingExtraError(ImportError):
  """An optional extra of the project is not installed; the message says how to install it."""


def missing_requirements(extra: str, distribution: str = DISTRIBUTION) -> list[str]:
  """The requirements of `extra` (from the installed distribution's metadata) that are not
  installed or not at a matching version; empty when all are."""
  from packaging.requirements import Requirement  # a dependency of matplotlib
  requires = importlib.metadata.requires(distribution) or []
  missing = []
  for text in requires:
    req = Requirement(text)
    if req.marker is None or "extra" not in str(req.marker) or not req.marker.evaluate(
        {"extra": extra}):
      continue
    try:
      version = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
      missing.append(f"{req.name}{req.specifier}")
      continue
    if req.specifier and not req.specifier.contains(version, prereleases=True):
      missing.append(f"{req.name}{req.specifier} (found {version})")
  return missing


def require_extra(extra: str = "notebooks", distribution: str = DISTRIBUTION) -> None:
  """Raises MissingExtraError, with the pip command that fixes it, unless `extra` is installed."""
  try:
    missing = missing_requirements(extra, distribution)
  except importlib.metadata.PackageNotFoundError:
    raise MissingExtraError(
        f"{distribution} is not installed as a package, so its '{extra}' extra cannot be "
        f"checked: run the notebook's first (install) cell, or `pip install -e '.[{extra}]'` "
        "in a checkout") from None
  if missing:
    raise MissingExtraError(
        f"the '{extra}' extra of {distribution} is not installed (missing: "
        f"{', '.join(missing)}). Install it with\n  pip install '{distribution}[{extra}]'\n"
        f"(in a checkout: pip install -e '.[{extra}]'; in a notebook prefix the command with "
        "'!'), then run this cell again.")


class _CellStderr(logging.StreamHandler):
  """Writes to the sys.stderr of the moment: a kernel gives each cell's output its own stream."""

  def emit(self, record):
    self.stream = sys.stderr
    super().emit(record)


def setup_logging(level: int = logging.INFO) -> None:
  """The project's loggers (ecorep, sinr_jax, vision_jax) at `level` into the cell outputs, each
  line once; calling it again replaces the handler rather than adding one."""
  handler = _CellStderr(sys.stderr)
  handler.setFormatter(logging.Formatter(LOG_FORMAT))
  for name in PROJECT_LOGGERS:
    logger = logging.getLogger(name)
    for old in [h for h in logger.handlers if isinstance(h, _CellStderr)]:
      logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # else absl's root handler prints warnings a second time


def setup(extra: str | None = "notebooks", level: int = logging.INFO) -> None:
  """What a notebook's setup cell calls: checks `extra` (None: no check), then logging."""
  if extra:
    require_extra(extra)
  setup_logging(level)


def show(fig, *, dpi: int = 100) -> None:
  """Displays a matplotlib figure inline as a PNG and closes it. Works under any backend (some
  project modules select Agg, after which plt.show() draws nothing in a notebook)."""
  import matplotlib.pyplot as plt
  from IPython.display import Image, display
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
  plt.close(fig)
  display(Image(data=buf.getvalue()))
