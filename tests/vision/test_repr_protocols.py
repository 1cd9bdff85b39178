"""The evaluation protocols against hand-written references: the seed's scikit-learn classifiers
with a plain cross-validation loop and numpy preprocessing, NeWT cluster means, Δ tables,
re-scoring at coarser hierarchy levels, label-budget spreads and feature fusion."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from ecorep.taxonomy import Taxonomy
from vision_jax import budget, datasets, fgvc, granularity, newt, probe, repr_report, svm
from vision_jax.errors import VisionInputError
from vision_jax.features import Features, fuse
from vision_jax.image_sets import ImageSet
from vision_jax.sources import ArraySource


@pytest.fixture(scope="module")
def digits():
  x, y = datasets.sklearn_digits("all")
  return x[..., 0].reshape(len(x), -1).astype(np.float64), y


def reference_fit(make, grid, x_train, y_train, x_test):
  """Standardise and L2-normalise in numpy, pick the grid value by a plain 3-fold loop."""
  mean, std = x_train.mean(0), x_train.std(0)
  std[std == 0] = 1.0
  a, b = (x_train - mean) / std, (x_test - mean) / std
  a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-300)
  b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-300)
  scores = []
  for value in grid:
    fold = [np.mean(make(value).fit(a[tr], y_train[tr]).predict(a[va]) == y_train[va])
            for tr, va in StratifiedKFold(3).split(a, y_train)]
    scores.append(np.mean(fold))
  best = grid[int(np.argmax(scores))]  # the first of equal scores, as GridSearchCV
  return best, make(best).fit(a, y_train).predict(b)


def test_linear_svc_and_sgd_match_a_plain_cv_loop(digits):
  x, y = digits
  pair = np.flatnonzero((y == 3) | (y == 8))[:160]
  xb, yb = x[pair], (y[pair] == 8).astype(int)
  settings = svm.Settings((1e-3, 1e-1, 10.0), 1000)
  ours = svm.fit_linear_svc(xb[:100], yb[:100], xb[100:], settings)
  make = lambda c: LinearSVC(C=c, tol=1e-5, max_iter=1000, dual=False, random_state=0)  # noqa
  best, pred = reference_fit(make, settings.grid, xb[:100], yb[:100], xb[100:])
  assert ours["C"] == best and ours["converged"]
  np.testing.assert_array_equal(ours["predictions"], pred)
  sgd_settings = svm.Settings((1e-4, 1e-1), 300)
  ours = svm.fit_sgd_svm(x[:300], y[:300], x[300:400], sgd_settings)
  make = lambda a: SGDClassifier(loss="hinge", alpha=a, max_iter=300, tol=1e-5,  # noqa: E731
                                 random_state=0, learning_rate="optimal")
  best, pred = reference_fit(make, sgd_settings.grid, x[:300], y[:300], x[300:400])
  assert ours["alpha"] == best
  np.testing.assert_array_equal(ours["predictions"], pred)


def _digit_tasks(y):
  """Three NeWT-style tasks over disjoint digit images; row order mixes tasks and splits."""
  ids, tasks, labels, splits, rows = [], [], [], [], []
  for task, (a, b) in (("t35", (3, 5)), ("t49", (4, 9)), ("t17", (1, 7))):
    for label, digit in enumerate((a, b)):
      members = np.flatnonzero(y == digit)[:40]
      for k, i in enumerate(members):
        ids.append(f"{task}-{i}")
        tasks.append(task)
        labels.append(label)
        splits.append("train" if k % 2 else "test")
        rows.append(i)
  groups = {"t35": "appearance/species", "t49": "appearance/species", "t17": "behavior"}
  tasks_obj = newt.NewtTasks("<memory>", "<none>", np.asarray(ids), np.asarray(tasks),
                             np.asarray(labels, np.int32), np.asarray(splits), groups,
                             {t: ("0", "1") for t in groups})
  return tasks_obj, np.asarray(rows)


def test_newt_tasks_clusters_and_workers(digits):
  x, y = digits
  tasks, rows = _digit_tasks(y)
  feats = x[rows]
  ok = np.ones(len(rows), bool)
  failed_test = np.flatnonzero((tasks.tasks == "t35") & (tasks.splits == "test"))[:2]
  failed_train = np.flatnonzero((tasks.tasks == "t49") & (tasks.splits == "train"))[:3]
  ok[failed_test] = ok[failed_train] = False
  settings = svm.Settings((1e-2, 1.0), 1000)
  one = newt.evaluate(tasks, feats, ok, settings=settings, workers=1)
  two = newt.evaluate(tasks, feats, ok, settings=settings, workers=2)  # worker processes
  assert [r["accuracy"] for r in one["tasks"]] == [r["accuracy"] for r in two["tasks"]]
  by_task = {r["task"]: r for r in one["tasks"]}
  for task in ("t17", "t35", "t49"):
    mine = tasks.tasks == task
    tr, te = mine & (tasks.splits == "train") & ok, mine & (tasks.splits == "test")
    fit = svm.fit_linear_svc(feats[tr], tasks.labels[tr], feats[te & ok], settings)
    want = np.sum(fit["predictions"] == tasks.labels[te & ok]) / te.sum()  # failures: wrong
    assert by_task[task]["accuracy"] == pytest.approx(want)
    assert by_task[task]["num_test"] == te.sum() and by_task[task]["C"] == fit["C"]
  assert by_task["t35"]["failed_test"] == 2 and by_task["t49"]["skipped_train"] == 3
  acc = {t: by_task[t]["accuracy"] for t in by_task}
  assert one["groups"]["appearance/species"]["mean_accuracy"] == pytest.approx(
      (acc["t35"] + acc["t49"]) / 2)
  assert one["groups"]["behavior"]["mean_accuracy"] == pytest.approx(acc["t17"])
  assert one["mean_accuracy"] == pytest.approx(np.mean(list(acc.values())))
  with pytest.raises(VisionInputError, match="differ in length"):
    newt.evaluate(tasks, feats[:-1], settings=settings)


def test_deltas_and_tables():
  values = {"sup": {"a": 0.80, "b": 0.60}, "ssl": {"a": 0.70, "b": 0.65}}
  d = repr_report.deltas(values, "sup")
  assert d["ssl"] == pytest.approx({"a": -0.10, "b": 0.05}) and d["sup"] == {"a": 0, "b": 0}
  table = repr_report.score_table(values, ["a", "b"], "sup")
  assert "| ssl | 70.0 | 65.0 |" in table and "| Δ ssl − sup | -10.0 | +5.0 |" in table
  with pytest.raises(VisionInputError, match="baseline 'rand'"):
    repr_report.deltas(values, "rand")


def _image_set(x, y, splits, names):
  images = np.zeros((len(y), 2, 2, 3), np.uint8)
  return ImageSet("synthetic", ArraySource(images, y), y, splits, names)


def test_fgvc_counts_unreadable_test_images_as_errors(digits):
  x, y = digits
  n = 400
  splits = np.where(np.arange(n) < 300, "train", "test")
  image_set = _image_set(x[:n], y[:n], splits, [str(d) for d in range(10)])
  ok = np.ones(n, bool)
  ok[[310, 320]] = False
  settings = svm.Settings((1e-3,), 300)
  result = fgvc.evaluate(image_set, x[:n], ok, settings=settings)
  fit = svm.fit_sgd_svm(x[:300], y[:300], x[300:n][ok[300:]], settings)
  assert result["top1"] == pytest.approx(np.sum(fit["predictions"] == y[300:n][ok[300:]]) / 100)
  assert result["failed_test"] == 2 and result["num_test"] == 100
  with pytest.raises(VisionInputError, match="features and labels differ in length"):
    fgvc.evaluate(image_set, x[:n - 1], settings=settings)


@pytest.fixture(scope="module")
def blobs():
  """Four leaf classes in two genera; the genera are easy, the species within them close."""
  rng = np.random.default_rng(0)
  centres = np.array([[0, 0], [0.6, 0], [5, 5], [5.6, 5]])
  y = np.repeat(np.arange(4), 20)
  x = centres[y] + rng.normal(0, 0.5, (80, 2))
  x = np.concatenate([x, rng.normal(0, 1, (80, 6))], axis=1).astype(np.float32)
  splits = np.where(np.arange(80) % 2, "train", "test")
  return x, y, splits


def test_granularity_rescores_and_retrains(blobs):
  x, y, splits = blobs
  tax = Taxonomy.from_table([("G1", "s1"), ("G1", "s2"), ("G2", "s3"), ("G2", "s4")],
                            ("genus", "species"))
  image_set = _image_set(x, y, splits, ["s1", "s2", "s3", "s4"])
  ok = np.ones(80, bool)
  ok[1] = ok[2] = False  # one training and one test image unreadable
  data = image_set.train_test(x, ok)
  kwargs = {"method": "lbfgs", "l2": 1e-3, "max_iter": 30}
  result = granularity.evaluate(data, tax, probe_kwargs=kwargs)
  leaf, genus = result["levels"]
  assert (leaf["level"], leaf["steps_up"], genus["level"], genus["num_classes"]) == (
      "species", 0, "genus", 2)
  fit = probe.linear_probe(data.x_train, data.y_train, data.x_test, data.y_test, num_classes=4,
                           return_test_probs=True, **kwargs)
  summed = np.zeros((len(data.y_test), 2))
  for leaf_index, g in enumerate((0, 0, 1, 1)):  # the genus of every species, by hand
    summed[:, g] += fit["test_probs"][:, leaf_index]
  truth = np.array([0, 0, 1, 1])[data.y_test]
  assert genus["rescored_top1"] == pytest.approx(np.sum(summed.argmax(1) == truth) / 40)
  assert leaf["rescored_top1"] == pytest.approx(fit["top1"] * 39 / 40)
  coarse = probe.linear_probe(data.x_train, np.array([0, 0, 1, 1])[data.y_train], data.x_test,
                              truth, num_classes=2, **kwargs)
  assert genus["retrained_top1"] == pytest.approx(coarse["top1"] * 39 / 40)
  assert genus["rescored_top1"] > 0.9 > leaf["retrained_top1"]  # coarse is easier here
  granularity.check_taxonomy(tax, image_set.class_names)
  with pytest.raises(VisionInputError, match="not the data set's 4 classes in label order"):
    granularity.check_taxonomy(tax, ["s2", "s1", "s3", "s4"])


def test_budget_curve_and_fusion(blobs):
  x, y, splits = blobs
  data = _image_set(x, y, splits, list("abcd")).train_test(x)
  kwargs = {"method": "lbfgs", "l2": 1e-3, "max_iter": 30}
  curve = budget.linear_curve(data, [8, 2], [0, 1], probe_kwargs=kwargs, num_classes=4)
  assert curve["budgets"] == [2, 8] and curve["num_train"] == [8, 32]
  runs = [[probe.linear_probe(data.x_train, data.y_train, data.x_test, data.y_test,
                              labels_per_class=k, seed=s, num_classes=4, **kwargs)["top1"]
           for s in (0, 1)] for k in (2, 8)]
  np.testing.assert_allclose(curve["runs"], runs)
  np.testing.assert_allclose(curve["std"], [abs(a - b) / np.sqrt(2) for a, b in runs])
  with pytest.raises(VisionInputError, match="budgets must be positive"):
    budget.linear_curve(data, [0], [0])
  a = Features(np.ones((3, 2), np.float32), np.array([1]), ["bad"])
  b = Features(np.zeros((3, 1), np.float32), np.array([2]), ["gone"])
  fused = fuse([a, b], ["a", "b"])
  assert fused.features.shape == (3, 3) and fused.failed.tolist() == [1, 2]
  assert fused.failures == ["bad", "gone"] and fused.ok_mask().tolist() == [True, False, False]
  with pytest.raises(VisionInputError, match="cannot fuse features of 3 and 2 images"):
    fuse([a, Features(np.zeros((2, 1), np.float32), np.zeros(0, np.int64), [])])
  with pytest.raises(VisionInputError, match="features and labels differ in length"):
    a.check_rows(4)


def test_finetune_curve_bookkeeping(blobs, monkeypatch):
  """The curve's plumbing around probe.fine_tune (tested end to end in test_probe): budgets and
  seeds, unreadable images left out of training and scored as test errors, batches that fit
  the budget and divide over the devices, mean and spread over seeds."""
  x, y, splits = blobs
  image_set = _image_set(x, y, splits, list("abcd"))
  ok = np.ones(80, bool)
  ok[[1, 3, 2]] = False  # two training and one test image unreadable
  calls = []

  def fake_fine_tune(encoder, train, test, *, labels_per_class, seed, batch_size, **kwargs):
    rows = probe.label_subset(train.labels, labels_per_class=labels_per_class, seed=seed)
    calls.append({"train": train.indices.copy(), "test": test.indices.copy(), "k": labels_per_class,
                  "seed": seed, "batch": batch_size, **kwargs})
    return {"top1": 0.5 + 0.01 * labels_per_class + 0.1 * seed, "num_test": len(test),
            "num_train": len(rows)}

  monkeypatch.setattr(probe, "fine_tune", fake_fine_tune)
  curve = budget.finetune_curve("enc", image_set, [8, 2], [0, 1], ok,
                                finetune_kwargs={"batch_size": 16, "epochs": 3})
  assert [(c["k"], c["seed"]) for c in calls] == [(2, 0), (2, 1), (8, 0), (8, 1)]
  train_rows = np.flatnonzero((splits == "train") & ok)
  test_rows = np.flatnonzero((splits == "test") & ok)
  for c in calls:
    np.testing.assert_array_equal(c["train"], train_rows)
    np.testing.assert_array_equal(c["test"], test_rows)
    assert c["epochs"] == 3 and c["num_classes"] == 4 and c["small_image"] is False
  devices = jax.device_count()
  assert [c["batch"] for c in calls[::2]] == [max(devices, 8 // devices * devices),
                                             max(devices, 16 // devices * devices)]
  scale = 39 / 40  # the unreadable test image counts as an error
  want = np.array([[0.52, 0.62], [0.58, 0.68]]) * scale
  np.testing.assert_allclose(curve["runs"], want)
  np.testing.assert_allclose(curve["mean"], want.mean(1))
  np.testing.assert_allclose(curve["std"], want.std(1, ddof=1))
  assert curve["budgets"] == [2, 8] and curve["num_train"] == [8, 32]
  with pytest.raises(VisionInputError, match="at least one seed"):
    budget.finetune_curve("enc", image_set, [2], [], ok)
