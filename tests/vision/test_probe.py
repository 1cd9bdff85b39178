"""Linear probe against scikit-learn, label subsets, the feature cache, fine-tuning and the
linear_eval CLI on a small real set."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import top_k_accuracy_score
from sklearn.preprocessing import StandardScaler

from vision_jax import datasets, encoder as encoder_lib, input_pipeline, linear_eval, probe
from vision_jax import features as features_lib
from vision_jax.errors import VisionInputError
from vision_jax.resnet import ResNet
from vision_jax.sources import ArraySource

SIZE = 16


@pytest.fixture(scope="module")
def digits():
  (x, y), (xt, yt) = datasets.sklearn_digits("train"), datasets.sklearn_digits("test")
  flat = lambda a: a[..., 0].reshape(len(a), -1).astype(np.float32)  # noqa: E731
  return x, y, xt, yt, flat(x), flat(xt)


@pytest.fixture(scope="module")
def tiny_encoder():
  """ResNet-10, width 8, small stem. Initialised with the 'rbg' PRNG: threefry-based
  initialisers of a ResNet take ~40 s to compile on a loaded 2-core CPU."""
  module = ResNet(depth=10, width_multiplier=1, small_stem=True, base_width=8)
  variables = jax.jit(lambda k: module.init(k, jnp.zeros((1, SIZE, SIZE, 3)), train=False))(
      jax.random.key(0, impl="rbg"))
  return module, variables


def sklearn_objective(model, x, y, l2):
  p = model.predict_proba(x)
  return -np.mean(np.log(p[np.arange(len(y)), y])) + 0.5 * l2 * np.sum(model.coef_ ** 2)


def test_lbfgs_probe_reaches_sklearns_optimum(digits):
  _, y, _, yt, f, ft = digits
  l2 = 1e-2
  ours = probe.linear_probe(f, y, ft, yt, method="lbfgs", l2=l2)
  scaler = StandardScaler().fit(f)
  ref = LogisticRegression(C=1 / (l2 * len(f)), max_iter=5000, tol=1e-8).fit(
      scaler.transform(f), y)
  assert abs(ours["top1"] - ref.score(scaler.transform(ft), yt)) <= 0.01
  assert ours["train_objective"] == pytest.approx(
      sklearn_objective(ref, scaler.transform(f), y, l2), rel=1e-4)
  assert ours["num_train"] == len(y) and ours["num_classes"] == 10


def test_sgd_probe_close_to_sklearn(digits):
  _, y, _, yt, f, ft = digits
  ours = probe.linear_probe(f, y, ft, yt, method="sgd", epochs=30, batch_size=128)
  scaler = StandardScaler().fit(f)
  ref = LogisticRegression(C=1.0, max_iter=5000).fit(scaler.transform(f), y)
  ref_top1 = ref.score(scaler.transform(ft), yt)
  assert abs(ours["top1"] - ref_top1) <= 0.02, (ours["top1"], ref_top1)
  assert ours["train_top1"] > 0.97 and ours["top5"] >= ours["top1"]


def test_top_k_matches_sklearn():
  rng = np.random.default_rng(0)
  logits, labels = rng.normal(size=(200, 7)), rng.integers(0, 7, 200)
  for k in (1, 3, 5):
    assert probe._topk(logits, labels, k) == pytest.approx(
        top_k_accuracy_score(labels, logits, k=k, labels=np.arange(7)))


def test_label_subsets_are_stratified(digits):
  _, y, _, yt, f, ft = digits
  counts = np.bincount(y)
  rows = probe.label_subset(y, label_fraction=0.1, seed=1)
  np.testing.assert_array_equal(np.bincount(y[rows]), np.ceil(0.1 * counts))
  assert not np.array_equal(rows, probe.label_subset(y, label_fraction=0.1, seed=2))
  rows = probe.label_subset(y, labels_per_class=3)
  assert (np.bincount(y[rows]) == 3).all()
  result = probe.linear_probe(f, y, ft, yt, epochs=1, batch_size=16, labels_per_class=5)
  assert result["num_train"] == 50 and result["num_test"] == len(yt)
  with pytest.raises(VisionInputError, match="not both"):
    probe.label_subset(y, label_fraction=0.5, labels_per_class=2)
  with pytest.raises(VisionInputError, match="label_fraction"):
    probe.label_subset(y, label_fraction=1.5)


def test_probe_input_errors(digits):
  _, y, _, yt, f, ft = digits
  with pytest.raises(VisionInputError, match="one D"):
    probe.linear_probe(f, y, ft[:, :10], yt)
  with pytest.raises(VisionInputError, match="differ in length"):
    probe.linear_probe(f, y[:-1], ft, yt)
  bad = f.copy()
  bad[3, 4] = np.nan
  with pytest.raises(VisionInputError, match="NaN"):
    probe.linear_probe(bad, y, ft, yt)
  with pytest.raises(VisionInputError, match="method"):
    probe.linear_probe(f, y, ft, yt, method="adam")


def test_feature_cache_hits_and_refuses_another_encoder(tmp_path, tiny_encoder, monkeypatch):
  module, variables = tiny_encoder
  enc = encoder_lib.Encoder(module, variables, SIZE, step=5)
  images, labels = datasets.mnist_5k("test")
  source = ArraySource(images[:40], labels[:40])
  cache = tmp_path / "feats.npz"
  first = probe.extract_features(enc, source, 16, cache, dataset="mnist_5k/test")
  direct = enc.features(np.stack([input_pipeline.eval_preprocess(im, SIZE, True)
                                  for im in images[:40]]))
  np.testing.assert_allclose(first, direct, rtol=1e-5, atol=1e-6)  # rows in source order
  assert first.shape == (40, 64)
  calls = []
  monkeypatch.setattr(features_lib, "_forward", lambda *a: calls.append(a))
  again = probe.extract_features(enc, source, 16, cache, dataset="mnist_5k/test")
  np.testing.assert_array_equal(again, first)
  assert not calls  # served from the cache
  other = encoder_lib.Encoder(module, jax.tree.map(lambda a: a * 1.5, variables), SIZE, step=5)
  with pytest.raises(VisionInputError, match="written by another encoder"):
    probe.extract_features(other, source, 16, cache, dataset="mnist_5k/test")
  with pytest.raises(VisionInputError, match="field 'data'"):  # another dataset, same path
    probe.extract_features(enc, source, 16, cache, dataset="mnist_5k/train")
  assert not calls
  monkeypatch.undo()
  arrays = probe.extract_features(enc, images[:40], 16)  # arrays work without a source
  np.testing.assert_allclose(arrays, first, rtol=1e-5, atol=1e-6)


def test_fine_tune_end_to_end(digits, tiny_encoder):
  x, y, xt, yt, _, _ = digits
  module, variables = tiny_encoder
  enc = encoder_lib.Encoder(module, variables, SIZE)
  result = probe.fine_tune(enc, ArraySource(x, y), ArraySource(xt, yt), epochs=3, batch_size=64,
                           lr=0.1)
  assert result["num_test"] == len(yt) and result["num_train"] == len(y)  # nothing dropped
  assert result["steps"] == 3 * (len(y) // 64)
  assert result["top1"] > 0.3, result  # chance is 0.1
  assert result["top5"] >= result["top1"] and np.isfinite(result["final_train_loss"])
  np.testing.assert_array_equal(  # the encoder's own variables are untouched
      np.asarray(enc.variables["params"]["stem_conv"]["kernel"]),
      np.asarray(variables["params"]["stem_conv"]["kernel"]))


def test_linear_eval_cli(tmp_path, tiny_encoder, capsys, write_encoder_run):
  _, variables = tiny_encoder
  run = tmp_path / "run"
  write_encoder_run(run, variables, SIZE, step=3)
  args = [f"--run={run}", "--dataset=sklearn_digits", "--config=configs/linear_eval.py:tiny",
          "--labels_per_class=20", "--config.probe.epochs=3"]
  assert linear_eval.main(args) == 0
  out = capsys.readouterr().out
  assert "linear/sklearn_digits/per_class20 (step 3): top-1" in out
  with open(run / "metrics.json") as f:
    table = json.load(f)
  entry = table["linear/sklearn_digits/per_class20"]
  assert entry["step"] == 3 and entry["num_train"] == 200 and 0 <= entry["top1"] <= 1
  assert sorted(os.listdir(run / "features")) == ["sklearn_digits_test_step3.npz",
                                                  "sklearn_digits_train_step3.npz"]
  assert linear_eval.main([f"--run={run}", "--dataset=imagenet"]) == 2
  assert "unknown dataset 'imagenet'" in capsys.readouterr().err
