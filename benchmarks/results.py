"""Shared benchmark plumbing: machine description, timing, and RESULTS.md sections."""
from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def machine() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    cpu = f"{names[0]} × {len(names)} logical cores" if names else cpu
  except OSError:
    pass
  try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    gpu = ""
  import jax
  return (f"{cpu}{'; GPU: ' + gpu if gpu else ''}; Python {platform.python_version()}, "
          f"jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()} device(s))")


def timeit(fn, reps: int) -> list[float]:
  out = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t)
  return out


def median(xs):
  return statistics.median(xs)


def update_section(name: str, body: str, path: str = RESULTS) -> None:
  """Replaces (or appends) the `name` section of RESULTS.md, stamped with date, machine, command."""
  header = (f"## {name}\n\n- date: {datetime.date.today().isoformat()}\n- machine: {machine()}\n"
            f"- command: `{' '.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])}`\n\n")
  block = f"<!-- {name}:start -->\n{header}{body.rstrip()}\n<!-- {name}:end -->\n"
  text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n"
  pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->\n",
                       re.S)
  text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
  with open(path, "w") as f:
    f.write(text)
