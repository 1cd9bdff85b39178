"""Command-line plumbing shared by every entry point: `--name=value` flags, --help (flags, config
variant tokens, where the config keys live), console logging, the distributed flags, and turning
input errors into one line on stderr with exit status 2."""
from __future__ import annotations

import ast
import contextlib
import difflib
import importlib.util
import logging
import os
import sys
import textwrap
from typing import Callable, Iterator, Sequence

from ecorep.errors import ConfigError, InputError
from ecorep.mesh import initialize_distributed

# --distributed lets JAX discover the cluster (TPU pods, SLURM); elsewhere pass the other three.
DISTRIBUTED_FLAGS = ("distributed", "coordinator", "num_processes", "process_id")
TRUE = ("1", "true", "yes")
# Loggers whose INFO lines an entry point shows; everything else stays at WARNING.
PROJECT_LOGGERS = ("ecorep", "sinr_jax", "vision_jax")
LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"
# Config files (configs/*.py) and shared config modules live beside the packages, in the repository.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _unknown_flag(name: str, allowed: Sequence[str]) -> ConfigError:
  hint = difflib.get_close_matches(name, allowed, n=1)
  return ConfigError(f"unknown flag --{name}" + (f" (did you mean --{hint[0]}?)" if hint else "")
                     + f"; known: --{', --'.join(allowed)} (see --help)")


def parse_flags(argv: Sequence[str], allowed: Sequence[str],
                required: Sequence[str] = ()) -> dict[str, str]:
  """`--name=value` (or bare `--name`, meaning "true") for CLIs without a --config."""
  flags = {}
  for arg in argv:
    if not arg.startswith("--"):
      raise ConfigError(f"unexpected argument '{arg}' (flags look like --name=value)")
    name, sep, value = arg[2:].partition("=")
    if name not in allowed:
      raise _unknown_flag(name, allowed)
    flags[name] = value if sep else "true"
  missing = [f"--{r}" for r in required if r not in flags]
  if missing:
    raise ConfigError(f"missing {', '.join(missing)}")
  return flags


def parse_config_flags(argv: Sequence[str], allowed: Sequence[str],
                       default_config: str) -> tuple[str, list[str], dict[str, str]]:
  """(config spec, ["key=value" overrides], other flags) of `--config=<file>:<variant>
  --config.<key>=<value> --name=value` command lines, for entry points that load the config
  themselves (e.g. twice, with different variants). Overrides are checked when it is loaded."""
  spec, overrides, flags = default_config, [], {}
  for arg in argv:
    if not arg.startswith("--"):
      raise ConfigError(f"unexpected argument '{arg}' (flags look like --name=value)")
    name, sep, value = arg[2:].partition("=")
    if name == "config":
      spec = value
    elif name.startswith("config."):
      if not sep:
        raise ConfigError(f"{arg} needs a value: --config.<key>=<value>")
      overrides.append(f"{name[len('config.'):]}={value}")
    elif name in allowed:
      flags[name] = value if sep else "true"
    else:
      raise _unknown_flag(name, ["config", *allowed])
  return spec, overrides, flags


def flag_is_true(flags: dict[str, str], name: str) -> bool:
  return flags.get(name, "false").lower() in TRUE


def initialize_from_flags(flags: dict[str, str]) -> None:
  """Joins a multi-host job when --distributed or --coordinator was given."""
  if flag_is_true(flags, "distributed") or "coordinator" in flags:
    initialize_distributed(
        flags.get("coordinator"),
        int(flags["num_processes"]) if "num_processes" in flags else None,
        int(flags["process_id"]) if "process_id" in flags else None)


def config_help(module: str) -> str:
  """The variant tokens a config module documents (its docstring, read without running it) and
  where its keys are. `module` is a dotted module name ("sinr_jax.configs.sinr": the packages
  carry their configs, so this works wherever they are installed) or a file path."""
  if module.endswith(".py"):
    full = module if os.path.isabs(module) else os.path.join(REPO_ROOT, module)
  else:
    spec = importlib.util.find_spec(module.rpartition(".")[0] or module)
    base = os.path.dirname(spec.origin) if spec and spec.origin else ""
    full = os.path.join(base, module.rpartition(".")[2] + ".py")
  try:
    with open(full, encoding="utf-8") as f:
      doc = ast.get_docstring(ast.parse(f.read(), filename=full)) or "(no docstring)"
  except (OSError, SyntaxError) as e:
    return f"config {module}: cannot read it here ({e.__class__.__name__})"
  if "get_config" not in open(full, encoding="utf-8").read():  # a shared layout module
    return f"{module}:\n{textwrap.indent(doc, '  ')}"
  return (f"config variants ({module}):\n{textwrap.indent(doc, '  ')}\n"
          f"every key of the config: see {os.path.relpath(full)} (get_config); override with "
          "--config.<key>=<value>")


def help_text(usage: str, *, flags: Sequence[str] = (), configs: Sequence[str] = ()) -> str:
  """`usage`, then every flag the entry point accepts, then the variant tokens and key
  documentation of its config files."""
  parts = [usage.strip("\n")]
  if flags:
    parts.append("flags: " + " ".join(f"--{f}" for f in flags))
  parts += [config_help(c) for c in configs]
  return "\n\n".join(parts)


@contextlib.contextmanager
def console_logging(level: int = logging.INFO) -> Iterator[None]:
  """INFO lines of the project's loggers on stderr, each once, while an entry point runs.

  Not logging.basicConfig: importing orbax makes absl install a WARNING-level root handler
  first, which turns basicConfig into a no-op. Our loggers get their own handler and stop
  propagating (else the root handler prints their warnings again); the root logger is held at
  WARNING so third-party INFO stays quiet. Everything is restored afterwards, since tests call
  main() in-process (and pytest's caplog listens on the root logger).
  """
  handler = logging.StreamHandler(sys.stderr)
  handler.setFormatter(logging.Formatter(LOG_FORMAT))
  root = logging.getLogger()
  saved_root = root.level
  root.setLevel(max(root.level, logging.WARNING))
  saved = []
  for name in PROJECT_LOGGERS:
    logger = logging.getLogger(name)
    saved.append((logger, logger.level, logger.propagate))
    logger.setLevel(level)
    logger.propagate = False
    logger.addHandler(handler)
  try:
    yield
  finally:
    handler.flush()
    for logger, old_level, old_propagate in saved:
      logger.removeHandler(handler)
      logger.setLevel(old_level)
      logger.propagate = old_propagate
    root.setLevel(saved_root)


def run_cli(argv: Sequence[str], body: Callable[[list[str]], int | None], usage: str,
            errors: tuple[type[BaseException], ...] = (), *, flags: Sequence[str] = (),
            configs: Sequence[str] = ()) -> int:
  """Runs `body(argv)` with console logging; --help prints `help_text(usage, flags, configs)`;
  input errors (and `errors`) become `error: ...` on stderr and exit status 2, not a traceback."""
  if any(a in ("-h", "--help") for a in argv):
    print(help_text(usage, flags=flags, configs=configs))
    return 0
  with console_logging():
    try:
      return body(list(argv)) or 0
    except (InputError, *errors) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
