"""Readers of the published localisation layouts (tiny fake copies written here in the same
layouts), the real-pixel set, and every bad-input case named in the issue."""
import os

import numpy as np
import pytest
from PIL import Image

from ecorep.taxonomy import TaxonomyError
from vision_jax.errors import VisionInputError
from vision_jax.wsol import formats, synthetic
from vision_jax.wsol.train import level_name

LINEAGE = {  # kingdom ... genus of each species (iNatLoc500's seven levels)
    "Lepomis cyanellus": ("Animalia", "Chordata", "Actinopterygii", "Perciformes",
                          "Centrarchidae", "Lepomis"),
    "Lepomis macrochirus": ("Animalia", "Chordata", "Actinopterygii", "Perciformes",
                            "Centrarchidae", "Lepomis"),
    "Cyprinus carpio": ("Animalia", "Chordata", "Actinopterygii", "Cypriniformes", "Cyprinidae",
                        "Cyprinus"),
}
SPECIES = list(LINEAGE)
# split -> [(species index, (w, h), box x0,y0,x1,y1 or None)]
IMAGES = {"train": [(0, (40, 30), None), (1, (30, 40), None), (2, (36, 36), None),
                    (2, (40, 30), None)],
          "val": [(0, (40, 30), (5, 4, 38, 30)), (1, (30, 40), (2, 20, 30, 39)),
                  (2, (36, 36), (0, 0, 35, 35))],
          "test": [(2, (40, 30), (10, 5, 40, 25)), (1, (30, 40), (0, 0, 10, 10)),
                   (0, (36, 36), (3, 3, 20, 30))]}


def write_lines(path, lines):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("".join(line + "\n" for line in lines))


def fake_inatloc(root, *, size_order="wh", images=True, edit=None):
  """A tiny iNatLoc500 in the release's layout; `edit(split, lines_by_file)` corrupts it."""
  meta, img_dir = str(root / "metadata"), str(root / "images")
  levels = formats.INATLOC_LEVELS
  names = {lvl: sorted({LINEAGE[s][i] for s in SPECIES}) for i, lvl in enumerate(levels[:-1])}
  names["species"] = SPECIES
  for lvl in levels:
    write_lines(os.path.join(meta, "class_names.txt" if lvl == "species"
                             else f"class_names_{lvl}.txt"),
                [f"{n},{k}" for k, n in enumerate(names[lvl])])
  for split, rows in IMAGES.items():
    files = {"image_ids.txt": [], "class_labels.txt": [], "image_sizes.txt": [],
             "localization.txt": []}
    for lvl in levels[:-1]:
      files[f"class_labels_{lvl}.txt"] = []
    for k, (sp, (w, h), box) in enumerate(rows):
      image_id = f"{split}/Actinopterygii/{SPECIES[sp]}/{k:03d}.jpg"
      files["image_ids.txt"].append(image_id)
      files["class_labels.txt"].append(f"{image_id},{sp}")
      for i, lvl in enumerate(levels[:-1]):
        files[f"class_labels_{lvl}.txt"].append(
            f"{image_id},{names[lvl].index(LINEAGE[SPECIES[sp]][i])}")
      files["image_sizes.txt"].append(f"{image_id},{w},{h}" if size_order == "wh"
                                      else f"{image_id},{h},{w}")
      if box is not None:
        files["localization.txt"].append(f"{image_id}," + ",".join(map(str, box)))
      if images:
        path = os.path.join(img_dir, image_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.new("RGB", (w, h), (10 * k, 50, 90)).save(path, format="JPEG")
    if edit is not None:
      edit(split, files)
    for name, lines in files.items():
      if split != "train" or name not in ("image_sizes.txt", "localization.txt"):
        write_lines(os.path.join(meta, split, name), lines)
  return meta, img_dir


def test_inatloc500_reader(tmp_path):
  meta, img = fake_inatloc(tmp_path)
  ds = formats.read_inatloc500(meta, img, image_size=20, train_resize=24)
  tax = ds.taxonomy
  assert tax.levels == formats.INATLOC_LEVELS and tax.leaf_names == tuple(SPECIES)
  assert [tax.names[5][g] for g in tax.coarsen(np.arange(3), "genus")] == [
      "Lepomis", "Lepomis", "Cyprinus"]
  assert tax.num_classes("kingdom") == 1 and tax.num_classes("order") == 2
  assert [len(ds.train), len(ds.val), len(ds.test)] == [4, 3, 3]
  # boxes at 20 x 20, int-truncated as the reference: (5, 4, 38, 30) on 40 x 30
  assert ds.val.boxes[0].tolist() == [[2, 2, 19, 20]]
  assert ds.test.boxes[0].tolist() == [[5, 3, 20, 16]]
  assert ds.info["val_size_order"] == "wh" and ds.info["val_size_mismatches"] == 0
  assert ds.val.images.eval(np.array([1])).shape == (1, 20, 20, 3)
  assert ds.train.images.train(np.array([0, 1]), 3, 0).shape == (2, 20, 20, 3)
  # the correction file's (height, width) order: found from the boxes without the images ...
  meta2, img2 = fake_inatloc(tmp_path / "hw", size_order="hw", images=False)
  ds2 = formats.read_inatloc500(meta2, img2, image_size=20)
  assert ds2.info["test_size_order"] == "hw"
  assert [b.tolist() for b in ds2.test.boxes] == [b.tolist() for b in ds.test.boxes]
  # ... and from the image headers when the images are there (and counted)
  meta3, img3 = fake_inatloc(tmp_path / "hw_images", size_order="hw")
  ds3 = formats.read_inatloc500(meta3, img3, image_size=20, size_order="wh")
  assert ds3.info["test_size_mismatches"] == 2 and ds3.info["test_size_swapped"] == 2  # 1 square
  assert [b.tolist() for b in ds3.test.boxes] == [b.tolist() for b in ds.test.boxes]


def _edit_line(name, index, new):
  def edit(split, files):
    if split == "test":
      files[name][index] = new(files[name][index])
  return edit


@pytest.mark.parametrize("edit, error, match, where", [
    (_edit_line("localization.txt", 1, lambda l: l.rsplit(",", 4)[0] + ",0,0,31,10"),
     VisionInputError, "outside the 30x40 image", ("localization.txt", 2, "box")),
    (_edit_line("localization.txt", 0, lambda l: l.rsplit(",", 4)[0] + ",20,5,10,25"),
     VisionInputError, "x1 < x0", ("localization.txt", 1, "x1")),
    (lambda split, files: files["localization.txt"].pop(2) if split == "test" else None,
     VisionInputError, "has no box", ("image_ids.txt", 3, "box")),
    (_edit_line("class_labels_genus.txt", 1, lambda l: l.rsplit(",", 1)[0] + ",0"),
     TaxonomyError, "'Lepomis macrochirus' is in genus 'Cyprinus' here but in 'Lepomis'",
     ("class_labels_genus.txt", 2, "genus")),
])
def test_inatloc500_bad_files_are_named(tmp_path, edit, error, match, where):
  meta, img = fake_inatloc(tmp_path, edit=edit)
  with pytest.raises(error, match=match) as e:
    formats.read_inatloc500(meta, img, image_size=20)
  assert os.path.basename(e.value.file) == where[0] and (e.value.row, e.value.field) == where[1:]


def test_hierarchies_that_do_not_fit_the_labels(tmp_path):
  meta, img = fake_inatloc(tmp_path)
  with open(os.path.join(meta, "class_names.txt"), "a") as f:
    f.write("Salmo trutta,3\n")                        # a leaf no image has
  with pytest.raises(TaxonomyError, match="no place in the hierarchy"):
    formats.read_inatloc500(meta, img)
  # user hierarchies for flat data sets: leaves must be the label set, no cycles
  table = tmp_path / "tax.csv"
  table.write_text("family,genus,species\nF,G,0\nF,G,1\nF,H,2\n")
  tax = formats.read_hierarchy(str(table), ["0", "1", "2"])
  assert tax.levels == ("family", "genus", "species")
  with pytest.raises(TaxonomyError, match="not in the label set"):
    formats.read_hierarchy(str(table), ["0", "1"])
  edges = tmp_path / "edges.csv"
  edges.write_text("child,parent\nA,B\nB,C\nC,A\n0,A\n")
  with pytest.raises(TaxonomyError, match="cycle"):
    formats.read_hierarchy(str(edges), ["0"], ("x", "y", "z", "w"))
  # a level deeper than the hierarchy, or one it does not have
  assert level_name(tax, "up2") == "family" and level_name(tax, "up0") == "species"
  with pytest.raises(TaxonomyError, match="outside this hierarchy of 3 levels"):
    level_name(tax, "up3")
  with pytest.raises(TaxonomyError, match="unknown level 'order'"):
    level_name(tax, "order")


def test_wsoleval_layout_boxes_and_masks(tmp_path):
  meta, img = str(tmp_path / "CUB"), str(tmp_path / "images")
  rows = {"train": [("train/a.png", 0, (20, 10)), ("train/b.png", 1, (20, 10))],
          "val": [("val/c.png", 1, (20, 10))],
          "test": [("test/d.png", 0, (10, 20)), ("test/e.png", 1, (20, 10))]}
  for split, items in rows.items():
    write_lines(os.path.join(meta, split, "image_ids.txt"), [i for i, _, _ in items])
    write_lines(os.path.join(meta, split, "class_labels.txt"), [f"{i},{y}" for i, y, _ in items])
    write_lines(os.path.join(meta, split, "image_sizes.txt"),
                [f"{i},{w},{h}" for i, _, (w, h) in items])
    for i, _, (w, h) in items:
      os.makedirs(os.path.dirname(os.path.join(img, i)), exist_ok=True)
      Image.new("RGB", (w, h)).save(os.path.join(img, i))
  write_lines(os.path.join(meta, "val", "localization.txt"), ["val/c.png,0,0,9,9"])
  write_lines(os.path.join(meta, "test", "localization.txt"),   # two boxes for one image
              ["test/d.png,0,0,9,9", "test/d.png,2,10,5,19", "test/e.png,10,0,19,9"])
  ds = formats.read_wsoleval(meta, img, image_size=10)
  assert ds.taxonomy.levels == ("label",) and ds.taxonomy.num_leaves == 2
  assert ds.test.boxes[0].tolist() == [[0, 0, 9, 4], [2, 5, 5, 9]]
  # OpenImages: instance masks and an ignore mask instead of boxes
  mask = np.zeros((10, 20), np.uint8)
  mask[2:6, 3:9] = 255
  ignore = np.zeros((10, 20), np.uint8)
  ignore[0:8, 0:12] = 255
  for name, array in (("m1.png", mask), ("ign.png", ignore), ("m2.png", mask[:, ::-1])):
    Image.fromarray(array).save(os.path.join(img, "test", name))
  write_lines(os.path.join(meta, "test", "localization.txt"),
              ["test/d.png,test/m1.png,test/ign.png", "test/d.png,test/m2.png,",
               "test/e.png,test/m2.png,"])
  ds = formats.read_wsoleval(meta, img, image_size=20)
  assert ds.test.boxes is None
  m = ds.test.masks(np.array([0]))[0]
  fg = (mask > 0) | (mask[:, ::-1] > 0)
  expected = np.where(fg, 1, np.where(ignore > 0, 255, 0))
  np.testing.assert_array_equal(m, np.asarray(Image.fromarray(expected.astype(np.uint8)).resize(
      (20, 20), Image.Resampling.NEAREST)))


def test_cub_reader(tmp_path):
  root = tmp_path / "CUB_200_2011"
  sizes = {1: (30, 20), 2: (20, 30), 3: (30, 30), 4: (25, 25)}
  write_lines(str(root / "images.txt"), [f"{k} 00{1 + (k > 2)}.Bird/img{k}.jpg" for k in sizes])
  write_lines(str(root / "image_class_labels.txt"), [f"{k} {1 + (k > 2)}" for k in sizes])
  write_lines(str(root / "train_test_split.txt"), [f"{k} {int(k % 2 == 1)}" for k in sizes])
  write_lines(str(root / "classes.txt"), ["1 001.Albatross", "2 002.Auklet"])
  write_lines(str(root / "bounding_boxes.txt"),
              ["1 2.0 3.0 20.0 10.0", "2 0.0 0.0 19.0 29.0", "3 5.5 5.5 10.0 10.0",
               "4 1.0 1.0 30.0 2.0"])
  for k, (w, h) in sizes.items():
    path = root / "images" / f"00{1 + (k > 2)}.Bird" / f"img{k}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h)).save(path)
  with pytest.raises(VisionInputError, match="outside the 25x25 image") as e:
    formats.read_cub(str(tmp_path), image_size=10, val_per_class=1)
  assert e.value.row == 4
  write_lines(str(root / "bounding_boxes.txt"),
              ["1 2.0 3.0 20.0 10.0", "2 0.0 0.0 19.0 29.0", "3 5.5 5.5 10.0 10.0",
               "4 1.0 1.0 20.0 2.0"])
  ds = formats.read_cub(str(tmp_path), image_size=10, val_per_class=1)
  assert ds.taxonomy.leaf_names == ("001.Albatross", "002.Auklet")
  assert (len(ds.train), len(ds.val), len(ds.test)) == (0, 2, 2)
  assert ds.val.boxes[0].tolist() == [[0, 1, 7, 6]]    # (2, 3, 22, 13) on 30 x 20


def test_real_pixel_set_is_exact_and_round_trips(tmp_path):
  cfg = synthetic.SyntheticConfig(image_size=24, train_per_class=1, val_per_class=1,
                                  test_per_class=1, seed=3)
  ds = synthetic.make_dataset(cfg)
  tax = ds.taxonomy
  assert tax.levels == synthetic.LEVELS
  assert [tax.num_classes(lvl) for lvl in tax.levels] == [1, 2, 5, 10]
  assert set(tax.coarsen(np.array([3, 5, 8]), "family")) == {tax.names[2].index("bellies")}
  masks = ds.test.masks(np.arange(len(ds.test)))
  for k, (mask, box) in enumerate(zip(masks, ds.test.boxes)):
    ys, xs = np.nonzero(mask)
    assert box.tolist() == [[xs.min(), ys.min(), xs.max(), ys.max()]]
  again = synthetic.make_dataset(cfg)
  np.testing.assert_array_equal(again.test.images.images, ds.test.images.images)
  meta, img = formats.write_inatloc500(ds, str(tmp_path))
  back = formats.read_inatloc500(meta, img, image_size=24, train_resize=24)
  assert back.taxonomy.levels == tax.levels and back.taxonomy.leaf_names == tax.leaf_names
  np.testing.assert_array_equal(back.taxonomy.index, tax.index)
  for a, b in ((ds.val, back.val), (ds.test, back.test)):
    np.testing.assert_array_equal(a.labels, b.labels)
    assert [x.tolist() for x in a.boxes] == [x.tolist() for x in b.boxes]
    np.testing.assert_array_equal(a.images.eval(np.arange(len(a))),
                                  b.images.eval(np.arange(len(b))))


def test_fsl_seg_batches_flip_images_and_box_masks_together():
  from vision_jax.wsol import baselines, runs
  from vision_jax.wsol.data import ArrayImages, LocSplit
  images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), np.uint8)
  boxes = [np.array([[k, 0, k + 1, 3]]) for k in range(6)]
  for flip in (True, False):
    split = LocSplit("val", np.zeros(6), ArrayImages(images, flip=flip), boxes=boxes)
    masks = baselines.box_masks(split, 8)
    assert masks[2].sum() == 8 and masks[2][0:4, 2:4].all()
    flipped = 0
    for step in range(4):
      b = runs.MaskReader(split.images, masks, seed=1)(np.arange(6), step)
      for k in range(6):
        mirrored = not np.array_equal(b["image"][k], images[k])
        np.testing.assert_array_equal(b["image"][k], images[k][:, ::-1] if mirrored else images[k])
        np.testing.assert_array_equal(b["mask"][k], masks[k][:, ::-1] if mirrored else masks[k])
        flipped += mirrored
    assert (flipped > 0) == flip
