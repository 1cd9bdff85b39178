"""NeWT (Natural World Tasks, Van Horn et al. 2021; seed chapter 2): binary tasks from one CSV.

The published release (visipedia/newt) is `newt2021_labels.csv` plus `newt2021_images/`. Each CSV
row is one image of exactly one task, with the columns

  id               image id; the file is newt2021_images/<id>.jpg
  task_cluster     appearance | behavior | context | counting | gestalt
  task_subcluster  appearance's age | attribute | health | species (empty elsewhere)
  task             the task's id
  label            0 or 1
  text_label       a readable name of the label (not unique across tasks)
  split            train or test
  height, width    image size in pixels

`read_newt` validates it (unknown columns are kept out, missing required ones, unknown splits,
labels other than 0/1, duplicate ids, a task whose train split holds one class or whose test
split is empty: errors naming file, line and field). `evaluate` fits one LinearSVC per task
(vision_jax.svm: C by 3-fold CV on the train split) in parallel worker processes and reports
test accuracy per task, the mean per cluster (appearance split by subcluster, as the
benchmark's figure) and overall (Δ to a baseline: vision_jax.repr_report.deltas).
"""
from __future__ import annotations

import csv
import dataclasses
import difflib
import os
from typing import Sequence

import numpy as np

from vision_jax import svm
from vision_jax.errors import VisionInputError
from vision_jax.image_sets import ImageSet
from vision_jax.sources import FileListSource

CSV_NAME = "newt2021_labels.csv"
IMAGE_DIR = "newt2021_images"
REQUIRED = ("id", "task", "label", "split", "task_cluster")
SPLITS = ("train", "test")


@dataclasses.dataclass
class NewtTasks:
  csv_path: str
  image_dir: str
  ids: np.ndarray          # (N,) str
  tasks: np.ndarray        # (N,) str
  labels: np.ndarray       # (N,) int32, 0/1 within the row's task
  splits: np.ndarray       # (N,) str
  groups: dict[str, str]   # task -> "cluster" or "cluster/subcluster"
  text_labels: dict[str, tuple[str, str]]  # task -> (label 0's name, label 1's name)

  @property
  def task_names(self) -> list[str]:
    return sorted(self.groups)

  def paths(self, extension: str = ".jpg") -> list[str]:
    return [os.path.join(self.image_dir, i + extension) for i in self.ids]

  def image_set(self) -> ImageSet:
    """Every image of every task, for one feature extraction (rows in CSV order)."""
    return ImageSet("newt", FileListSource(self.paths(), self.labels), self.labels,
                    self.splits, ["0", "1"], self.ids)


def _locate(path: str, image_dir: str | None) -> tuple[str, str]:
  if os.path.isdir(path):
    csv_path = os.path.join(path, CSV_NAME)
  else:
    csv_path = path
  if not os.path.isfile(csv_path):
    raise VisionInputError("NeWT labels CSV not found", file=csv_path)
  root = os.path.dirname(os.path.abspath(csv_path))
  return csv_path, image_dir or os.path.join(root, IMAGE_DIR)


def read_newt(path: str, image_dir: str | None = None) -> NewtTasks:
  """The release's CSV (or the folder holding it and newt2021_images/)."""
  csv_path, image_dir = _locate(os.fspath(path), image_dir)
  with open(csv_path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
      hint = difflib.get_close_matches(missing[0], header, n=1)
      raise VisionInputError(
          f"missing column '{missing[0]}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
          + f"; header: {header}", file=csv_path, row=1, field=missing[0])
    rows = list(reader)
  if not rows:
    raise VisionInputError("no rows after the header", file=csv_path, row=2)
  ids, tasks, labels, splits = [], [], [], []
  groups: dict[str, str] = {}
  first_line: dict[str, int] = {}
  seen: dict[str, int] = {}
  names: dict[str, dict[int, str]] = {}
  for k, row in enumerate(rows):
    line = k + 2
    image_id, task = (row.get("id") or "").strip(), (row.get("task") or "").strip()
    split, label = (row.get("split") or "").strip(), (row.get("label") or "").strip()
    if not image_id or not task:
      raise VisionInputError("empty id or task", file=csv_path, row=line,
                             field="id" if not image_id else "task")
    if image_id in seen:
      raise VisionInputError(f"image {image_id!r} listed twice (first on line "
                             f"{seen[image_id]}); each image belongs to one task",
                             file=csv_path, row=line, field="id")
    if split not in SPLITS:
      raise VisionInputError(f"unknown split {split!r}; known: {', '.join(SPLITS)}",
                             file=csv_path, row=line, field="split")
    if label not in ("0", "1", "0.0", "1.0"):
      raise VisionInputError(f"label must be 0 or 1, got {label!r}", file=csv_path, row=line,
                             field="label")
    sub = (row.get("task_subcluster") or "").strip()
    group = (row.get("task_cluster") or "").strip() + (
        f"/{sub}" if sub and sub.lower() != "nan" else "")
    if groups.setdefault(task, group) != group:
      raise VisionInputError(f"task {task!r} is in cluster {groups[task]!r} on line "
                             f"{first_line[task]} but {group!r} here", file=csv_path, row=line,
                             field="task_cluster")
    first_line.setdefault(task, line)
    seen[image_id] = line
    text = (row.get("text_label") or "").strip()
    names.setdefault(task, {}).setdefault(int(float(label)), text)
    ids.append(image_id)
    tasks.append(task)
    labels.append(int(float(label)))
    splits.append(split)
  tasks_a, labels_a, splits_a = np.asarray(tasks, str), np.asarray(labels, np.int32), \
      np.asarray(splits, str)
  for task in groups:
    mine = tasks_a == task
    train = np.unique(labels_a[mine & (splits_a == "train")])
    if len(train) < 2:
      what = "no training images" if not len(train) else f"only class {train[0]}"
      raise VisionInputError(f"task {task!r} has {what} in its train split; a binary task "
                             "needs both classes", file=csv_path, row=first_line[task],
                             field="label")
    if not (mine & (splits_a == "test")).any():
      raise VisionInputError(f"task {task!r} has no test images", file=csv_path,
                             row=first_line[task], field="split")
  text = {t: (n.get(0, "0"), n.get(1, "1")) for t, n in names.items()}
  return NewtTasks(csv_path, image_dir, np.asarray(ids, str), tasks_a, labels_a, splits_a,
                   groups, text)


def evaluate(tasks: NewtTasks, features: np.ndarray, ok: np.ndarray | None = None, *,
             settings: svm.Settings = svm.NEWT, workers: int = 1,
             task_names: Sequence[str] | None = None) -> dict:
  """Per-task test accuracy, per-cluster and overall means.

  `features` (N, D) are the rows of tasks' CSV; `ok` marks rows whose image was read. Training
  rows without features are left out (and counted); test rows without features count as
  errors. Tasks run in `workers` processes (joblib/loky; 1: in this process).
  """
  features = np.asarray(features)
  if features.ndim != 2 or len(features) != len(tasks.ids):
    raise VisionInputError(f"{len(features)} feature rows for {len(tasks.ids)} NeWT images: "
                           "features and labels differ in length", file=tasks.csv_path,
                           field="features")
  ok = np.ones(len(features), bool) if ok is None else np.asarray(ok, bool)
  jobs = []
  for task in (task_names or tasks.task_names):
    if task not in tasks.groups:
      raise VisionInputError(f"unknown task {task!r}", file=tasks.csv_path, field="task")
    mine = tasks.tasks == task
    train, test = mine & (tasks.splits == "train"), mine & (tasks.splits == "test")
    usable = train & ok
    if len(np.unique(tasks.labels[usable])) < 2:
      raise VisionInputError(f"task {task!r}: after leaving out unreadable images its train "
                             "split holds one class", file=tasks.csv_path, field="label")
    jobs.append((task, features[usable], tasks.labels[usable], features[test & ok],
                 tasks.labels[test & ok], int(np.sum(test & ~ok)), settings))
  if workers == 1:
    results = [svm.score_task(*job) for job in jobs]
  else:
    from joblib import Parallel, delayed
    results = Parallel(n_jobs=workers, backend="loky")(
        delayed(svm.score_task)(*job) for job in jobs)
  for r in results:
    r["group"] = tasks.groups[r["task"]]
    r["skipped_train"] = int(np.sum((tasks.tasks == r["task"]) & (tasks.splits == "train")
                                    & ~ok))
  return summarize(results)


def summarize(results: list[dict]) -> dict:
  by_group: dict[str, list[float]] = {}
  for r in results:
    by_group.setdefault(r["group"], []).append(r["accuracy"])
  return {"tasks": results,
          "groups": {g: {"mean_accuracy": float(np.mean(v)), "num_tasks": len(v)}
                     for g, v in sorted(by_group.items())},
          "mean_accuracy": float(np.mean([r["accuracy"] for r in results])),
          "num_tasks": len(results)}
