"""Test session setup: 8 simulated CPU devices, so every sharded code path runs as on a pod slice.

Must run before JAX initialises its backends, hence module level here.
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def repo_root() -> str:
  return REPO


def pytest_report_header(config):
  return f"jax {jax.__version__}, {jax.device_count()} {jax.default_backend()} devices"
