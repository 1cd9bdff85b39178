"""End to end on 8 simulated devices: the linear protocol on yeast (every test row evaluated,
MAP recomputed with scikit-learn from the saved best state, resume), the fine-tune protocol on
the digit images, and the CLI's errors."""
import json
import os

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ecorep.checkpoint import Checkpointer
from ecorep.config import load_config
from ecorep.errors import InputError
from vision_jax.spml import data as data_lib
from vision_jax.spml import train as train_lib


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory, repo_root):
  cfg = load_config(os.path.join(repo_root, "configs/spml.py:role,linear,sparse"),
                    {"train.num_epochs": 4, "train.lr": (1e-2, 1e-3), "train.batch_size": (16,)})
  workdir = str(tmp_path_factory.mktemp("spml_linear"))
  return cfg, workdir, train_lib.train(cfg, workdir)


def test_linear_yeast_results_and_every_test_row(linear_run):
  cfg, workdir, r = linear_run
  assert (r["num_train"], r["num_val"], r["num_test"]) == (1200, 300, 917)  # 917 % 8 != 0
  assert r["devices"] == 8 and len(r["search"]) == 2
  assert r["selected"]["val_map"] == max(s["val_map"] for s in r["search"])
  # Recompute test MAP from the saved best state with numpy and scikit-learn.
  saved, _ = Checkpointer(os.path.join(workdir, "best")).restore_as_saved()
  head = saved["params"]["head"]
  d = data_lib.load_yeast()
  scores = d.test.x.astype(np.float64) @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
  want = np.mean([average_precision_score(d.test.labels[:, j], scores[:, j])
                  for j in range(14) if d.test.labels[:, j].any()])
  assert r["test_map"] == pytest.approx(want, abs=1e-5)
  # Prevalence is chance level for AP; a trained classifier and the estimates beat it.
  chance = d.test.labels.mean(0).mean()
  assert r["test_map"] > chance + 0.05
  assert r["estimator_map"] > d.train.labels.mean(0).mean() + 0.05
  assert 0 < r["k"] <= 14


def test_linear_resume_skips_finished_runs(linear_run):
  cfg, workdir, first = linear_run
  again = train_lib.train(cfg, workdir)
  assert again["search"] == first["search"]       # nothing retrained (timings identical)
  assert again["test_map"] == pytest.approx(first["test_map"], abs=1e-7)
  assert again["estimator_map"] == pytest.approx(first["estimator_map"], abs=1e-7)
  assert json.load(open(os.path.join(workdir, "results.json")))["loss"] == "role"


@pytest.mark.slow
def test_finetune_from_linear_init_on_digits(tmp_path, repo_root):
  cfg = load_config(os.path.join(repo_root, "configs/spml.py:an_ls,finetune,tiny"))
  r = train_lib.train(cfg, str(tmp_path))
  assert r["data"] == "digits" and r["protocol"] == "finetune"
  assert len(r["linear_init_search"]) == 1 and len(r["search"]) == 1
  assert len(r["search"][0]["val_history"]) == cfg.train.num_epochs
  assert r["test_map"] > 0.2 and np.isfinite(r["train_map"])
  # Per-epoch checkpoint of the fine-tune run (resume point).
  assert os.listdir(os.path.join(tmp_path, "run_lr0.001_bs16", "checkpoints"))


def test_iu_without_observed_negatives_is_refused(repo_root):
  cfg = load_config(os.path.join(repo_root, "configs/spml.py:iu,linear"))
  with pytest.raises(InputError, match="needs observed negatives"):
    train_lib.train(cfg, None, data=data_lib.load_yeast())  # drawn without negatives


def test_cli_reports_bad_k_and_unknown_keys(repo_root, capsys):
  os.chdir(repo_root)
  assert train_lib.main(["--config=configs/spml.py:epr,linear", "--config.train.k=15"]) == 2
  assert "outside (0, L]" in capsys.readouterr().err
  assert train_lib.main(["--config=configs/spml.py:epr,linear", "--config.train.kk=1"]) == 2
  assert "unknown config key" in capsys.readouterr().err
  assert train_lib.main(["--config=configs/spml.py:focal"]) == 2
  assert "unknown token" in capsys.readouterr().err


def test_finetune_starts_from_an_encoder_run(tmp_path, repo_root):
  """model.init: the backbone starts from an encoder run's weights and BN statistics (what a
  pretraining run or vision_jax.port_torch writes), not from a random draw."""
  import jax
  import optax
  from ecorep import trainer
  from vision_jax import encoder as encoder_lib
  from vision_jax.spml.train import pretrained_backbone
  enc = encoder_lib.Encoder.random(10, 1, True, 16, seed=7, base_width=4)
  run = tmp_path / "encoder"
  encoder_lib.write_or_check_model_spec(str(run), encoder_lib.model_spec(
      depth=10, width_multiplier=1, small_stem=True, base_width=4, image_size=16,
      method="simclr"), resuming=False)
  variables = jax.device_get(enc.variables)
  params = {"backbone": variables["params"]}
  state = trainer.new_state(params, optax.sgd(0.1),
                            model_state={"backbone": variables["batch_stats"]})
  trainer.save_checkpoint(str(run / "checkpoints"), state, jax.random.key(0))
  module, (got_params, got_stats) = pretrained_backbone(str(run))
  assert module == enc.module
  for a, b in zip(jax.tree.leaves(got_params), jax.tree.leaves(variables["params"])):
    np.testing.assert_array_equal(a, b)
  from vision_jax.spml.models import make_classifier
  cfg = load_config(os.path.join(repo_root, "configs/spml.py:an,finetune,tiny"),
                    {"model.init": str(run), "model.depth": 18})
  model = make_classifier(cfg.model, 5, backbone=module)  # the run's architecture wins
  assert model.backbone == enc.module and model.feature_dim == enc.feature_dim
