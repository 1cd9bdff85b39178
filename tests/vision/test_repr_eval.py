"""Feature extraction (sharded over the 8 simulated devices, streamed, cached with the encoder's
identity) and the evaluate_representation command end to end: a pretraining run next to a
features file on NeWT-layout tasks made of real digit images, and precomputed features files
through the fine-grained, fusion, granularity and budget protocols."""
from __future__ import annotations

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from vision_jax import datasets, encoder as encoder_lib, evaluate_representation as er
from vision_jax import fgvc, input_pipeline, newt, probe, svm
from vision_jax.errors import VisionInputError
from vision_jax.features import Features, compute, data_identity
from vision_jax.image_sets import open_image_set
from vision_jax.resnet import ResNet
from vision_jax.sources import FileListSource

SIZE, BATCH = 16, 16
TINY = "--config=vision_jax.configs.repr_eval:tiny"


def numpy_variables(module, seed=0):
  """He-normal kernels, unit BN: built in numpy from the abstract shapes (compiling the init of
  even a tiny ResNet takes ~10 s on a loaded 2-core CPU)."""
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)),
                                              train=False))
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      return rng.normal(0, np.sqrt(2 / np.prod(s.shape[:-1])), s.shape).astype(np.float32)
    return (np.ones if ("var" in name or "scale" in name) else np.zeros)(s.shape, np.float32)
  return dict(jax.tree_util.tree_map_with_path(fill, shapes))


@pytest.fixture(scope="module")
def encoder():
  module = ResNet(depth=10, width_multiplier=1, small_stem=True, base_width=8)  # as test_probe
  return encoder_lib.Encoder(module, numpy_variables(module), SIZE)


def test_sharded_extraction_cache_and_unreadable_images(tmp_path, encoder):
  images, labels = datasets.sklearn_digits("test")
  paths = []
  for k in range(19):
    paths.append(str(tmp_path / f"{k}.png"))
    Image.fromarray(images[k]).save(paths[-1])
  paths[4] = str(tmp_path / "gone.png")                 # missing
  (tmp_path / "bad.png").write_bytes(b"not an image")   # unreadable
  paths[7] = str(tmp_path / "bad.png")
  source = FileListSource(paths, labels[:19])
  data = data_identity("digits", 19)
  cache = tmp_path / "cache.npz"
  feats = compute(encoder, source, data=data, batch_size=BATCH, small_image=True,
                  cache_path=cache)
  direct = encoder.features(np.stack([input_pipeline.eval_preprocess(im, SIZE, True)
                                      for im in images[:19]]))
  good = np.setdiff1d(np.arange(19), [4, 7])
  np.testing.assert_allclose(feats.features[good], direct[good], rtol=1e-5, atol=1e-5)
  assert feats.failed.tolist() == [4, 7] and not feats.features[[4, 7]].any()
  assert "file not found" in feats.failures[0] and "cannot decode" in feats.failures[1]
  timing = feats.meta["timing"]
  assert timing["devices"] == 8 and timing["images_per_sec"] > 0 and timing["batch_size"] == 16
  again = compute(encoder, source, data=data, batch_size=BATCH, small_image=True,
                  cache_path=cache)
  assert again.meta == feats.meta  # read back, not recomputed
  np.testing.assert_array_equal(again.features, feats.features)
  saved = cache.read_bytes()
  other = encoder_lib.Encoder(encoder.module, jax.tree.map(lambda a: np.asarray(a) * 1.5,
                                                           encoder.variables), SIZE)
  with pytest.raises(VisionInputError, match="field 'encoder': .*written by another encoder"):
    compute(other, source, data=data, batch_size=BATCH, small_image=True, cache_path=cache)
  with pytest.raises(VisionInputError, match="field 'data': .*other data"):
    compute(encoder, source, data=data_identity("digits", 19, [str(i) for i in range(19)]),
            batch_size=BATCH, small_image=True, cache_path=cache)
  assert cache.read_bytes() == saved  # nothing already saved is lost
  with pytest.raises(VisionInputError, match="gone.png"):  # the ndarray API stops instead
    probe.extract_features(encoder, source, BATCH, small_image=True)
  # the seed's transform for photographs: short side resized, then the centre crop
  photo = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
  want = np.asarray(Image.fromarray(photo).resize((53, 40), Image.Resampling.BICUBIC))
  np.testing.assert_array_equal(input_pipeline.eval_preprocess(photo, 32, False, 40),
                                want[4:36, 10:42])


def write_newt_tree(root):
  """Two tasks of real digits (3 vs 8: appearance/species; 0 vs 6: behavior), published layout."""
  images, labels = datasets.sklearn_digits("all")
  os.makedirs(root / newt.IMAGE_DIR)
  rows = []
  for task, cluster, sub, pair in (("t38", "appearance", "species", (3, 8)),
                                   ("t06", "behavior", "", (0, 6))):
    for label, digit in enumerate(pair):
      for k, i in enumerate(np.flatnonzero(labels == digit)[:12]):
        image_id = f"{task}-{i}"
        Image.fromarray(images[i]).save(root / newt.IMAGE_DIR / f"{image_id}.jpg", quality=95)
        rows.append({"id": image_id, "task_cluster": cluster, "task_subcluster": sub,
                     "task": task, "label": label, "text_label": str(digit),
                     "split": "train" if k % 2 else "test", "height": 8, "width": 8})
  with open(root / newt.CSV_NAME, "w", newline="") as f:
    writer = csv.DictWriter(f, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return rows


def test_cli_newt_with_a_run_and_a_features_file(tmp_path, encoder, capsys, write_encoder_run):
  run = tmp_path / "run"
  write_encoder_run(run, jax.tree.map(np.asarray, encoder.variables), SIZE)
  rows = write_newt_tree(tmp_path / "newt")
  tasks = newt.read_newt(str(tmp_path / "newt"))
  other = tmp_path / "other.npz"  # e.g. features another framework extracted, keyed by image id
  Features(np.random.default_rng(0).normal(size=(len(rows), 5)).astype(np.float32),
           np.zeros(0, np.int64), [], tasks.ids).save(other)
  out = tmp_path / "out"
  args = [f"--encoder=ssl={run},{other}", "--protocol=newt", f"--data=newt:{tmp_path / 'newt'}",
          f"--out={out}", "--baseline=other", TINY, f"--config.features.batch_size={BATCH}"]
  assert er.main(args) == 0
  text = capsys.readouterr().out
  assert "| ssl |" in text and "| Δ ssl − other |" in text and "images/s" in text
  with open(out / "newt.json") as f:
    result = json.load(f)["results"]["newt"]
  summary = result["encoders"]["ssl"]
  assert summary["num_tasks"] == 2 and set(summary["groups"]) == {"appearance/species",
                                                                  "behavior"}
  # the task's accuracy is the LinearSVC's on the cached features of its own rows
  cached = Features.load(out / "features" / "ssl" / "newt.npz")
  assert cached.meta["source"]["step"] == 2 and list(cached.ids) == [r["id"] for r in rows]
  mine = tasks.tasks == "t38"
  tr, te = mine & (tasks.splits == "train"), mine & (tasks.splits == "test")
  settings = svm.Settings((0.01, 1.0, 100.0), 1000)
  fit = svm.fit_linear_svc(cached.features[tr], tasks.labels[tr], cached.features[te], settings)
  t38 = next(t for t in summary["tasks"] if t["task"] == "t38")
  assert t38["accuracy"] == pytest.approx(np.mean(fit["predictions"] == tasks.labels[te]))
  assert result["delta"]["other"]["all"] == 0 and os.path.isfile(result["plot"])
  # missing images stop the run before anything is read, or are counted as errors
  assert rows[0]["split"] == "test" and rows[0]["task"] == "t38"
  os.remove(tmp_path / "newt" / newt.IMAGE_DIR / f"{rows[0]['id']}.jpg")
  args = [f"--encoder=ssl={run}"] + args[1:3] + [f"--out={tmp_path / 'out2'}"] + args[5:]
  assert er.main(args) == 2
  assert "1 image file(s) of newt are missing" in capsys.readouterr().err
  assert er.main(args + ["--config.data.missing=count"]) == 0
  with open(tmp_path / "out2" / "newt.json") as f:
    result = json.load(f)["results"]["newt"]["encoders"]["ssl"]["tasks"]
  t38 = next(t for t in result if t["task"] == "t38")
  assert t38["failed_test"] == 1 and t38["num_test"] == 12  # counted, not dropped
  specs = er.parse_encoders(f"{run},rand=random:{run},{other}")
  assert [(s.name, s.kind) for s in specs] == [("run", "run"), ("rand", "random"),
                                               ("other", "features")]


def test_cli_with_features_files(tmp_path, capsys):
  for split in ("train", "test"):
    for c in "abcd":
      for k in range(10):
        path = tmp_path / "imgs" / split / c / f"{k}.png"
        os.makedirs(path.parent, exist_ok=True)
        Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(path)
  image_set = open_image_set(f"folder:{tmp_path / 'imgs'}")
  rng = np.random.default_rng(0)
  centres = rng.normal(0, 2, (4, 8))
  files = {}
  for name, noise in (("a", 0.5), ("b", 2.0)):
    x = (centres[image_set.labels] + rng.normal(0, noise, (80, 8))).astype(np.float32)
    files[name] = tmp_path / f"{name}.npz"
    Features(x, np.zeros(0, np.int64), [], image_set.ids).save(files[name])
  (tmp_path / "tax.csv").write_text("group,class\nG1,a\nG1,b\nG2,c\nG2,d\n")
  common = [f"--encoder=a={files['a']},b={files['b']}", f"--data=folder:{tmp_path / 'imgs'}",
            TINY, "--baseline=b"]
  for protocol, extra in (("fgvc", []), ("fusion", []), ("budget", []),
                          ("granularity", [f"--taxonomy={tmp_path / 'tax.csv'}",
                                           "--config.granularity.taxonomy_levels=group,class"])):
    out = tmp_path / protocol
    assert er.main(common + [f"--protocol={protocol}", f"--out={out}", *extra]) == 0, protocol
    with open(out / f"{protocol}.json") as f:
      result = json.load(f)
    assert result["feature_extraction"] == {}  # features were given
    assert all(p.endswith(".png") and os.path.isfile(p) for p in _plots(result))
  text = capsys.readouterr().out
  assert "| a+b |" in text and "| Δ a − b |" in text and "retrained" in text
  with open(tmp_path / "fgvc" / "fgvc.json") as f:
    top1 = json.load(f)["results"]["encoders"]["a"]["folder_imgs"]["top1"]
  want = fgvc.evaluate(image_set, Features.load(files["a"]).features,
                       settings=svm.Settings((1e-4, 1e-2), 200))["top1"]
  assert top1 == pytest.approx(want)
  with open(tmp_path / "granularity" / "granularity.json") as f:
    levels = json.load(f)["results"]["folder_imgs"]["encoders"]["a"]["levels"]
  assert [r["level"] for r in levels] == ["class", "group"] and levels[1]["num_classes"] == 2
  with open(tmp_path / "budget" / "budget.json") as f:
    curve = json.load(f)["results"]["folder_imgs"]["curves"]["a"]["linear"]
  assert curve["budgets"] == [2, 8] and len(curve["runs"][0]) == 2
  short = Features(np.zeros((79, 8), np.float32), np.zeros(0, np.int64), [])
  short.save(tmp_path / "short.npz")
  assert er.main([f"--encoder={tmp_path / 'short.npz'}", "--protocol=fgvc",
                  f"--data=folder:{tmp_path / 'imgs'}", f"--out={tmp_path / 'x'}", TINY]) == 2
  assert "79 feature rows but the data set has 80 images" in capsys.readouterr().err


def _plots(result):
  for value in result.values():
    if isinstance(value, dict):
      yield from _plots(value)
  if "plot" in result:
    yield result["plot"]
