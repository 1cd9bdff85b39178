"""Shared benchmark plumbing: machine description, timing, and RESULTS.md sections.

The one home for what a RESULTS.md section is stamped with (date, machine, exact command). A
process that runs the measurements in child processes (benchmarks/harness.py) must not start a JAX
backend itself (on a GPU that would take the device's memory from its workers): it passes the
workers' own description of their runtime as `runtime=` instead.
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Set by benchmarks/before_after.py (and usable by hand): update_section writes nothing.
NO_RECORD_ENV = "ECOREP_BENCH_NO_RECORD"
# Environment variables that change what a benchmark measures; the recorded command shows them.
COMMAND_ENV = ("XLA_FLAGS", "JAX_PLATFORMS", "JAX_ENABLE_X64", "CUDA_VISIBLE_DEVICES",
               "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS", "TF_CPP_MIN_LOG_LEVEL")


def cpu_description() -> str:
  """CPU model from /proc/cpuinfo and the logical cores this process may use."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    if names:
      cpu = f"{names[0]} × {len(names)} logical cores"
  except OSError:
    pass
  try:
    usable = len(os.sched_getaffinity(0))
    if usable != (os.cpu_count() or usable):
      cpu += f" ({usable} usable)"
  except (AttributeError, OSError):
    pass
  return cpu


def gpu_description() -> str:
  """GPU names from nvidia-smi ('' where there is none)."""
  try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return ""
  names = [l.strip() for l in out.splitlines() if l.strip()]
  if not names:
    return ""
  return names[0] if len(names) == 1 else f"{len(names)} × {names[0]}"


def jax_runtime() -> str:
  """'jax 0.10.2 (cpu, 1 device(s))': starts a backend, so call it in a worker process only."""
  import jax
  return f"jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()} device(s))"


def torch_runtime() -> str:
  """'torch 2.13.0+cpu (cpu)' or '... (cuda: NVIDIA H200)'; call it in a worker process."""
  import torch
  if torch.cuda.is_available():
    return f"torch {torch.__version__} (cuda: {torch.cuda.get_device_name(0)})"
  return f"torch {torch.__version__} (cpu, {torch.get_num_threads()} threads)"


def machine(runtime: str | None = None) -> str:
  """CPU model and cores, GPU if any, Python, and the frameworks' runtime.

  `runtime` describes the frameworks as the measuring processes saw them (e.g. 'jax 0.10.2 (cpu, 1
  device(s)); torch 2.13.0+cpu (cpu, 2 threads)'); without it this process imports JAX and asks.
  """
  gpu = gpu_description()
  if runtime is None:
    runtime = jax_runtime()
  return (f"{cpu_description()}{'; GPU: ' + gpu if gpu else ''}; Python "
          f"{platform.python_version()}, {runtime}")


def command() -> str:
  """The exact command line of this process, relative to the repository root, with the
  environment variables that change the measurement."""
  env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in COMMAND_ENV if os.environ.get(k))
  script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
  argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
  return " ".join(x for x in (env, "python", script, argv) if x)


def timeit(fn, reps: int) -> list[float]:
  out = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t)
  return out


def median(xs):
  return statistics.median(xs)


def update_section(name: str, body: str, path: str = RESULTS, runtime: str | None = None) -> None:
  """Replaces (or appends) the `name` section of RESULTS.md, stamped with date, machine, command.

  Does nothing when the environment variable ECOREP_BENCH_NO_RECORD is set (before/after runs).
  """
  if os.environ.get(NO_RECORD_ENV):
    print(f"({NO_RECORD_ENV} is set: section '{name}' not written)", file=sys.stderr)
    return
  header = (f"## {name}\n\n- date: {datetime.date.today().isoformat()}\n"
            f"- machine: {machine(runtime)}\n- command: `{command()}`\n\n")
  block = f"<!-- {name}:start -->\n{header}{body.rstrip()}\n<!-- {name}:end -->\n"
  text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n"
  pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->\n",
                       re.S)
  text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
  with open(path, "w") as f:
    f.write(text)
