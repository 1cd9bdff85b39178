"""Readers of the published fine-grained layouts and of the NeWT task CSV, each on a tiny fake
tree written here in the same layout; bad files name file, row and field."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from ecorep.taxonomy import Taxonomy, TaxonomyError
from vision_jax import datasets, image_sets, newt
from vision_jax.errors import VisionInputError


def _image(path, value=0, size=(6, 5), fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path, format=fmt)


def _lines(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("".join(" ".join(map(str, r)) + "\n" for r in rows))


def _cub_tree(root, ids, classes, class_of, is_train, class_names):
  _lines(root / "images.txt", [(i, f"{class_of[i]:03d}.c/{i}.jpg") for i in ids])
  _lines(root / "image_class_labels.txt", [(i, class_of[i]) for i in ids])
  _lines(root / "train_test_split.txt", [(i, int(is_train[i])) for i in ids])
  _lines(root / "classes.txt", [(c, class_names[c]) for c in classes])
  for k, i in enumerate(ids):
    _image(str(root / "images" / f"{class_of[i]:03d}.c" / f"{i}.jpg"), 20 * k)


def test_cub_and_nabirds(tmp_path):
  cub = tmp_path / "CUB_200_2011" / "CUB_200_2011"  # the tarball's nesting: parent works too
  ids = ["1", "2", "3", "4", "5"]
  _cub_tree(cub, ids, [1, 2, 3], {"1": 1, "2": 1, "3": 2, "4": 3, "5": 3},
            {"1": 1, "2": 0, "3": 1, "4": 1, "5": 0},
            {1: "001.Black_footed_Albatross", 2: "002.Laysan_Albatross", 3: "003.Sooty"})
  s = image_sets.open_image_set(f"cub:{tmp_path / 'CUB_200_2011'}")
  assert s.name == "cub" and s.num_classes == 3 and s.class_names[0] == "001.Black_footed_Albatross"
  np.testing.assert_array_equal(s.labels, [0, 0, 1, 2, 2])
  np.testing.assert_array_equal(s.splits, ["train", "test", "train", "train", "test"])
  assert s.missing() == [] and s.source[2]["image"][0, 0, 0] == 40
  # NABirds: UUID ids, sparse class ids (nodes of its hierarchy), names with spaces.
  nab = tmp_path / "nabirds"
  uuids = ["0000139e-21dc-4d0c-bfe1-4cae3c85c829", "0000d9fc-4e02-4c06-a0af-a55cfb16b12b",
           "00019306-9d83-4334-b255-a447742edce3"]
  _cub_tree(nab, uuids, [0, 295, 1010], dict(zip(uuids, [1010, 295, 1010])),
            dict(zip(uuids, [1, 1, 0])), {0: "Birds", 295: "Forster's Tern",
                                          1010: "Black Rail (adult)"})
  s = image_sets.open_image_set(f"nabirds:{nab}")
  assert s.class_names == ["Forster's Tern", "Black Rail (adult)"]  # only classes with images
  np.testing.assert_array_equal(s.labels, [1, 0, 1])
  assert list(s.ids) == uuids
  os.remove(nab / "images" / "1010.c" / f"{uuids[2]}.jpg")
  assert s.missing() == [(2, str(nab / "images" / "1010.c" / f"{uuids[2]}.jpg"))]
  _lines(nab / "train_test_split.txt", [(uuids[0], 1), (uuids[1], 2), (uuids[2], 0)])
  with pytest.raises(VisionInputError, match="train_test_split.txt, row 2, field "
                     "'is_training_image'"):
    image_sets.read_nabirds(str(nab))
  os.remove(nab / "image_class_labels.txt")
  with pytest.raises(VisionInputError, match="image_class_labels.txt: .*not found"):
    image_sets.read_nabirds(str(nab))


def test_flowers_and_dogs(tmp_path):
  root = tmp_path / "flowers"
  os.makedirs(root)
  savemat(root / "imagelabels.mat", {"labels": np.array([[1, 2, 2, 1, 3]])})
  savemat(root / "setid.mat", {"trnid": np.array([[1, 3]]), "valid": np.array([[2]]),
                               "tstid": np.array([[4, 5]])})
  for i in range(1, 6):
    _image(str(root / "jpg" / f"image_{i:05d}.jpg"), i)
  s = image_sets.open_image_set(f"flowers102:{root}")
  np.testing.assert_array_equal(s.labels, [0, 1, 1, 0, 2])  # rows: 1, 3 | 2 | 4, 5
  np.testing.assert_array_equal(s.splits, ["train", "train", "val", "test", "test"])
  assert s.source[1]["image"][0, 0, 0] == 3 and s.num_classes == 3
  savemat(root / "setid.mat", {"trnid": np.array([[1, 9]]), "valid": np.array([[2]]),
                               "tstid": np.array([[4]])})
  with pytest.raises(VisionInputError, match="setid.mat, field 'trnid'"):
    image_sets.read_flowers102(str(root))

  dogs = tmp_path / "dogs"
  os.makedirs(dogs)
  files = ["n02085620-Chihuahua/n02085620_1.jpg", "n02085782-Japanese_spaniel/n02085782_2.jpg"]
  for k, f in enumerate(files):
    _image(str(dogs / "Images" / f), 10 * k)
  cells = lambda fs: np.array([[f] for f in fs], dtype=object)  # noqa: E731  MATLAB cells
  savemat(dogs / "train_list.mat", {"file_list": cells(files), "labels": np.array([[1], [2]])})
  savemat(dogs / "test_list.mat", {"file_list": cells(files[1:]), "labels": np.array([[2]])})
  s = image_sets.open_image_set(f"stanford_dogs:{dogs}")
  assert s.class_names == ["Chihuahua", "Japanese_spaniel"]
  np.testing.assert_array_equal(s.labels, [0, 1, 1])
  np.testing.assert_array_equal(s.splits, ["train", "train", "test"])
  savemat(dogs / "test_list.mat", {"file_list": cells(files[1:]), "labels": np.array([[0]])})
  with pytest.raises(VisionInputError, match="test_list.mat, row 0, field 'labels'.*1-based"):
    image_sets.read_stanford_dogs(str(dogs))


def test_stanford_cars_both_layouts(tmp_path):
  combined = tmp_path / "cars"
  anns = np.array([("car_ims/000001.jpg", 1, 2, 3, 4, 2, 0),
                   ("car_ims/000002.jpg", 1, 2, 3, 4, 1, 1)],
                  dtype=[(k, "O") for k in ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2",
                                            "bbox_y2", "class", "test")])
  os.makedirs(combined)
  savemat(combined / "cars_annos.mat", {"annotations": anns,
                                        "class_names": np.array(["AM General Hummer", "Acura RL"],
                                                                dtype=object)})
  for k in (1, 2):
    _image(str(combined / "car_ims" / f"00000{k}.jpg"), k)
  s = image_sets.open_image_set(f"stanford_cars:{combined}")
  np.testing.assert_array_equal(s.labels, [1, 0])
  np.testing.assert_array_equal(s.splits, ["train", "test"])
  assert s.class_names[1] == "Acura RL" and s.missing() == []

  devkit = tmp_path / "cars2"
  fields = [(k, "O") for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
  os.makedirs(devkit / "devkit")
  savemat(devkit / "devkit" / "cars_train_annos.mat",
          {"annotations": np.array([(1, 1, 5, 5, 2, "00001.jpg")], dtype=fields)})
  savemat(devkit / "cars_test_annos_withlabels.mat",
          {"annotations": np.array([(1, 1, 5, 5, 1, "00001.jpg"), (1, 1, 5, 5, 2, "00002.jpg")],
                                   dtype=fields)})
  savemat(devkit / "devkit" / "cars_meta.mat",
          {"class_names": np.array([["AM General Hummer", "Acura RL"]], dtype=object)})
  s = image_sets.read_stanford_cars(str(devkit))
  assert s.source.paths[0].endswith(os.path.join("cars_train", "00001.jpg"))
  np.testing.assert_array_equal(s.labels, [1, 0, 1])
  np.testing.assert_array_equal(s.splits, ["train", "test", "test"])
  assert len(s.missing()) == 3  # no image files written: named, not an error here
  savemat(devkit / "devkit" / "cars_meta.mat", {"class_names": np.array(["only one"],
                                                                        dtype=object)})
  with pytest.raises(VisionInputError, match="cars_meta.mat, field 'class'"):
    image_sets.read_stanford_cars(str(devkit))


def test_inat2021_json_and_taxonomy(tmp_path):
  levels = ("kingdom", "phylum", "class", "order", "family", "genus")
  cats = [dict(zip(levels, ("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", g)),
               id=i, name=n, common_name=n, supercategory="Birds", specific_epithet=n.split()[1],
               image_dir_name=f"{i:05d}_{n}")
          for i, g, n in ((2, "Corvus", "Corvus corax"), (0, "Corvus", "Corvus corone"),
                          (1, "Pica", "Pica pica"))]

  def doc(split, rows):
    return {"info": {}, "licenses": [], "categories": cats,
            "images": [{"id": i, "file_name": f"{split}/{c:05d}/{i}.jpg", "width": 5,
                        "height": 6} for i, c in rows],
            "annotations": [{"id": i, "image_id": i, "category_id": c} for i, c in rows]}
  for file, split, rows in (("train_mini.json", "train_mini", [(10, 2), (11, 0), (12, 1)]),
                            ("val.json", "val", [(20, 0), (21, 1)])):
    with open(tmp_path / file, "w") as f:
      json.dump(doc(split, rows), f)
    for i, c in rows:
      _image(str(tmp_path / split / f"{c:05d}" / f"{i}.jpg"), i)
  s = image_sets.open_image_set(f"inat2021_mini:{tmp_path}")
  assert s.class_names == ["Corvus corone", "Pica pica", "Corvus corax"]  # by category id
  np.testing.assert_array_equal(s.labels, [2, 0, 1, 0, 1])
  np.testing.assert_array_equal(s.splits, ["train"] * 3 + ["test"] * 2)
  assert s.source[4]["image"][0, 0, 0] == 21 and s.missing() == []
  tax = s.taxonomy
  assert tax.levels[-1] == "species" and tax.leaf_names == tuple(s.class_names)
  np.testing.assert_array_equal(tax.coarsen(s.labels, "genus"), [0, 0, 1, 0, 1])
  with pytest.raises(VisionInputError, match="train.json: .*not found"):
    image_sets.open_image_set(f"inat2021:{tmp_path}")  # the full training json is absent


def test_folder_and_bundled_sets(tmp_path):
  for split, n in (("train", 2), ("test", 1)):
    for c in ("b", "a"):
      for k in range(n):
        _image(str(tmp_path / split / c / f"{k}.png"), k)
  s = image_sets.open_image_set(f"folder:{tmp_path}")
  assert s.class_names == ["a", "b"] and len(s) == 6
  np.testing.assert_array_equal(s.splits, ["train"] * 4 + ["test"] * 2)
  digits = image_sets.open_image_set("sklearn_digits")
  test_images, test_labels = datasets.sklearn_digits("test")
  np.testing.assert_array_equal(digits.labels[digits.rows("test")], test_labels)
  np.testing.assert_array_equal(digits.source[int(digits.rows("test")[5])]["image"],
                                test_images[5])
  assert digits.small_image and digits.taxonomy is None
  with pytest.raises(VisionInputError, match="unknown data set kind 'cubb'"):
    image_sets.open_image_set("cubb:/tmp")


def _newt_rows():
  rows = []
  for task, cluster, sub, per in (("nabirds_a_v_b", "appearance", "species", 3),
                                  ("ml_tag_nest", "context", "", 2),
                                  ("ml_tag_egg", "context", "", 2)):
    for split in ("train", "test"):
      for label in (0, 1):
        for k in range(per):
          rows.append({"id": f"{task}-{split}-{label}-{k}", "task_cluster": cluster,
                       "task_subcluster": sub, "task": task, "label": label,
                       "text_label": ["neg", "pos"][label], "split": split, "height": 5,
                       "width": 6})
  return rows


def write_newt(root, rows, columns=None):
  columns = columns or list(rows[0])
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, newt.CSV_NAME), "w", newline="") as f:
    w = csv.DictWriter(f, columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  return os.path.join(root, newt.CSV_NAME)


def test_newt_csv_layout(tmp_path):
  rows = _newt_rows()
  write_newt(tmp_path, rows)
  tasks = newt.read_newt(str(tmp_path))
  assert tasks.task_names == ["ml_tag_egg", "ml_tag_nest", "nabirds_a_v_b"]
  assert tasks.groups == {"nabirds_a_v_b": "appearance/species", "ml_tag_nest": "context",
                          "ml_tag_egg": "context"}
  assert tasks.text_labels["ml_tag_nest"] == ("neg", "pos") and len(tasks.ids) == len(rows)
  assert tasks.paths()[0] == str(tmp_path / newt.IMAGE_DIR / f"{rows[0]['id']}.jpg")
  s = tasks.image_set()
  assert len(s.missing()) == len(rows) and list(s.ids) == [r["id"] for r in rows]


@pytest.mark.parametrize("change, message", [
    (lambda rows: rows[3].update(split="validation"), r"row 5, field 'split'.*'validation'"),
    (lambda rows: [r.update(label=0) for r in rows if r["task"] == "ml_tag_egg"
                   and r["split"] == "train"], "'ml_tag_egg' has only class 0 in its train"),
    (lambda rows: rows[0].update(label=2), r"row 2, field 'label'"),
    (lambda rows: rows[1].update(id=rows[0]["id"]), r"row 3, field 'id'.*twice"),
    (lambda rows: [r.update(split="train") for r in rows if r["task"] == "ml_tag_nest"],
     "'ml_tag_nest' has no test images"),
])
def test_newt_bad_csv(tmp_path, change, message):
  rows = _newt_rows()
  change(rows)
  path = write_newt(tmp_path, rows)
  with pytest.raises(VisionInputError, match=message) as e:
    newt.read_newt(path)
  assert e.value.file == path


def test_newt_missing_column_and_taxonomy_files(tmp_path):
  rows = _newt_rows()
  cols = [c if c != "task_cluster" else "task_clust" for c in rows[0]]
  for r in rows:
    r["task_clust"] = r["task_cluster"]
  write_newt(tmp_path, rows, cols)
  with pytest.raises(VisionInputError, match="row 1, field 'task_cluster'.*'task_clust'"):
    newt.read_newt(str(tmp_path))
  # Taxonomy files for the granularity protocol: both layouts, and what they must not be.
  table = tmp_path / "tax.csv"
  table.write_text("genus,species\nA,a1\nA,a2\nB,b1\n")
  tax = Taxonomy.from_file(table, label_set=["b1", "a1", "a2"])
  np.testing.assert_array_equal(tax.coarsen(np.arange(3), "genus"), [1, 0, 0])
  with pytest.raises(TaxonomyError, match="not in the label set"):
    Taxonomy.from_file(table, label_set=["a1", "a2"])
  table.write_text("genus,species\nA,a1\n,a2\n")
  with pytest.raises(TaxonomyError, match="row 3, field 'genus'"):
    Taxonomy.from_file(table)
  edges = tmp_path / "edges.csv"
  edges.write_text("child,parent\na1,A\nA,B\nB,A\n")
  with pytest.raises(TaxonomyError, match="cycle"):
    Taxonomy.from_file(edges, levels=("genus", "species"))
  edges.write_text("child,parent\na1,A\na2,A\nA,\n")
  tax = Taxonomy.from_file(edges, levels=("genus", "species"), label_set=["a2", "a1"])
  assert tax.leaf_names == ("a2", "a1")
