"""The geo-prior family end to end on 8 devices: `python -m sinr_jax.train
--config=configs/geo_prior.py:tiny` (the dispatch, run files, the inference checkpoint without P),
the variants' inputs, and `python -m sinr_jax.geo_prior_eval` on simulated classifier outputs.
(1 vs 8 devices: tests/sinr/test_geo_prior_loss.py.)"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecorep.config import load_config
from ecorep.metrics import read_metrics
from ecorep.trainer import read_checkpoint
from sinr_jax.geo_prior import predictor, rundir
from sinr_jax.geo_prior.train import build_model
from sinr_jax.geo_prior_eval import main as eval_main
from sinr_jax.train import main as train_main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, repo_root):
  work = tmp_path_factory.mktemp("geo_prior")
  rc = train_main([f"--config={repo_root}/configs/geo_prior.py:tiny", f"--workdir={work}/run",
                   "--config.train.max_steps=6", "--config.train.log_every=3",
                   "--config.train.checkpoint_every=6", f"--config.data.world_dir={work}/world"])
  assert rc == 0
  return str(work / "run")


def test_run_files_and_inference_checkpoint_without_photographers(tiny_run):
  spec = rundir.read_model_spec(tiny_run)
  assert spec["input"] == {"use_date": True, "wrap": True} and spec["model"]["input_dim"] == 6
  users = json.load(open(os.path.join(tiny_run, rundir.PHOTOGRAPHERS_FILE)))
  train_params, step = read_checkpoint(os.path.join(tiny_run, rundir.CHECKPOINT_DIR))
  assert step == 6
  assert train_params["params"]["photographer_embedding"].shape == (len(users["users"]) + 1, 32)
  inference, _ = read_checkpoint(os.path.join(tiny_run, rundir.INFERENCE_DIR))
  assert set(inference["params"]) == {"location_encoder", "species_embedding"}
  prior = predictor.load(tiny_run)
  p = prior.predict([0.0, 120.0], [45.0, -30.0], day=[0.1, 0.6])
  assert p.shape == (2, 30) and np.all((p > 0) & (p < 1))
  np.testing.assert_allclose(np.log(p[:, :3]), prior.log_prior(
      [0.0, 120.0], [45.0, -30.0], [0.1, 0.6], np.tile(np.arange(3), (2, 1))), rtol=1e-5)
  losses = [r["loss"] for r in read_metrics(os.path.join(tiny_run, "metrics.jsonl"))]
  assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_variants_change_the_inputs_and_parameters(repo_root):
  for tokens, input_dim, with_p in (("tiny", 6, True), ("tiny,no_date", 4, True),
                                    ("tiny,no_wrap", 3, True), ("tiny,no_photographer", 6, False),
                                    ("tiny,no_date,no_wrap", 2, True)):
    cfg = load_config(f"{repo_root}/configs/geo_prior.py:{tokens}")
    model = build_model(cfg, num_classes=5, num_photographers=4)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                               jnp.zeros((1, model.input_dim)))["params"])
    assert model.input_dim == input_dim and ("photographer_embedding" in shapes) == with_p


def test_eval_cli_on_simulated_classifier_outputs(tiny_run, capsys):
  out = os.path.join(tiny_run, "report.json")
  plots = os.path.join(tiny_run, "figures")
  assert eval_main([f"--run={tiny_run}", "--baselines=nn_num,grid", f"--out={out}",
                    f"--plots={plots}"]) == 0
  printed = capsys.readouterr().out
  assert "Nearest neighbour (num)" in printed and "Geo prior, β tuned" in printed
  report = json.load(open(out))
  m = report["methods"]
  assert set(m) == {"no_prior", "nn_num", "grid", "prior", "prior_tuned"}
  assert report["images"]["test"]["num_images"] == 600 and report["classes"]["num_matched"] == 30
  assert 0.6 < m["no_prior"]["test"]["top1"] < 0.7        # the simulated classifier: 0.65
  assert "offseason/top1" in m["prior"]["test"] and "migrant/top1" in m["prior"]["test"]
  assert m["nn_num"]["gain"]["top1"] > 0.05               # a count prior already helps here
  assert sorted(os.listdir(plots)) == sorted([
      "ica_location_embeddings.png", "range_by_month.png", "tsne_objects.png",
      "photographer_affinity.png", "tsne_photographers.png"])


def test_eval_cli_refuses_a_foreign_class_list(tiny_run, tmp_path, capsys):
  np.savez(tmp_path / "x_preds.npz", probs=np.full((2, 2), 0.5), labels=np.array([0, 1]),
           model_to_taxa=np.array([-5, -6]))
  (tmp_path / "x_meta.csv").write_text("latitude,longitude\n1,2\n3,4\n")
  assert eval_main([f"--run={tiny_run}", f"--predictions={tmp_path}/x_preds.npz",
                    "--baselines=none", "--val_fraction=0.5"]) == 2
  assert "does not belong to this prior" in capsys.readouterr().err


def test_geo_prior_config_refuses_another_loss(repo_root, tmp_path, capsys):
  assert train_main([f"--config={repo_root}/configs/geo_prior.py:tiny",
                     f"--workdir={tmp_path}/r", "--config.train.loss=an_full"]) == 2
  assert "train.loss=gp" in capsys.readouterr().err and not os.path.exists(tmp_path / "r")
