"""`python -m vision_jax.wsol` end to end on a tiny real-pixel set: the learning-rate search on
the shared loop, selection on D_f, test metrics, analyses and overlays; a rerun restores
instead of retraining; a run initialises another's backbone (init.run);
CAM-Agg and Center reuse it; settings are refused before anything is
written."""
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from ecorep.config import load_config
from ecorep.taxonomy import TaxonomyError
from vision_jax.encoder import load_encoder
from vision_jax.wsol import model as model_lib
from vision_jax.wsol import train

TINY = "configs/wsol.py:{},tiny"


@pytest.fixture(scope="module")
def tiny_data():
  cfg = load_config(TINY.format("cam"))
  return train.load_dataset(cfg)


def test_cli_trains_selects_on_df_and_reports_test(tmp_path, repo_root, tiny_data, capsys):
  os.chdir(repo_root)
  work = str(tmp_path / "cam")
  argv = [f"--config={TINY.format('cam,species')}", f"--workdir={work}",
          "--config.train.lr=0.02,0.2"]
  assert train.main(argv) == 0
  assert "test MaxBoxAccV2" in capsys.readouterr().out
  r = json.load(open(os.path.join(work, "results.json")))
  assert (r["method"], r["level"], r["num_classes"], r["num_train"]) == ("cam", "species", 10, 40)
  vals = {s["lr"]: s["val"]["maxboxacc"] for s in r["search"]}
  assert set(vals) == {0.02, 0.2} and r["selected"]["lr"] == max(vals, key=vals.get)
  t = r["test"]
  assert t["num_images"] == 20 and 0 <= t["maxboxacc"] <= 1 and 0 < t["pxap"] <= 1
  assert t["maxboxacc"] == pytest.approx(np.mean([t["boxacc@30"], t["boxacc@50"],
                                                  t["boxacc@70"]]))
  assert r["analyses"]["tau"] == t["best_tau@50"] and r["analyses"]["num_images"] == 20
  with Image.open(r["overlays"]) as png:
    assert png.format == "PNG" and png.size[0] > 100
  for lr in ("0.02", "0.2"):   # each run is an encoder run directory
    assert json.load(open(os.path.join(work, f"lr_{lr}", "model.json")))["method"] == "wsol_cam"
    assert json.load(open(os.path.join(work, f"lr_{lr}", "config.json")))["train"]["lr"] == [
        float(lr)]
  # rerun: both runs are restored from their last checkpoint, not retrained
  mtime = os.path.getmtime(os.path.join(work, "lr_0.2", "metrics.jsonl"))
  assert train.main(argv) == 0
  again = json.load(open(os.path.join(work, "results.json")))
  assert again["test"] == r["test"]
  assert os.path.getmtime(os.path.join(work, "lr_0.2", "metrics.jsonl")) == mtime

  # init.run: a run of this project (here the WSOL run itself, an encoder run) gives the
  # backbone its trained weights and BN statistics; the new head starts at zero
  enc = load_encoder(os.path.join(work, "lr_0.2"))
  cfg = load_config(TINY.format("cam,species"))
  net = model_lib.build(train.backbone_spec(cfg, enc), 10)   # the trained net: init compiled
  params, stats = model_lib.init_variables(net, 16, 0, enc)
  random_params, _ = model_lib.init_variables(net, 16, 0)
  for got, want, rand in zip(jax.tree.leaves(params["backbone"]),
                             jax.tree.leaves(enc.variables["params"]),
                             jax.tree.leaves(random_params["backbone"])):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert got.ndim < 4 or not np.array_equal(np.asarray(got), np.asarray(rand))  # kernels
  for got, want in zip(jax.tree.leaves(stats["backbone"]),
                       jax.tree.leaves(enc.variables["batch_stats"])):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  assert params["head"]["kernel"].shape == (32, 10) and not np.any(params["head"]["kernel"])

  # CAM-Agg: the same leaf-level training (one compiled step), CAMs averaged per family
  cfg = load_config(TINY.format("cam_agg,family"), ["train.lr=0.02"])
  agg = train.run(cfg, None, dataset=tiny_data)
  assert (agg["train_level"], agg["level"], agg["num_classes"]) == ("species", "family", 10)
  assert 0 <= agg["test"]["maxboxacc"] <= 1 and 0 <= agg["test"]["top1"] <= 1
  center = train.run(load_config(TINY.format("center")), str(tmp_path / "center"),
                     dataset=tiny_data)
  assert center["selected"]["sigma"] in load_config(TINY.format("center")).center.sigmas


def test_bad_settings_are_refused_before_anything_is_written(tmp_path, repo_root, tiny_data,
                                                             capsys):
  os.chdir(repo_root)
  work = tmp_path / "deep"
  assert train.main([f"--config={TINY.format('cam,up4')}", f"--workdir={work}"]) == 2
  assert "outside this hierarchy of 4 levels" in capsys.readouterr().err
  assert not work.exists()
  with pytest.raises(TaxonomyError, match="unknown level 'genus'"):
    train.run(load_config(TINY.format("cam,genus")), None, dataset=tiny_data)
  with pytest.raises(ValueError, match="'kingdom' has one class"):
    train.run(load_config(TINY.format("cam,kingdom")), None, dataset=tiny_data)
  cfg = load_config(TINY.format("has"), ["init.allow_random=false"])
  with pytest.raises(ValueError, match="init.run is empty"):
    train.run(cfg, None, dataset=tiny_data)
  with pytest.raises(ValueError, match="has.patch_frac"):
    train.run(load_config(TINY.format("has"), ["has.patch_frac=0.0"]), None, dataset=tiny_data)
  assert train.main(["--help"]) == 0
  assert "cam_agg" in capsys.readouterr().out
