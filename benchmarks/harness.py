"""Side-by-side benchmark harness: every side is measured in its own process, sides alternating.

Why: timing PyTorch in the same process as JAX slowed PyTorch (its SINR step at S=47,375 took
7.4–9.0 s in the shared process against about 5.0 s alone: the two runtimes' thread pools and
allocators contend), which overstated JAX / PyTorch. Here each measurement is a fresh process:

    round 1: side A process, side B process;  round 2: A, B;  ...  round R: A, B

Each worker process imports only its own framework, warms up (compiles) and times its steps, then
writes one JSON object to the file named by the environment variable ECOREP_BENCH_WORKER_OUT:

    {"values": {key: number},            # the process's statistic per key (e.g. median s/step)
     "samples": {key: [number, ...]},    # optional: the timed steps behind each value
     "info": {...}}                      # optional: runtime description, rates, sizes ...

The parent never imports JAX or PyTorch (on a GPU a JAX backend in the parent would take the
device's memory from its workers). It reports, per side and key, the median over rounds with the
min–max range, and for a ratio the ratio of the medians with the range of the per-round ratios
(round r pairs A's and B's processes of that round, which ran next to each other).

JAX's persistent compilation cache is pointed at a temporary folder shared by the workers of one
run (unless JAX_COMPILATION_CACHE_DIR is set), so that rounds after the first skip most of the
compile; timings always start after the warm-up.

Used by sinr_train_throughput.py, ssl_throughput.py, cpu_kernels.py and before_after.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

WORKER_OUT_ENV = "ECOREP_BENCH_WORKER_OUT"


# ---- worker side ---------------------------------------------------------------------------------

def emit(result: dict[str, Any]) -> None:
  """Hands a worker's result to the parent (or prints it when run by hand)."""
  text = json.dumps(result)
  path = os.environ.get(WORKER_OUT_ENV)
  if path:
    with open(path, "w") as f:
      f.write(text)
  else:
    print(text)


def time_steps(fn: Callable[[], Any], steps: int, warmup: int = 1) -> list[float]:
  """`warmup` untimed calls (the first compiles), then `steps` timed calls, in seconds."""
  for _ in range(warmup):
    fn()
  out = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t)
  return out


# ---- parent side ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Side:
  """One side of a comparison: the command of its worker process, run `rounds` times.

  protocol "worker": the command writes the worker JSON to $ECOREP_BENCH_WORKER_OUT (above).
  protocol "summary_json": the command is any benchmark that takes --summary_json=F and writes
  the gpu_suite rows [{"name", "metric", "value", "unit"}, ...] there (before_after.py); each row
  becomes a value keyed "name: metric", its unit goes to info["units"].
  """
  name: str
  cmd: list[str]
  cwd: str | None = None
  env: dict[str, str] | None = None
  protocol: str = "worker"


class WorkerError(RuntimeError):
  pass


def run_worker(side: Side, timeout: float | None = None, extra_env: dict | None = None) -> dict:
  """Runs one worker process to completion and returns its JSON result (with info["wall_s"], the
  process's wall time, start-up and compile included). The worker's stdout and stderr go to this
  process's stderr (this process's stdout stays for its own report)."""
  fd, path = tempfile.mkstemp(prefix=f"bench_{side.name}_", suffix=".json")
  os.close(fd)
  env = {**os.environ, **(extra_env or {}), **(side.env or {}), WORKER_OUT_ENV: path}
  cmd = list(side.cmd)
  if side.protocol == "summary_json":
    cmd.append(f"--summary_json={path}")
  sys.stderr.flush()
  start = time.perf_counter()
  try:
    proc = subprocess.run(cmd, cwd=side.cwd, env=env, stdout=sys.stderr.fileno(),
                          stderr=sys.stderr.fileno(), timeout=timeout, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
      raise WorkerError(f"{side.name} worker exited with {proc.returncode}: "
                        f"{shlex.join(cmd)} (cwd {side.cwd or os.getcwd()})")
    with open(path) as f:
      text = f.read()
    if not text.strip():
      raise WorkerError(f"{side.name} worker wrote no result: {shlex.join(cmd)}")
    result = json.loads(text)
    if side.protocol == "summary_json":
      rows = [r for r in result if isinstance(r.get("value"), (int, float))]
      key = lambda r: f"{r.get('name', '')}: {r['metric']}"  # noqa: E731
      result = {"values": {key(r): r["value"] for r in rows},
                "info": {"units": {key(r): r.get("unit", "") for r in rows}}}
    result.setdefault("info", {})["wall_s"] = wall
    return result
  except subprocess.TimeoutExpired as e:
    raise WorkerError(f"{side.name} worker ran past {timeout} s: {shlex.join(cmd)}") from e
  finally:
    os.unlink(path)


@dataclasses.dataclass
class Rounds:
  """Results of an alternating run: rounds[r][side name] = that process's JSON result."""
  sides: list[str]
  rounds: list[dict[str, dict]]
  seconds: float = 0.0
  stopped_early: bool = False

  def values(self, side: str, key: str) -> list[float]:
    return [float(r[side]["values"][key]) for r in self.rounds if key in r[side]["values"]]

  def keys(self, side: str) -> list[str]:
    seen: dict[str, None] = {}
    for r in self.rounds:
      for k in r[side]["values"]:
        seen.setdefault(k, None)
    return list(seen)

  def info(self, side: str) -> dict:
    """The first round's info of `side` (runtime descriptions do not change between rounds)."""
    return self.rounds[0][side].get("info", {}) if self.rounds else {}

  def info_values(self, side: str, key: str) -> list[float]:
    return [float(r[side]["info"][key]) for r in self.rounds
            if key in r[side].get("info", {}) and r[side]["info"][key] is not None]


def alternate(sides: list[Side], rounds: int, *, max_seconds: float = 0.0,
              timeout: float | None = None, compile_cache: bool = True,
              log: Callable[[str], None] | None = None) -> Rounds:
  """Runs the sides' workers in turn, A B A B ..., for `rounds` rounds.

  With max_seconds > 0 no new round starts once the time spent plus the last round's duration
  would pass it (at least one round always runs; the first round, which compiles without a warm
  cache, overestimates the later ones); `Rounds.stopped_early` then says so.
  """
  log = log or (lambda s: print(s, file=sys.stderr, flush=True))
  cache_dir = None
  extra_env = {}
  if compile_cache and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    cache_dir = tempfile.mkdtemp(prefix="bench_jax_cache_")
    extra_env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
  start = time.perf_counter()
  out = Rounds([s.name for s in sides], [])
  last = 0.0
  try:
    for r in range(rounds):
      elapsed = time.perf_counter() - start
      if r and max_seconds and elapsed + last > max_seconds:
        out.stopped_early = True
        log(f"[harness] time budget {max_seconds:.0f} s: stopping after {r} of {rounds} rounds")
        break
      t_round = time.perf_counter()
      results = {}
      for side in sides:
        t = time.perf_counter()
        log(f"[harness] round {r + 1}/{rounds}: {side.name} ...")
        results[side.name] = run_worker(side, timeout, extra_env)
        log(f"[harness] round {r + 1}/{rounds}: {side.name} done in "
            f"{time.perf_counter() - t:.1f} s: " + ", ".join(
                f"{k}={v:.4g}" for k, v in results[side.name]["values"].items()))
      out.rounds.append(results)
      last = time.perf_counter() - t_round
  finally:
    if cache_dir:
      shutil.rmtree(cache_dir, ignore_errors=True)
  out.seconds = time.perf_counter() - start
  return out


# ---- statistics ----------------------------------------------------------------------------------

@dataclasses.dataclass
class Spread:
  """A central value with the range it came from: `value` is a median (or a ratio of medians),
  lo–hi the min–max over rounds (or of the per-round ratios), n the number of rounds."""
  value: float
  lo: float
  hi: float
  n: int

  def fmt(self, spec: str = ".3f", unit: str = "") -> str:
    if math.isnan(self.value):
      return "—"
    if self.n < 2:
      return f"{self.value:{spec}}{unit}"
    return f"{self.value:{spec}}{unit} ({self.lo:{spec}}–{self.hi:{spec}})"

  def map(self, fn: Callable[[float], float]) -> "Spread":
    """The same statistic under a monotone map (e.g. s/step → steps/s, which swaps lo and hi)."""
    a, b = fn(self.lo), fn(self.hi)
    return Spread(fn(self.value), min(a, b), max(a, b), self.n)

  def row(self, name: str, metric: str, unit: str) -> dict:
    """A gpu_suite / --summary_json row."""
    return {"name": name, "metric": metric, "value": self.value, "lo": self.lo, "hi": self.hi,
            "n": self.n, "unit": unit}


NAN = Spread(float("nan"), float("nan"), float("nan"), 0)


def spread(xs: list[float]) -> Spread:
  if not xs:
    return NAN
  return Spread(statistics.median(xs), min(xs), max(xs), len(xs))


def ratio(num: list[float], den: list[float]) -> Spread:
  """median(num) / median(den), with the min–max of num[r] / den[r] over the paired rounds."""
  if not num or not den:
    return NAN
  per_round = [a / b for a, b in zip(num, den)]
  return Spread(statistics.median(num) / statistics.median(den), min(per_round), max(per_round),
                len(per_round))


# ---- command-line plumbing shared by the side-by-side benchmarks ---------------------------------

def add_args(p: argparse.ArgumentParser, rounds: int = 5) -> None:
  """--rounds, --max_seconds, --jax_only, and the internal --worker."""
  p.add_argument("--rounds", type=int, default=rounds,
                 help="alternating rounds: one process per side per round")
  p.add_argument("--max_seconds", type=float, default=0.0,
                 help="start no new round past this many seconds (0: no limit; ≥ 1 round runs)")
  p.add_argument("--jax_only", action="store_true",
                 help="measure JAX in this process once and print/--summary_json it (no PyTorch, "
                      "no RESULTS.md): the entry point for benchmarks/before_after.py")
  p.add_argument("--worker", default="", help=argparse.SUPPRESS)


def worker_cmd(script: str, side: str, forwarded: list[str]) -> list[str]:
  """The command that runs `script` as the worker of `side` with the user's own flags."""
  return [sys.executable, os.path.abspath(script), f"--worker={side}", *forwarded]


PARENT_VALUE_FLAGS = ("--summary_json", "--worker", "--rounds", "--max_seconds")
PARENT_BOOL_FLAGS = ("--no_record", "--jax_only")


def forwarded_args(argv: list[str]) -> list[str]:
  """The command line minus the parent-only flags (the workers get the measurement's flags)."""
  out, skip = [], False
  for a in argv:
    if skip:
      skip = False
      continue
    name = a.split("=", 1)[0]
    if name in PARENT_BOOL_FLAGS:
      continue
    if name in PARENT_VALUE_FLAGS:
      skip = "=" not in a
      continue
    out.append(a)
  return out


def describe_method(rounds: Rounds, steps: int | None = None, warmup: int | None = None) -> str:
  """One sentence for RESULTS.md: how the numbers were taken."""
  n = len(rounds.rounds)
  per = (f"; each process warms up ({warmup} untimed step{'s' if warmup != 1 else ''}, compile "
         f"included) then times {steps} step{'s' if steps != 1 else ''}, its median is the round's "
         "value") if steps else "; each process warms up (compiles) before timing"
  early = " (stopped early by --max_seconds)" if rounds.stopped_early else ""
  return (f"Each side in its own process, alternating {' / '.join(rounds.sides)} for {n} "
          f"round{'s' if n != 1 else ''}{early}{per}. Cells: median over rounds (min–max); "
          f"ratios: ratio of the medians (min–max of the per-round ratios).")
