"""sinr_jax.port_torch: published SINR checkpoints (the reference's state-dict layout) ported into
run directories, checked against a float64 numpy forward pass of the same weights, against
scikit-learn's AP through an evaluator, and against PyTorch when it is installed."""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import sys

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

import sinr_jax
from sinr_jax import port_torch
from sinr_jax.errors import SinrInputError

TAXA = [4021, 17, 96, 1300, 5]   # class order of the checkpoint: deliberately not sorted
WIDTH, DEPTH = 8, 2


def _checkpoint(rng, model="ResidualFCNet", input_enc="sin_cos", input_dim=4, taxa=TAXA):
  """The reference's {'state_dict', 'params'} with random weights, in its key layout."""
  s = len(taxa)
  if model == "LinNet":
    sd = {"class_emb.weight": rng.normal(size=(s, input_dim))}
  else:
    sd = {"feats.0.weight": rng.normal(size=(WIDTH, input_dim)) / 2,
          "feats.0.bias": rng.normal(size=WIDTH) / 4}
    for i in range(DEPTH):
      for layer in ("w1", "w2"):
        sd[f"feats.{2 + i}.{layer}.weight"] = rng.normal(size=(WIDTH, WIDTH)) / 3
        sd[f"feats.{2 + i}.{layer}.bias"] = rng.normal(size=WIDTH) / 4
    sd["class_emb.weight"] = rng.normal(size=(s, WIDTH))
  params = {"model": model, "input_dim": input_dim, "num_classes": s, "num_filts": WIDTH,
            "depth": DEPTH, "class_to_taxa": list(taxa), "input_enc": input_enc,
            "device": "cuda", "hard_cap_num_per_class": 1000, "lr": 5e-4}
  return {"state_dict": {k: v.astype(np.float32) for k, v in sd.items()}, "params": params}


def _bilinear64(raster, lon, lat):
  """The reference's bilinear_interpolate (pixel (0, 0) at (-180, 90), corners at the raster's
  edges, NaN -> 0), in float64."""
  data = np.nan_to_num(raster.astype(np.float64))
  h, w = data.shape[:2]
  x = (lon / 180.0 + 1) / 2 * (w - 1)
  y = (1 - (lat / 90.0 + 1) / 2) * (h - 1)
  x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
  x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
  dx, dy = (x - x0)[:, None], (y - y0)[:, None]
  return (data[y0, x0] * (1 - dx) * (1 - dy) + data[y0, x1] * dx * (1 - dy)
          + data[y1, x0] * (1 - dx) * dy + data[y1, x1] * dx * dy)


def _forward64(ckpt, lon, lat, raster=None):
  """(embedding, logits in the checkpoint's class order) of the reference network, float64."""
  sd = {k: v.astype(np.float64) for k, v in ckpt["state_dict"].items()}
  enc = ckpt["params"]["input_enc"]
  lam, phi = np.pi * lon / 180.0, np.pi * lat / 90.0
  coords = np.stack([np.sin(lam), np.sin(phi), np.cos(lam), np.cos(phi)], axis=1)
  x = {"sin_cos": lambda: coords, "env": lambda: _bilinear64(raster, lon, lat),
       "sin_cos_env": lambda: np.concatenate([coords, _bilinear64(raster, lon, lat)], 1)}[enc]()
  if ckpt["params"]["model"] == "ResidualFCNet":
    relu = lambda a: np.maximum(a, 0)
    x = relu(x @ sd["feats.0.weight"].T + sd["feats.0.bias"])
    for i in range(DEPTH):
      y = relu(x @ sd[f"feats.{2 + i}.w1.weight"].T + sd[f"feats.{2 + i}.w1.bias"])
      x = x + relu(y @ sd[f"feats.{2 + i}.w2.weight"].T + sd[f"feats.{2 + i}.w2.bias"])
  return x, x @ sd["class_emb.weight"].T


def _locations(rng, n=40, edges=True):
  """Random locations, plus the grid's edges and corners. (Without them for AP: -180 and 180
  give logits a few ulps apart, which float32 and float64 may rank differently.)"""
  edge_lon, edge_lat = ([-180, 180, 0, 179.9], [90, -90, 0, -89.9]) if edges else ([], [])
  lon = np.concatenate([rng.uniform(-180, 180, n - len(edge_lon)), edge_lon])
  lat = np.concatenate([rng.uniform(-90, 90, n - len(edge_lat)), edge_lat])
  return lon.astype(np.float32).astype(np.float64), lat.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("model,input_enc", [("ResidualFCNet", "sin_cos"),
                                             ("ResidualFCNet", "sin_cos_env"),
                                             ("LinNet", "env")])
def test_ported_run_predicts_like_float64_reference(tmp_path, model, input_enc):
  rng = np.random.default_rng(len(model) + len(input_enc))
  raster = rng.normal(size=(6, 12, 3)).astype(np.float32)
  raster[0, :3] = np.nan                     # ocean: read as 0, as the reference does
  np.save(tmp_path / "env.npy", raster)
  channels = {"sin_cos": 0, "env": 3, "sin_cos_env": 3}[input_enc]
  dim = channels + (0 if input_enc == "env" else 4)
  ckpt = _checkpoint(rng, model, input_enc, dim)
  ported = port_torch.port_range_model(ckpt, source="model.pt")
  out = port_torch.write_run(ported, str(tmp_path / "run"), env_raster=str(tmp_path / "env.npy"))

  predictor = sinr_jax.load(out)
  assert predictor.taxa.tolist() == sorted(TAXA)
  lon, lat = _locations(rng)
  emb, logits = _forward64(ckpt, lon, lat, raster)
  asked = [96, 4021, 5]
  cols = [TAXA.index(t) for t in asked]
  got = predictor.logits(lon, lat, taxa=asked)
  np.testing.assert_allclose(got, logits[:, cols], rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(predictor.predict(lon, lat, taxa=asked),
                             1 / (1 + np.exp(-logits[:, cols])), atol=2e-6)
  np.testing.assert_allclose(predictor.embed(lon, lat), emb, rtol=1e-5, atol=1e-5)

  spec = json.load(open(os.path.join(out, "model.json")))
  assert spec["input"]["kind"] == {"sin_cos": "coords", "env": "env",
                                   "sin_cos_env": "env_coords"}[input_enc]
  config = json.load(open(os.path.join(out, "config.json")))
  assert config["reference_params"]["class_to_taxa"] == TAXA
  assert config["reference_params"]["hard_cap_num_per_class"] == 1000


def test_evaluator_scores_ported_run_as_sklearn(tmp_path):
  """The IUCN task (published file layout) accepts the ported run; its per-species AP is
  scikit-learn's on the float64 reference's scores."""
  rng = np.random.default_rng(3)
  ckpt = _checkpoint(rng)
  out = port_torch.write_run(port_torch.port_range_model(ckpt), str(tmp_path / "run"))
  lon, lat = _locations(rng, 60, edges=False)
  _, logits = _forward64(ckpt, lon, lat)
  presence = {str(t): sorted(rng.choice(60, 10 + 5 * i, replace=False).tolist())
              for i, t in enumerate(TAXA[:3])}
  os.makedirs(tmp_path / "data/eval/iucn")
  with open(tmp_path / "data/eval/iucn/iucn_res_5.json", "w") as f:
    json.dump({"locs": np.stack([lon, lat], 1).tolist(), "taxa_presence": presence}, f)
  from sinr_jax.evaluate import evaluate_run
  report = evaluate_run(out, ["iucn"], data_dir=str(tmp_path / "data"))
  expected = []
  for t, cells in presence.items():
    labels = np.zeros(60)
    labels[cells] = 1
    expected.append(average_precision_score(labels, logits[:, TAXA.index(int(t))]))
  assert report["tasks"]["iucn"]["map"] == pytest.approx(np.mean(expected), abs=1e-6)


def _error(ckpt, match, **kw):
  with pytest.raises(SinrInputError, match=match) as e:
    port_torch.port_range_model(ckpt, source="model.pt", **kw)
  return e.value


def test_bad_state_dicts_name_the_key():
  rng = np.random.default_rng(0)
  ckpt = _checkpoint(rng)
  del ckpt["state_dict"]["feats.3.w2.bias"]
  assert _error(ckpt, "lacks 'feats.3.w2.bias'").field == "feats.3.w2.bias"
  ckpt = _checkpoint(rng)
  ckpt["state_dict"]["class_emb.bias"] = np.zeros(5, np.float32)
  err = _error(ckpt, "unexpected 'class_emb.bias'")
  assert err.field == "class_emb.bias" and err.file == "model.pt"
  ckpt = _checkpoint(rng)
  ckpt["state_dict"]["feats.2.w1.weight"] = np.zeros((WIDTH, WIDTH + 1), np.float32)
  assert _error(ckpt, r"'feats.2.w1.weight' has shape \(8, 9\)").field == "feats.2.w1.weight"
  ckpt = _checkpoint(rng)
  ckpt["state_dict"]["class_emb.weight"][2, 3] = np.nan
  assert _error(ckpt, "NaN or inf").field == "class_emb.weight"
  ckpt = _checkpoint(rng)  # a deeper net than params say: the surplus block is unexpected
  ckpt["params"]["depth"] = 1
  assert _error(ckpt, "unexpected 'feats.3.w1.weight'").field == "feats.3.w1.weight"


def test_bad_params_name_the_field():
  rng = np.random.default_rng(1)
  for key in ("class_to_taxa", "input_enc", "model"):
    ckpt = _checkpoint(rng)
    del ckpt["params"][key]
    assert _error(ckpt, f"lack '{key}'").field == f"params.{key}"
  ckpt = _checkpoint(rng, taxa=[1, 2, 3, 2, 5])
  assert _error(ckpt, "taxon 2 more than once").field == "params.class_to_taxa"
  ckpt = _checkpoint(rng)
  ckpt["params"]["num_classes"] = 6
  assert _error(ckpt, "lists 5 taxa but num_classes is 6").field == "params.class_to_taxa"
  ckpt = _checkpoint(rng)
  ckpt["params"]["input_enc"] = "wrap"
  assert _error(ckpt, "'wrap' is not one of").field == "params.input_enc"
  ckpt = _checkpoint(rng, input_dim=6)
  assert _error(ckpt, "does not fit input_enc").field == "params.input_dim"
  assert _error({"model": {}}, "no 'state_dict'").field == "state_dict"


def test_env_model_needs_matching_raster_and_out_keeps_old_run(tmp_path):
  rng = np.random.default_rng(2)
  ported = port_torch.port_range_model(_checkpoint(rng, "LinNet", "sin_cos_env", 7))
  with pytest.raises(SinrInputError, match="pass --env_raster"):
    port_torch.write_run(ported, str(tmp_path / "a"))
  np.save(tmp_path / "env2.npy", np.zeros((4, 8, 2), np.float32))
  with pytest.raises(SinrInputError, match="2 channels, the model expects 3"):
    port_torch.write_run(ported, str(tmp_path / "a"), env_raster=str(tmp_path / "env2.npy"))
  assert not (tmp_path / "a").exists()
  # An existing run is not replaced without --overwrite, and is replaced whole with it.
  coords = port_torch.port_range_model(_checkpoint(rng))
  run = port_torch.write_run(coords, str(tmp_path / "run"))
  before = sinr_jax.load(run).logits([1.0], [2.0])
  with pytest.raises(SinrInputError, match="not empty"):
    port_torch.write_run(port_torch.port_range_model(_checkpoint(rng)), run)
  np.testing.assert_array_equal(sinr_jax.load(run).logits([1.0], [2.0]), before)
  port_torch.write_run(port_torch.port_range_model(_checkpoint(rng)), run, overwrite=True)
  assert not np.array_equal(sinr_jax.load(run).logits([1.0], [2.0]), before)


def test_cli_without_pytorch_gives_install_hint(tmp_path, monkeypatch, capsys):
  (tmp_path / "model.pt").write_bytes(b"PK")
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
  rc = port_torch.main([f"--checkpoint={tmp_path / 'model.pt'}", f"--out={tmp_path / 'run'}"])
  err = capsys.readouterr().err
  assert rc == 2 and "pip install 'ecorep-jax[port]'" in err and "model.pt" in err
  assert not (tmp_path / "run").exists()


# --- with PyTorch: real torch.save files and PyTorch's own forward pass --------------------

def _torch():
  return pytest.importorskip("torch")


def _torch_model(torch, ckpt):
  """The PyTorch ResidualFCNet of benchmarks/torch_sinr.py (the reference's module and key
  layout), loaded strictly with the checkpoint's state dict."""
  path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "torch_sinr.py")
  spec = importlib.util.spec_from_file_location("benchmarks_torch_sinr", path)
  torch_sinr = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(torch_sinr)
  p = ckpt["params"]
  net = torch_sinr.ResidualFCNet(p["input_dim"], p["num_classes"], p["num_filts"], p["depth"])
  net.load_state_dict({k: torch.from_numpy(v) for k, v in ckpt["state_dict"].items()})
  return net.eval()


def test_torch_checkpoint_file_matches_pytorch_forward(tmp_path, capsys):
  torch = _torch()
  rng = np.random.default_rng(4)
  ckpt = _checkpoint(rng)
  net = _torch_model(torch, ckpt)
  torch.save({"state_dict": net.state_dict(), "params": ckpt["params"]}, tmp_path / "model.pt")
  rc = port_torch.main([f"--checkpoint={tmp_path / 'model.pt'}", f"--out={tmp_path / 'run'}"])
  assert rc == 0, capsys.readouterr().err
  lon, lat = _locations(rng)
  lam, phi = np.pi * lon / 180, np.pi * lat / 90
  x = np.stack([np.sin(lam), np.sin(phi), np.cos(lam), np.cos(phi)], 1).astype(np.float32)
  with torch.no_grad():
    expected = torch.sigmoid(net.class_emb(net.feats(torch.from_numpy(x)))).numpy()
  got = sinr_jax.load(tmp_path / "run").predict(lon, lat, taxa=TAXA)
  np.testing.assert_allclose(got, expected, atol=1e-5)
  config = json.load(open(tmp_path / "run/config.json"))
  assert len(config["ported_from"]["sha256"]) == 64


class _NotWeights:
  pass


def test_non_weights_pickle_is_refused_unless_trusted(tmp_path, capsys):
  torch = _torch()
  ckpt = _checkpoint(np.random.default_rng(5))
  sd = {k: torch.from_numpy(v) for k, v in ckpt["state_dict"].items()}
  torch.save({"state_dict": sd, "params": ckpt["params"], "extra": _NotWeights()},
             tmp_path / "model.pt")
  flags = [f"--checkpoint={tmp_path / 'model.pt'}", f"--out={tmp_path / 'run'}"]
  assert port_torch.main(flags) == 2
  err = capsys.readouterr().err
  assert "refused" in err and "_NotWeights" in err and "--trust_pickle" in err
  assert not (tmp_path / "run").exists()
  assert port_torch.main(flags + ["--trust_pickle"]) == 0   # the user vouches for the file
  assert sinr_jax.load(tmp_path / "run").taxa.tolist() == sorted(TAXA)

  class Payload:  # a pickle that would run a command when unpickled
    def __reduce__(self):
      return (os.system, (f"touch {tmp_path / 'ran'}",))
  torch.save({"state_dict": sd, "params": Payload()}, tmp_path / "evil.pt")
  with open(tmp_path / "evil.pkl", "wb") as f:   # the same as a plain pickle
    pickle.dump({"state_dict": {}, "params": Payload()}, f, protocol=2)
  for name in ("evil.pt", "evil.pkl"):
    assert port_torch.main([f"--checkpoint={tmp_path / name}", f"--out={tmp_path / 'run2'}"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "system" in err, err
  assert not (tmp_path / "ran").exists()
  (tmp_path / "cut.pt").write_bytes((tmp_path / "model.pt").read_bytes()[:500])  # a cut download
  assert port_torch.main([f"--checkpoint={tmp_path / 'cut.pt'}", f"--out={tmp_path / 'r3'}"]) == 2
  assert "not a readable PyTorch file" in capsys.readouterr().err
