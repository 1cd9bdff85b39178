"""The shared command-line plumbing: --help of every entry point (flags, config variant tokens,
where the keys are), --config.* parsing, and INFO lines reaching the console once."""
import importlib
import importlib.util
import logging
import os
import re
import subprocess
import sys

import pytest

from ecorep.cli import config_help, console_logging, parse_config_flags, run_cli
from ecorep.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DISTRIBUTED = ("distributed", "coordinator", "num_processes", "process_id")
# Every entry point: its flags and the config files whose variant tokens --help must show.
ENTRY_POINTS = {
    "sinr_jax.train": (("config", "workdir", "allow_config_change", *DISTRIBUTED),
                       ("sinr_jax/configs/sinr.py", "sinr_jax/configs/geo_prior.py")),
    "sinr_jax.geo_prior_eval": (("run", "predictions", "meta", "val_predictions", "val_meta",
                                 "baselines", "val_fraction", "seed", "bad_dates", "max_date",
                                 "out", "plots", "sim_dir"), ()),
    "sinr_jax.demo": (("config", "workdir", "num_maps"), ("sinr_jax/configs/sinr.py",)),
    "sinr_jax.evaluate": (("run", "tasks", "data_dir", "allow_pickle", "out", "sim_dir", "seed"),
                          ()),
    "sinr_jax.export": (("run", "taxa", "all", "out", "overwrite", "format", "h3_res",
                         "threshold", "labels"), ()),
    "sinr_jax.port_torch": (("checkpoint", "out", "env_raster", "overwrite", "trust_pickle"), ()),
    "sinr_jax.viewer.__main__": (("run", "compare", "host", "port", "res", "max_res", "max_cells",
                                  "labels", "names"), ()),
    "vision_jax.port_torch": (("resnet50", "resnet", "out", "image_size", "input_mean", "input_std",
                               "prefix", "no_classifier", "overwrite", "trust_pickle"), ()),
    "sinr_jax.sdm_eval": (("config", "workdir", "folds", "seeds", "threshold", "fold_column", "map",
                           "run", "presences", "background"), ("sinr_jax/configs/sinr.py",)),
    "vision_jax.evaluate_representation": (("encoder", "protocol", "data", "baseline", "out",
                                            "taxonomy"), ("vision_jax/configs/repr_eval.py",)),
    "vision_jax.corrupt": (("data", "corruption", "out", "split", "seed", "format", "overwrite"),
                           ()),
    "vision_jax.wsol.train": (("config", "workdir", "allow_config_change"),
                              ("vision_jax/configs/wsol.py",)),
    "vision_jax.pretrain": (("config", "workdir", "allow_config_change", *DISTRIBUTED),
                            ("vision_jax/configs/simclr.py", "vision_jax/configs/byol.py",
                             "vision_jax/configs/moco.py", "vision_jax/configs/supervised.py")),
    "vision_jax.demo": (("config", "workdir"), ("vision_jax/configs/simclr.py",)),
    "vision_jax.linear_eval": (("config", "run", "dataset", "step", "label_fraction",
                                "labels_per_class", "finetune"),
                               ("vision_jax/configs/linear_eval.py",)),
    "vision_jax.spml.train": (("config", "workdir", "allow_config_change"),
                              ("vision_jax/configs/spml.py",)),
}


def _config_module(path):
  spec = importlib.util.spec_from_file_location("_cfg_" + os.path.basename(path)[:-3],
                                                os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _tokens(path) -> list[str]:
  """Variant tokens a config file defines in code (its token tuples/dicts), not in prose."""
  module = _config_module(path)
  tokens = []
  for name in ("LOSSES", "INPUTS", "CAPS"):
    tokens += list(getattr(module, name, ()))
  return tokens


def test_every_entry_point_is_listed():
  found = set()
  for package in ("sinr_jax", "vision_jax"):
    for root, _, files in os.walk(os.path.join(REPO, package)):
      for f in files:
        if f.endswith(".py"):
          with open(os.path.join(root, f), encoding="utf-8") as fh:
            if re.search(r"^def main\(", fh.read(), re.M):
              found.add(os.path.relpath(os.path.join(root, f), REPO)[:-3].replace(os.sep, "."))
  assert found == set(ENTRY_POINTS)


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_help_lists_flags_tokens_and_config_keys(module, capsys):
  flags, configs = ENTRY_POINTS[module]
  main = importlib.import_module(module).main
  assert main(["--help"]) == 0
  out = capsys.readouterr().out
  for flag in flags:
    assert re.search(rf"--{flag}\b", out), f"{module} --help does not list --{flag}"
  for path in configs:
    assert f"every key of the config: see {path}" in out
    assert "--config.<key>=<value>" in out
    for token in _tokens(path):
      assert re.search(rf"\b{re.escape(token)}\b", out), f"{path} token {token} missing"
  if module == "vision_jax.pretrain":  # the shared tokens of vision_jax/configs/pretrain_common.py
    for token in ("r18", "r50x4", "bf16", "tiny"):
      assert re.search(rf"\b{token}\b", out)
  # --help wins over anything else on the line, and runs nothing
  assert main(["--bogus", "-h"]) == 0


def test_config_help_reads_the_docstring_without_running_the_file(tmp_path):
  cfg = tmp_path / "cfg.py"
  cfg.write_text('"""Variants: alpha | beta."""\nraise SystemExit("ran")\n')
  text = config_help(str(cfg))
  assert "Variants: alpha | beta." in text  # a shared layout module: no get_config in it
  cfg.write_text('"""Variants: alpha | beta."""\ndef get_config(arg):\n  raise SystemExit("ran")\n')
  text = config_help(str(cfg))
  assert "Variants: alpha | beta." in text and f"see {os.path.relpath(cfg)}" in text
  assert "cannot read" in config_help("configs/no_such.py")
  # The packages carry their configs: help found by module name, wherever they are installed.
  assert "an_full" in config_help("sinr_jax.configs.sinr")


def test_parse_config_flags():
  spec, overrides, flags = parse_config_flags(
      ["--workdir=w", "--config.data.world.seed=3", "--config=c.py:x", "--fast"],
      ("workdir", "fast"), "d.py:demo")
  assert spec == "c.py:x" and overrides == ["data.world.seed=3"]
  assert flags == {"workdir": "w", "fast": "true"}
  assert parse_config_flags([], ("workdir",), "d.py:demo") == ("d.py:demo", [], {})
  with pytest.raises(ConfigError, match="unknown flag --workdr.*did you mean --workdir"):
    parse_config_flags(["--workdr=x"], ("workdir",), "d.py")
  with pytest.raises(ConfigError, match="needs a value"):
    parse_config_flags(["--config.seed"], (), "d.py")


def test_sinr_demo_accepts_config_overrides(monkeypatch, tmp_path, capsys):
  import sinr_jax.demo as demo
  calls = []
  monkeypatch.setattr(demo, "run_demo", lambda *a, **k: calls.append((a, k)) or 1 / 0)
  with pytest.raises(ZeroDivisionError):
    demo.main([f"--workdir={tmp_path}", "--config.data.world.seed=3",
               "--config.data.world.num_species=40", "--num_maps=2"])
  (workdir, spec, overrides), kwargs = calls[0]
  assert spec == demo.DEFAULT_CONFIG and kwargs == {"num_maps": 2}
  assert overrides == ["data.world.seed=3", "data.world.num_species=40"]
  # an override of an unknown key is refused when the config is loaded, naming the key
  monkeypatch.undo()
  monkeypatch.chdir(REPO)
  monkeypatch.setattr(demo, "train", lambda *a: 1 / 0)
  assert demo.main([f"--workdir={tmp_path}", "--config.data.world.num_specie=4"]) == 2
  assert "did you mean 'data.world.num_species'" in capsys.readouterr().err


def test_console_logging_restores_the_loggers(caplog):
  logger = logging.getLogger("sinr_jax.some_module")
  before = [(logging.getLogger(n).level, logging.getLogger(n).propagate,
             list(logging.getLogger(n).handlers)) for n in ("ecorep", "sinr_jax", "vision_jax")]
  with console_logging():
    assert logging.getLogger("sinr_jax").propagate is False
  after = [(logging.getLogger(n).level, logging.getLogger(n).propagate,
            list(logging.getLogger(n).handlers)) for n in ("ecorep", "sinr_jax", "vision_jax")]
  assert before == after
  with caplog.at_level(logging.WARNING):
    logger.warning("still reaches pytest")
  assert "still reaches pytest" in caplog.text


def test_run_cli_logs_info_once_to_stderr(capsys):
  def body(argv):
    import orbax.checkpoint  # noqa: F401  absl's root handler: what made basicConfig a no-op
    logging.getLogger("sinr_jax.x").info("the data counts")
    logging.getLogger("vision_jax.y").warning("a warning")
    logging.getLogger("some_library").info("third-party noise")
  assert run_cli([], body, "usage") == 0
  err = capsys.readouterr().err
  assert err.count("the data counts") == 1 and err.count("a warning") == 1
  assert "third-party noise" not in err


def test_entry_point_info_lines_reach_the_console_once(tmp_path):
  """A real entry point in a fresh interpreter: it generates a (tiny) simulated world, logging
  that at INFO, then stops on a missing env raster (status 2)."""
  cmd = [sys.executable, "-m", "sinr_jax.demo", f"--workdir={tmp_path / 'run'}",
         "--config=configs/sinr.py:tiny", "--config.data.world.num_species=5",
         "--config.data.world.num_observations=400", "--config.data.world.h3_res=1",
         "--config.data.world.num_users=5", "--config.model.input=env",
         f"--config.data.env_raster={tmp_path / 'missing.npy'}"]
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.splitlines()
  info = [l for l in lines if "sinr_jax.data: generating the simulated world (5 species)" in l]
  assert len(info) == 1, proc.stderr
  assert lines[-1].startswith("error: ") and "missing.npy" in lines[-1]
