import os

import pytest

from ecorep.config import apply_overrides, load_config, parse_cli
from ecorep.errors import ConfigError

SINR = "configs/sinr.py"


@pytest.fixture(autouse=True)
def _in_repo(repo_root, monkeypatch):
  monkeypatch.chdir(repo_root)


def test_variant_tokens_and_typed_overrides():
  cfg = load_config(f"{SINR}:me_ssdl,env_coords,cap100", [
      "train.batch_size=512", "train.lr=0.001", "data.strict=true", "model.input=env"])
  assert cfg.train.loss == "me_ssdl" and cfg.data.cap == 100
  assert cfg.train.batch_size == 512 and isinstance(cfg.train.batch_size, int)
  assert cfg.train.lr == pytest.approx(1e-3) and cfg.data.strict is True
  assert cfg.model.input == "env"


def test_unknown_key_names_it_and_suggests():
  with pytest.raises(ConfigError, match=r"unknown config key 'train\.batch_sise'.*did you mean "
                                        r"'train\.batch_size'"):
    load_config(SINR, ["train.batch_sise=3"])
  with pytest.raises(ConfigError, match="'trian' is not a key of <top level>"):
    load_config(SINR, ["trian.lr=3"])


def test_bad_value_and_bad_variant():
  with pytest.raises(ConfigError, match="cannot parse 'abc' as int for 'train.batch_size'"):
    load_config(SINR, ["train.batch_size=abc"])
  with pytest.raises(ConfigError, match="unknown token 'an_fulll'"):
    load_config(f"{SINR}:an_fulll")
  with pytest.raises(ConfigError, match="config file not found"):
    load_config("configs/nope.py:x")


def test_config_is_locked_against_new_keys():
  cfg = load_config(SINR)
  with pytest.raises(AttributeError):
    cfg.train.new_key = 1


def test_parse_cli():
  cfg, flags = parse_cli([f"--config={SINR}:tiny", "--config.train.num_epochs=3",
                          "--workdir=/tmp/x"], allowed=("workdir",))
  assert cfg.train.num_epochs == 3 and flags == {"workdir": "/tmp/x"}
  with pytest.raises(ConfigError, match="unknown flag --workdri.*did you mean --workdir"):
    parse_cli([f"--config={SINR}", "--workdri=/tmp"], allowed=("workdir",))
  with pytest.raises(ConfigError, match="missing --config"):
    parse_cli([], allowed=())


def test_list_override():
  import ml_collections
  cfg = ml_collections.ConfigDict({"sizes": (1, 2), "name": "a"})
  apply_overrides(cfg, ["sizes=3,4,5", "name=b"])
  assert cfg.sizes == (3, 4, 5) and cfg.name == "b"


def test_cli_flags_and_exit_status(capsys):
  from ecorep.cli import parse_flags, run_cli
  assert parse_flags(["--run=x", "--allow_pickle"], ("run", "allow_pickle")) == {
      "run": "x", "allow_pickle": "true"}
  with pytest.raises(ConfigError, match="unknown flag --rn.*did you mean --run"):
    parse_flags(["--rn=x"], ("run",))
  with pytest.raises(ConfigError, match="missing --run"):
    parse_flags([], ("run",), required=("run",))

  def body(argv):
    parse_flags(argv, ("run",), required=("run",))
    print("ran")
  assert run_cli(["--run=a"], body, "usage: x") == 0
  assert run_cli([], body, "usage: x") == 2
  assert run_cli(["--help"], body, "usage: x") == 0
  out = capsys.readouterr()
  assert out.out.count("ran") == 1 and "usage: x" in out.out and "error: missing --run" in out.err
