"""The Colab notebooks (notebooks/*.ipynb): stored without outputs, and executed end to end in a
Jupyter kernel (nbclient) on their tiny default settings: no error, pictures inline, the
project's INFO lines and a finished progress bar in the outputs. The notebook setup's install
hint for a missing optional extra is tested on the helper every notebook calls.

The kernels see one CPU device, as a notebook user does.
"""
import importlib.metadata
import os
import time

import nbclient
import nbformat
import pytest

from ecorep import notebook

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(REPO, "notebooks")
# name: (least number of inline pictures, a project logger whose INFO line must show)
NOTEBOOKS = {"sinr_quickstart.ipynb": (4, "sinr_jax.train"),
             "geo_prior.ipynb": (2, "sinr_jax.train"),
             "ssl_linear_probe.ipynb": (3, "vision_jax.pretrain")}


def read(name):
  with open(os.path.join(NOTEBOOK_DIR, name), encoding="utf-8") as f:
    return nbformat.read(f, as_version=4)


def test_notebooks_are_stored_without_outputs():
  assert sorted(n for n in os.listdir(NOTEBOOK_DIR) if n.endswith(".ipynb")) == sorted(NOTEBOOKS)
  for name in NOTEBOOKS:
    nb = read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), name
    assert "widgets" not in nb.metadata, name
    # The install cell first, then the setup cell whose check gives the install hint.
    assert "pip\", \"install\"" in code[0].source and "[notebooks]" in code[0].source, name
    assert "notebook.setup()" in code[1].source, name
    assert "\nSCALE = 1\n" in code[2].source, name


# Notebooks run in two lanes at once (separate kernels; compiling is mostly single-threaded, so
# two lanes fill a 2-core machine); within a lane they run in order, so the geo-prior notebook
# finds the quickstart's training step in the shared compilation cache.
LANES = (("ssl_linear_probe.ipynb",), ("sinr_quickstart.ipynb", "geo_prior.ipynb"))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """{name: (executed notebook, its folder, seconds)}."""
  import asyncio
  env = dict(os.environ)
  env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                              if "device_count" not in f)  # one device, as a user has
  env["JAX_PLATFORMS"] = "cpu"
  env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax_cache"))
  env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
  results, errors = {}, {}

  async def run(name):
    nb = read(name)
    folder = tmp_path_factory.mktemp(name.split(".")[0])
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}},
                                     store_widget_state=True)
    t0 = time.perf_counter()
    try:
      await client.async_execute(env=env)
    except Exception as e:  # noqa: BLE001 (reported by that notebook's test)
      errors[name] = e
    results[name] = (nb, folder, time.perf_counter() - t0)

  async def lane(names):
    for name in names:
      await run(name)

  async def main():
    await asyncio.gather(*(lane(names) for names in LANES))

  asyncio.run(main())
  for name, (_, _, seconds) in results.items():
    print(f"\n{name}: executed in {seconds:.1f} s")
  return results, errors


def outputs(nb, kind):
  return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
          if o.output_type == kind]


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebook_runs_end_to_end(name, executed):
  results, errors = executed
  if name in errors:  # a failing cell: CellExecutionError with the cell and its traceback
    raise errors[name]
  nb, folder, _ = results[name]
  min_pictures, logger = NOTEBOOKS[name]
  shown = [o for o in outputs(nb, "display_data") + outputs(nb, "execute_result")
           if "image/png" in o.get("data", {})]
  assert len(shown) >= min_pictures, f"{name}: {len(shown)} inline pictures"
  stderr = "".join(o.text for o in outputs(nb, "stream") if o.name == "stderr")
  assert f" {logger}: " in stderr, f"{name}: no INFO line of {logger} in:\n{stderr[-2000:]}"
  # The training progress bar is a widget that ran to its end and was kept.
  state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
  bars = [w["state"] for w in state.values() if w["model_name"] == "FloatProgressModel"]
  assert bars and all(b["value"] == b["max"] and b["bar_style"] == "success" for b in bars), bars
  assert os.path.isdir(folder / "runs"), "the notebook writes its runs under its folder"


def test_missing_extra_gives_an_install_hint(monkeypatch):
  real = importlib.metadata.version

  def without_ipywidgets(dist):
    if dist.lower() == "ipywidgets":
      raise importlib.metadata.PackageNotFoundError(dist)
    return real(dist)

  monkeypatch.setattr(importlib.metadata, "version", without_ipywidgets)
  with pytest.raises(notebook.MissingExtraError) as err:
    notebook.setup()
  msg = str(err.value)
  assert "ipywidgets" in msg and "pip install 'ecorep-jax[notebooks]'" in msg
  monkeypatch.setattr(importlib.metadata, "version",
                      lambda d: "7.0.0" if d.lower() == "ipywidgets" else real(d))
  with pytest.raises(notebook.MissingExtraError, match=r"ipywidgets>=8.1 \(found 7.0.0\)"):
    notebook.require_extra("notebooks")
  monkeypatch.setattr(importlib.metadata, "requires", lambda d: (_ for _ in ()).throw(
      importlib.metadata.PackageNotFoundError(d)))
  with pytest.raises(notebook.MissingExtraError, match="not installed as a package"):
    notebook.require_extra("notebooks")


def test_notebook_logging_goes_to_the_current_stderr(capsys):
  import logging
  notebook.setup_logging()
  notebook.setup_logging()  # idempotent: one handler
  logging.getLogger("sinr_jax.x").info("hello from a cell")
  logging.getLogger("sinr_jax.x").debug("not shown")
  err = capsys.readouterr().err
  assert err.count("hello from a cell") == 1 and "not shown" not in err
  for name in ("ecorep", "sinr_jax", "vision_jax"):  # leave the other tests' logging alone
    logger = logging.getLogger(name)
    for h in [h for h in logger.handlers if isinstance(h, notebook._CellStderr)]:
      logger.removeHandler(h)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
