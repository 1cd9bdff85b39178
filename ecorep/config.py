"""Config loading: `configs/<family>.py:<variant>` files exposing `get_config(arg)`, plus
`key.sub=value` overrides checked against the keys the config defines."""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import json
import os
from typing import Any, Mapping, Sequence

import ml_collections

from ecorep.errors import ConfigError


def load_config(spec: str, overrides: Sequence[str] | Mapping[str, Any] = ()) -> ml_collections.ConfigDict:
  """Loads `path.py[:arg]` or `package.module[:arg]` (a config the packages carry, e.g.
  `sinr_jax.configs.sinr:demo`), calls its `get_config(arg)`, applies overrides and locks the
  result."""
  path, _, arg = spec.partition(":")
  if not path.endswith(".py") and "/" not in path and os.sep not in path:
    try:
      module = importlib.import_module(path)
    except ImportError as e:
      raise ConfigError(f"config module not found ({e})", file=path) from e
  else:
    if not os.path.isfile(path):
      raise ConfigError("config file not found", file=path)
    module_spec = importlib.util.spec_from_file_location(f"_ecorep_config_{abs(hash(path))}",
                                                         path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError("config file defines no get_config(arg)", file=path)
  try:
    cfg = module.get_config(arg) if arg else module.get_config()
  except (ValueError, KeyError) as e:
    raise ConfigError(f"variant '{arg}': {e}", file=path) from e
  if not isinstance(cfg, ml_collections.ConfigDict):
    cfg = ml_collections.ConfigDict(cfg)
  apply_overrides(cfg, overrides)
  cfg.lock()
  return cfg


def apply_overrides(cfg: ml_collections.ConfigDict,
                    overrides: Sequence[str] | Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Sets `a.b.c` keys in place. Strings are parsed to the type of the value they replace."""
  items = overrides.items() if isinstance(overrides, Mapping) else (
      _split_assignment(o) for o in overrides)
  for key, value in items:
    parent, leaf = _resolve(cfg, key)
    old = parent[leaf]
    new = _coerce(value, old, key) if isinstance(value, str) else value
    with parent.ignore_type():
      parent[leaf] = new
  return cfg


def _split_assignment(text: str) -> tuple[str, str]:
  key, sep, value = text.partition("=")
  if not sep or not key:
    raise ConfigError(f"override '{text}' is not of the form key=value")
  return key.strip(), value


def _resolve(cfg: ml_collections.ConfigDict, key: str):
  parts = key.split(".")
  node = cfg
  for depth, part in enumerate(parts):
    keys = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
    if part not in keys:
      where = ".".join(parts[:depth]) or "<top level>"
      hint = difflib.get_close_matches(part, keys, n=1)
      raise ConfigError(
          f"unknown config key '{key}': '{part}' is not a key of {where}"
          + (f" (did you mean '{'.'.join(parts[:depth] + hint)}'?)" if hint else "")
          + f"; known keys there: {', '.join(sorted(keys))}", field=key)
    if depth == len(parts) - 1:
      return node, part
    node = node[part]


def _coerce(text: str, old: Any, key: str) -> Any:
  try:
    if isinstance(old, bool):
      low = text.strip().lower()
      if low in ("true", "1", "yes"):
        return True
      if low in ("false", "0", "no"):
        return False
      raise ValueError(text)
    if isinstance(old, int):
      return int(text)
    if isinstance(old, float):
      return float(text)
    if isinstance(old, str):
      return text
    if isinstance(old, (tuple, list)):
      value = ast.literal_eval(text) if text.strip()[:1] in "[(" else [
          _literal(t) for t in text.split(",") if t.strip()]
      return type(old)(value)
    return _literal(text)  # None or other: best effort
  except (ValueError, SyntaxError) as e:
    raise ConfigError(f"cannot parse '{text}' as {type(old).__name__} for '{key}'",
                      field=key) from e


def _literal(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def parse_cli(argv: Sequence[str], *, allowed: Sequence[str] = ()) -> tuple[
    ml_collections.ConfigDict, dict[str, str]]:
  """Parses `--config=path.py:arg --config.a.b=v ... --other=v` command lines.

  Returns the config and the other `--name=value` flags (only names in `allowed`).
  """
  spec, overrides, other = None, [], {}
  for arg in argv:
    if not arg.startswith("--"):
      raise ConfigError(f"unexpected argument '{arg}' (flags look like --name=value)")
    name, sep, value = arg[2:].partition("=")
    if name == "config":
      spec = value
    elif name.startswith("config."):
      overrides.append(f"{name[len('config.'):]}={value}")
    elif name in allowed:
      other[name] = value if sep else "true"
    else:
      hint = difflib.get_close_matches(name, ["config", *allowed], n=1)
      raise ConfigError(f"unknown flag --{name}" + (f" (did you mean --{hint[0]}?)" if hint else ""))
  if spec is None:
    raise ConfigError("missing --config=path/to/config.py:variant")
  return load_config(spec, overrides), other


def config_to_json(cfg: ml_collections.ConfigDict) -> str:
  return json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=str)
