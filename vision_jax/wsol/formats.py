"""Readers of the published localisation layouts, into vision_jax.wsol.data.LocDataset.

- `read_wsoleval`: the metadata layout of clovaai/wsolevaluation (CUB, ILSVRC, OpenImages30k):
  <meta>/<split>/image_ids.txt (path), class_labels.txt (path,label), image_sizes.txt
  (path,width,height) and localization.txt: boxes (path,x0,y0,x1,y1; one line per box) or, for
  OpenImages, masks (path,mask_path,ignore_path; one line per instance mask).
- `read_inatloc500`: iNatLoc500 (Cole et al., ECCV 2022) in its "Choe et al." layout: the same
  files plus class_labels_<level>.txt per split and class_names[_<level>].txt (name,index).
  Two facts differ from its README, checked against the release's own image_size_fix files:
  localization.txt rows are x0,y0,x1,y1 (not x_min,x_max,y_min,y_max: e.g. "35,208,800,437" on
  an 800x600 image), and image_sizes.txt holds width,height (not height,width): the release
  lists that image as "800,600" and its correction file as "600,800" (h,w). With the images at
  hand their real sizes are read from the file headers and used (`info["size_mismatches"]`).
- `read_cub`: CUB-200-2011 as distributed (images.txt, image_class_labels.txt,
  train_test_split.txt, bounding_boxes.txt "id x y width height", classes.txt, images/).

Splits: D_w = train, D_f = val (CUB-200-2011 has none: `val_per_class` train images per class
with their boxes), D_test = test. Every problem names the file, its line and the field.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image

from ecorep.taxonomy import Taxonomy, TaxonomyError
from vision_jax.errors import VisionInputError
from vision_jax.wsol import boxes as box_lib
from vision_jax.wsol.data import FileImages, FileMasks, LocDataset, LocSplit

INATLOC_LEVELS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
SPLITS = ("train", "val", "test")


def read_lines(path: str, columns: int | Sequence[int], *, what: str) -> list[tuple[int, list]]:
  """(line number, fields) of a comma-separated file with no header; blank lines skipped."""
  if not os.path.isfile(path):
    raise VisionInputError(f"missing {what}", file=path)
  allowed = (columns,) if isinstance(columns, int) else tuple(columns)
  out = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      line = line.rstrip("\r\n")
      if not line.strip():
        continue
      fields = [x.strip() for x in line.split(",")]
      if len(fields) not in allowed:
        raise VisionInputError(f"expected {' or '.join(map(str, allowed))} comma-separated "
                               f"fields, found {len(fields)}", file=path, row=line_no,
                               field=what)
      out.append((line_no, fields))
  return out


def _int(value: str, path: str, row: int, field: str) -> int:
  try:
    number = float(value)
  except ValueError:
    raise VisionInputError(f"{value!r} is not a number", file=path, row=row,
                           field=field) from None
  if not np.isfinite(number) or number != int(number):
    raise VisionInputError(f"{value!r} is not an integer", file=path, row=row, field=field)
  return int(number)


def read_labels(path: str, ids: list[str]) -> np.ndarray:
  """class_labels*.txt: one integer label per image of image_ids.txt."""
  table = {}
  for row, (image, label) in read_lines(path, 2, what="labels"):
    table[image] = (_int(label, path, row, "label"), row)
  missing = [i for i in ids if i not in table]
  if missing:
    raise VisionInputError(f"{len(missing)} images have no label (first: {missing[0]})",
                           file=path, field="label")
  return np.array([table[i][0] for i in ids], np.int64)


def read_ids(path: str) -> list[str]:
  ids = [fields[0] for _, fields in read_lines(path, 1, what="image id")]
  if not ids:
    raise VisionInputError("lists no image", file=path)
  seen = set()
  for k, image in enumerate(ids):
    if image in seen:
      raise VisionInputError(f"image {image} listed twice", file=path, row=k + 1, field="path")
    seen.add(image)
  return ids


def read_sizes(path: str, ids: list[str], order: str = "wh") -> dict[str, tuple[int, int]]:
  """image_sizes.txt -> {path: (width, height)}; `order` says which the file lists first."""
  out = {}
  for row, (image, a, b) in read_lines(path, 3, what="image size"):
    a, b = _int(a, path, row, "size"), _int(b, path, row, "size")
    if a <= 0 or b <= 0:
      raise VisionInputError(f"image size {a}x{b} is not positive", file=path, row=row,
                             field="size")
    out[image] = (a, b) if order == "wh" else (b, a)
  missing = [i for i in ids if i not in out]
  if missing:
    raise VisionInputError(f"{len(missing)} images have no size (first: {missing[0]})",
                           file=path, field="size")
  return out


def read_boxes(path: str, ids: list[str]) -> tuple[dict[str, list], dict[str, list]]:
  """localization.txt boxes -> ({path: [(x0, y0, x1, y1)]}, {path: [line numbers]})."""
  known = set(ids)
  boxes, rows = {}, {}
  for row, (image, *coords) in read_lines(path, 5, what="box"):
    if image not in known:
      raise VisionInputError(f"box for {image}, which image_ids.txt does not list", file=path,
                             row=row, field="path")
    x0, y0, x1, y1 = (_int(c, path, row, n) for c, n in zip(coords, ("x0", "y0", "x1", "y1")))
    if x1 < x0 or y1 < y0:
      raise VisionInputError(f"box ({x0}, {y0}, {x1}, {y1}) has x1 < x0 or y1 < y0", file=path,
                             row=row, field="x1" if x1 < x0 else "y1")
    boxes.setdefault(image, []).append((x0, y0, x1, y1))
    rows.setdefault(image, []).append(row)
  return boxes, rows


def check_inside(boxes: dict, rows: dict, sizes: dict, path: str) -> None:
  """Every box inside its (w, h) image: 0 <= x0, x1 <= w (the iNatLoc500 release has x1 = w)."""
  for image, image_boxes in boxes.items():
    w, h = sizes[image]
    for (x0, y0, x1, y1), row in zip(image_boxes, rows[image]):
      if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise VisionInputError(f"box ({x0}, {y0}, {x1}, {y1}) lies outside the {w}x{h} image "
                               f"{image}", file=path, row=row, field="box")


def header_sizes(paths: Sequence[str]) -> list[tuple[int, int]] | None:
  """(w, h) of each image from its header (no decoding); None when the images are absent."""
  if not paths or not os.path.isfile(paths[0]):
    return None
  out = []
  for p in paths:
    try:
      with Image.open(p) as image:
        out.append(image.size)
    except OSError as e:
      raise VisionInputError(f"cannot read image header ({e})", file=p) from e
  return out


def _boxes_fit(boxes: dict, sizes: dict) -> bool:
  return all(x1 <= sizes[i][0] and y1 <= sizes[i][1] for i, bs in boxes.items()
             for (_, _, x1, y1) in bs)


def _eval_split(name: str, meta: str, images_root: str, image_size: int, train_resize: int,
                labels: np.ndarray, ids: list[str], *, size_order: str, info: dict,
                need_boxes: bool) -> LocSplit:
  """A fully labelled split: boxes resized to S x S, or masks."""
  split_dir = os.path.join(meta, name)
  loc = os.path.join(split_dir, "localization.txt")
  paths = tuple(os.path.join(images_root, i) for i in ids)
  images = FileImages(paths, image_size, train_resize)
  first = read_lines(loc, (3, 5), what="localization")[:1]
  if first and len(first[0][1]) == 3:   # OpenImages: instance masks + an ignore mask
    masks, ignore = {}, {}
    for row, (image, mask, ign) in read_lines(loc, 3, what="mask"):
      masks.setdefault(image, []).append(os.path.join(images_root, mask))
      if ign:
        ignore[image] = os.path.join(images_root, ign)
    missing = [i for i in ids if i not in masks]
    if missing:
      raise VisionInputError(f"{len(missing)} images have no mask (first: {missing[0]})",
                             file=loc, field="mask")
    return LocSplit(name, labels, images, masks=FileMasks(
        tuple(tuple(masks[i]) for i in ids), tuple(ignore.get(i, "") for i in ids),
        image_size), ids=tuple(ids))
  boxes, rows = read_boxes(loc, ids)
  missing = [k for k, i in enumerate(ids) if i not in boxes]
  if missing and need_boxes:
    raise VisionInputError(f"image {ids[missing[0]]} has no box ({len(missing)} images have "
                           "none)", file=os.path.join(split_dir, "image_ids.txt"),
                           row=missing[0] + 1, field="box")
  sizes_path = os.path.join(split_dir, "image_sizes.txt")
  order = size_order
  if size_order == "auto":  # the order under which every box fits its image ('wh' if both)
    fits = {o: _boxes_fit(boxes, read_sizes(sizes_path, ids, o)) for o in ("wh", "hw")}
    order = "hw" if fits["hw"] and not fits["wh"] else "wh"
  sizes = read_sizes(sizes_path, ids, order)
  actual = header_sizes(paths)
  if actual is not None:
    wrong = [i for i, a in zip(ids, actual) if sizes[i] != a]
    info[f"{name}_size_mismatches"] = len(wrong)
    info[f"{name}_size_swapped"] = sum(sizes[i] == a[::-1] for i, a in zip(ids, actual)
                                       if sizes[i] != a)
    sizes = dict(zip(ids, actual))
  info[f"{name}_size_order"] = order
  check_inside(boxes, rows, sizes, loc)
  resized = [box_lib.resize_boxes(np.array(boxes.get(i, []), np.int64).reshape(-1, 4),
                                  sizes[i], (image_size, image_size)) for i in ids]
  return LocSplit(name, labels, images, boxes=resized, ids=tuple(ids))


def read_hierarchy(path: str, label_set: Sequence[str], levels: Sequence[str] = ()) -> Taxonomy:
  """A user's hierarchy over `label_set` (data.hierarchy): a level table (CSV whose header
  names the levels, coarsest first) or `child,parent` edges with `levels` (coarsest first), as
  ecorep.taxonomy.Taxonomy.from_file reads them (leaves must be the label set; no cycles)."""
  return Taxonomy.from_file(path, tuple(levels) or None, label_set=label_set)


def _flat(names: Sequence[str], level: str, source: str) -> Taxonomy:
  return Taxonomy.from_table([[n] for n in names], (level,), label_set=names, source=source)


def read_wsoleval(metadata_dir: str, images_dir: str, *, image_size: int = 224,
                  train_resize: int = 256, hierarchy: str = "",
                  hierarchy_levels: Sequence[str] = ()) -> LocDataset:
  """One dataset's folder of the wsolevaluation metadata (e.g. metadata/CUB): train, val, test."""
  info: dict = {"format": "wsolevaluation"}
  splits = {}
  for name in SPLITS:
    ids = read_ids(os.path.join(metadata_dir, name, "image_ids.txt"))
    labels = read_labels(os.path.join(metadata_dir, name, "class_labels.txt"), ids)
    if name == "train":
      paths = tuple(os.path.join(images_dir, i) for i in ids)
      splits[name] = LocSplit(name, labels, FileImages(paths, image_size, train_resize),
                              ids=tuple(ids))
    else:
      splits[name] = _eval_split(name, metadata_dir, images_dir, image_size, train_resize,
                                 labels, ids, size_order="wh", info=info, need_boxes=True)
  num = int(max(s.labels.max() for s in splits.values())) + 1
  names = [str(c) for c in range(num)]
  tax = (read_hierarchy(hierarchy, names, hierarchy_levels) if hierarchy
         else _flat(names, "label", metadata_dir))
  return LocDataset(os.path.basename(os.path.normpath(metadata_dir)), image_size, tax,
                    splits["train"], splits["val"], splits["test"], info)


def _class_names(path: str) -> list[str]:
  """class_names[_<level>].txt: name,index per line, indices 0..K-1 each once."""
  names = {}
  for row, (name, index) in read_lines(path, 2, what="class name"):
    k = _int(index, path, row, "index")
    if k in names:
      raise VisionInputError(f"index {k} named twice", file=path, row=row, field="index")
    names[k] = name
  if sorted(names) != list(range(len(names))):
    raise VisionInputError(f"indices must be 0..{len(names) - 1}", file=path, field="index")
  return [names[k] for k in range(len(names))]


def inatloc_levels(meta: str) -> tuple[str, ...]:
  """The levels a metadata folder has class names for, coarsest first (species always)."""
  return tuple(lvl for lvl in INATLOC_LEVELS[:-1]
               if os.path.isfile(os.path.join(meta, f"class_names_{lvl}.txt"))) + ("species",)


def _inatloc_taxonomy(meta: str, ids: dict[str, list[str]], leaf_labels: dict) -> Taxonomy:
  """The hierarchy the per-level label files imply: every species one node per level."""
  levels = inatloc_levels(meta)
  names = {lvl: _class_names(os.path.join(meta, "class_names.txt" if lvl == "species"
                                          else f"class_names_{lvl}.txt"))
           for lvl in levels}
  path_of = {}   # species index -> [node name per level], with where it was first seen
  for split, split_ids in ids.items():
    columns = {}
    for lvl in levels[:-1]:
      f = os.path.join(meta, split, f"class_labels_{lvl}.txt")
      columns[lvl] = (f, read_labels(f, split_ids))
    for k, species in enumerate(leaf_labels[split]):
      if not 0 <= species < len(names["species"]):
        raise TaxonomyError(f"species label {species} is not in class_names.txt",
                            file=os.path.join(meta, split, "class_labels.txt"), row=k + 1,
                            field="species")
      row = []
      for lvl in levels[:-1]:
        f, col = columns[lvl]
        if not 0 <= col[k] < len(names[lvl]):
          raise TaxonomyError(f"{lvl} label {col[k]} is not in class_names_{lvl}.txt", file=f,
                              row=k + 1, field=lvl)
        row.append(names[lvl][col[k]])
      seen = path_of.setdefault(int(species), (row, f"{split}/class_labels_*.txt", k + 1))
      if seen[0] != row:
        j = [a != b for a, b in zip(seen[0], row)].index(True)
        raise TaxonomyError(
            f"species {names['species'][species]!r} is in {levels[j]} {row[j]!r} here but in "
            f"{seen[0][j]!r} at {seen[1]} line {seen[2]}",
            file=os.path.join(meta, split, f"class_labels_{levels[j]}.txt"), row=k + 1,
            field=levels[j])
  rows = [path_of[s][0] + [names["species"][s]] for s in sorted(path_of)]
  return Taxonomy.from_table(rows, levels, label_set=names["species"],
                             source=os.path.join(meta, "class_labels_*.txt"))


def read_inatloc500(metadata_dir: str, images_dir: str, *, image_size: int = 224,
                    train_resize: int = 256, size_order: str = "auto") -> LocDataset:
  """iNatLoc500: train (D_w), val (D_f, boxes), test (boxes); the levels it names (seven in
  the release: kingdom ... species)."""
  if size_order not in ("auto", "wh", "hw"):
    raise VisionInputError(f"size_order must be auto, wh or hw, got {size_order!r}",
                           field="data.size_order")
  info: dict = {"format": "inatloc500"}
  ids = {s: read_ids(os.path.join(metadata_dir, s, "image_ids.txt")) for s in SPLITS}
  leaf = {s: read_labels(os.path.join(metadata_dir, s, "class_labels.txt"), ids[s])
          for s in SPLITS}
  tax = _inatloc_taxonomy(metadata_dir, ids, leaf)
  train_paths = tuple(os.path.join(images_dir, i) for i in ids["train"])
  train = LocSplit("train", leaf["train"], FileImages(train_paths, image_size, train_resize),
                   ids=tuple(ids["train"]))
  val, test = (_eval_split(s, metadata_dir, images_dir, image_size, train_resize, leaf[s],
                           ids[s], size_order=size_order, info=info, need_boxes=True)
               for s in ("val", "test"))
  return LocDataset("inatloc500", image_size, tax, train, val, test, info)


def _space_table(path: str, columns: int, what: str) -> list[tuple[int, list[str]]]:
  if not os.path.isfile(path):
    raise VisionInputError(f"missing {what}", file=path)
  out = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != columns:
        raise VisionInputError(f"expected {columns} space-separated fields, found "
                               f"{len(fields)}", file=path, row=line_no, field=what)
      out.append((line_no, fields))
  return out


def read_cub(root: str, *, image_size: int = 224, train_resize: int = 256,
             val_per_class: int = 5, seed: int = 0, hierarchy: str = "",
             hierarchy_levels: Sequence[str] = ()) -> LocDataset:
  """CUB-200-2011 (root = the CUB_200_2011 folder or its parent). Boxes "x y width height" in
  pixels become (x, y, x + width, y + height), truncated to int; every box must lie inside its
  image (sizes from the image headers: CUB lists none)."""
  if os.path.isdir(os.path.join(root, "CUB_200_2011")):
    root = os.path.join(root, "CUB_200_2011")
  f = lambda name: os.path.join(root, name)  # noqa: E731
  images = {k: v for _, (k, v) in _space_table(f("images.txt"), 2, "image")}
  labels = {k: _int(v, f("image_class_labels.txt"), r, "class_id")
            for r, (k, v) in _space_table(f("image_class_labels.txt"), 2, "label")}
  is_train = {k: v == "1" for _, (k, v) in _space_table(f("train_test_split.txt"), 2, "split")}
  classes = {_int(k, f("classes.txt"), r, "class_id"): v
             for r, (k, v) in _space_table(f("classes.txt"), 2, "class")}
  boxes, rows = {}, {}
  for r, (k, *xywh) in _space_table(f("bounding_boxes.txt"), 5, "box"):
    x, y, w, h = (float(v) for v in xywh)
    if w < 0 or h < 0:
      raise VisionInputError(f"box width/height ({w}, {h}) is negative",
                             file=f("bounding_boxes.txt"), row=r, field="width")
    boxes[k] = [(int(x), int(y), int(x + w), int(y + h))]
    rows[k] = [r]
  order = sorted(images, key=int)
  for k in order:
    for table, name in ((labels, "image_class_labels.txt"), (is_train, "train_test_split.txt"),
                        (boxes, "bounding_boxes.txt")):
      if k not in table:
        raise VisionInputError(f"image id {k} ({images[k]}) is missing", file=f(name),
                               field="image_id")
  names = [classes[c] for c in sorted(classes)]
  if sorted(classes) != list(range(1, len(classes) + 1)):
    raise VisionInputError("class ids must be 1..K", file=f("classes.txt"), field="class_id")
  paths = {k: os.path.join(root, "images", images[k]) for k in order}
  sizes = dict(zip(order, header_sizes([paths[k] for k in order]) or []))
  if len(sizes) != len(order):
    raise VisionInputError("CUB lists no image sizes: the images must be present",
                           file=os.path.join(root, "images"))
  check_inside({images[k]: boxes[k] for k in order}, {images[k]: rows[k] for k in order},
               {images[k]: sizes[k] for k in order}, f("bounding_boxes.txt"))
  train_ids = [k for k in order if is_train[k]]
  leaf = lambda ks: np.array([labels[k] - 1 for k in ks], np.int64)  # noqa: E731
  rng = np.random.default_rng(seed)
  y = leaf(train_ids)
  val_rows = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:val_per_class]
                                     for c in np.unique(y)]))
  val_ids = [train_ids[i] for i in val_rows]
  weak_ids = [k for i, k in enumerate(train_ids) if i not in set(val_rows.tolist())]
  test_ids = [k for k in order if not is_train[k]]

  def split(name, ks, with_boxes):
    resized = [box_lib.resize_boxes(np.array(boxes[k]), sizes[k], (image_size, image_size))
               for k in ks] if with_boxes else None
    return LocSplit(name, leaf(ks), FileImages(tuple(paths[k] for k in ks), image_size,
                                               train_resize), boxes=resized,
                    ids=tuple(images[k] for k in ks))
  tax = (read_hierarchy(hierarchy, names, hierarchy_levels) if hierarchy
         else _flat(names, "species", f("classes.txt")))
  return LocDataset("cub", image_size, tax, split("train", weak_ids, False),
                    split("val", val_ids, True), split("test", test_ids, True),
                    {"format": "CUB-200-2011", "val_per_class": val_per_class})


def write_inatloc500(ds: LocDataset, root: str) -> tuple[str, str]:
  """Writes an in-memory data set (e.g. the real-pixel set) in the iNatLoc500 layout as the
  release has it (sizes "width,height", boxes "x0,y0,x1,y1", one label file per level):
  <root>/images/<split>/... PNGs and <root>/metadata/. Returns (metadata_dir, images_dir)."""
  tax = ds.taxonomy
  unknown = [lvl for lvl in tax.levels if lvl not in INATLOC_LEVELS]
  if unknown or tax.levels[-1] != "species":
    raise VisionInputError(f"iNatLoc500 levels are {INATLOC_LEVELS}; this hierarchy has "
                           f"{tax.levels}", field="levels")
  meta, images_dir = os.path.join(root, "metadata"), os.path.join(root, "images")
  for lvl in tax.levels:
    name = "class_names.txt" if lvl == "species" else f"class_names_{lvl}.txt"
    _write(os.path.join(meta, name),
           [f"{n},{k}" for k, n in enumerate(tax.names[tax.level(lvl)])])
  for split in (ds.train, ds.val, ds.test):
    ids = [f"{split.name}/{tax.leaf_names[y]}/{k:05d}.png" for k, y in enumerate(split.labels)]
    for k, image_id in enumerate(ids):
      path = os.path.join(images_dir, image_id)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      Image.fromarray(split.images.eval(np.array([k]))[0]).save(path)
    d = os.path.join(meta, split.name)
    _write(os.path.join(d, "image_ids.txt"), ids)
    _write(os.path.join(d, "class_labels.txt"), [f"{i},{y}" for i, y in zip(ids, split.labels)])
    for lvl in tax.levels[:-1]:
      nodes = tax.coarsen(split.labels, lvl)
      _write(os.path.join(d, f"class_labels_{lvl}.txt"), [f"{i},{n}" for i, n in zip(ids, nodes)])
    if split.has_boxes:
      s = ds.image_size
      _write(os.path.join(d, "image_sizes.txt"), [f"{i},{s},{s}" for i in ids])
      _write(os.path.join(d, "localization.txt"),
             [f"{i},{x0},{y0},{x1},{y1}" for i, b in zip(ids, split.boxes)
              for x0, y0, x1, y1 in b])
  return meta, images_dir


def _write(path: str, lines: Sequence[str]) -> None:
  from ecorep.io import write_text
  write_text(path, "".join(line + "\n" for line in lines))
