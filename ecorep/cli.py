"""Command-line plumbing shared by every entry point: `--name=value` flags, --help, logging, the
distributed flags, and turning input errors into one line on stderr with exit status 2."""
from __future__ import annotations

import difflib
import logging
import sys
from typing import Callable, Sequence

from ecorep.errors import ConfigError, InputError
from ecorep.mesh import initialize_distributed

# --distributed lets JAX discover the cluster (TPU pods, SLURM); elsewhere pass the other three.
DISTRIBUTED_FLAGS = ("distributed", "coordinator", "num_processes", "process_id")
TRUE = ("1", "true", "yes")


def parse_flags(argv: Sequence[str], allowed: Sequence[str],
                required: Sequence[str] = ()) -> dict[str, str]:
  """`--name=value` (or bare `--name`, meaning "true") for CLIs without a --config."""
  flags = {}
  for arg in argv:
    if not arg.startswith("--"):
      raise ConfigError(f"unexpected argument '{arg}' (flags look like --name=value)")
    name, sep, value = arg[2:].partition("=")
    if name not in allowed:
      hint = difflib.get_close_matches(name, allowed, n=1)
      raise ConfigError(f"unknown flag --{name}" + (f" (did you mean --{hint[0]}?)" if hint else "")
                        + f"; known: --{', --'.join(allowed)}")
    flags[name] = value if sep else "true"
  missing = [f"--{r}" for r in required if r not in flags]
  if missing:
    raise ConfigError(f"missing {', '.join(missing)}")
  return flags


def flag_is_true(flags: dict[str, str], name: str) -> bool:
  return flags.get(name, "false").lower() in TRUE


def initialize_from_flags(flags: dict[str, str]) -> None:
  """Joins a multi-host job when --distributed or --coordinator was given."""
  if flag_is_true(flags, "distributed") or "coordinator" in flags:
    initialize_distributed(
        flags.get("coordinator"),
        int(flags["num_processes"]) if "num_processes" in flags else None,
        int(flags["process_id"]) if "process_id" in flags else None)


def run_cli(argv: Sequence[str], body: Callable[[list[str]], int | None], usage: str,
            errors: tuple[type[BaseException], ...] = ()) -> int:
  """Runs `body(argv)` with logging set up; --help prints `usage`; input errors (and `errors`)
  become `error: ...` on stderr and exit status 2 instead of a traceback."""
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
  if any(a in ("-h", "--help") for a in argv):
    print(usage)
    return 0
  try:
    return body(list(argv)) or 0
  except (InputError, *errors) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
