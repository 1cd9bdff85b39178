"""Shared fixtures: small simulated worlds, generated once per session."""
import os

import pytest

from ecorep.config import load_config


@pytest.fixture(scope="session")
def tiny_world_dir(tmp_path_factory, repo_root):
  """The `tiny` config's world (30 species, H3 res 2), written once."""
  from sinr_jax.data import ensure_world
  cfg = load_config(os.path.join(repo_root, "configs/sinr.py:tiny"))
  path = str(tmp_path_factory.mktemp("tiny_world"))
  return ensure_world(path, cfg.data.world.to_dict())


@pytest.fixture
def tiny_config(repo_root, tiny_world_dir):
  """Returns a function building the tiny config with overrides, pointed at the shared world."""
  def make(variant: str = "", overrides=()):
    spec = os.path.join(repo_root, "configs/sinr.py:tiny" + ("," + variant if variant else ""))
    return load_config(spec, [f"data.world_dir={tiny_world_dir}", *overrides])
  return make
