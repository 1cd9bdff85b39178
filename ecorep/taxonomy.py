"""A consistent label hierarchy (kingdom … species) and the coarsening operator c_k.

Leaves are the finest classes (the label set a model is trained on, indices 0..L-1). Every leaf
has one node at every level and every node one parent, so coarsening is a lookup:

  tax = Taxonomy.from_csv("taxonomy.csv")          # one row per leaf, one column per level
  tax.coarsen(labels, "genus")                     # c_k: leaf index -> genus index
  tax.coarsen(labels, 2)                           # the same, two levels up from the leaves
  tax.coarsen_scores(probs, "family")              # (N, L) leaf probabilities -> (N, families)

Two file layouts: a level table (`from_csv`: columns = levels from coarsest to finest, plus an
optional label column) and parent edges (`from_edges`: child, parent rows, as hierarchy files
that list each node's parent do). Both are validated: missing levels, a node with two parents,
cycles, leaves that are not in the label set and duplicate leaves are errors naming file, row
and field.
"""
from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from ecorep.errors import InputError

DEFAULT_LEVELS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")


class TaxonomyError(InputError):
  """A hierarchy that is not a consistent tree over the label set."""


@dataclasses.dataclass(frozen=True)
class Taxonomy:
  levels: tuple[str, ...]          # coarsest first; the last is the leaf level
  names: tuple[tuple[str, ...], ...]  # names[l][i]: name of node i at level l
  index: np.ndarray                # (L, num_levels) int32: node of every leaf at every level
  source: str = "<memory>"

  @property
  def num_leaves(self) -> int:
    return self.index.shape[0]

  @property
  def leaf_names(self) -> tuple[str, ...]:
    return self.names[-1]

  def level(self, level: str | int) -> int:
    """Column of `level`: a name, or k >= 0 steps up from the leaves (c_k; 0 = the leaves)."""
    if isinstance(level, (int, np.integer)) and not isinstance(level, bool):
      k = int(level)
      if not 0 <= k < len(self.levels):
        raise TaxonomyError(f"level {k} steps up is outside this hierarchy of "
                            f"{len(self.levels)} levels ({', '.join(self.levels)})",
                            file=self.source, field="level")
      return len(self.levels) - 1 - k
    if level not in self.levels:
      raise TaxonomyError(f"unknown level {level!r}; levels: {', '.join(self.levels)}",
                          file=self.source, field="level")
    return self.levels.index(level)

  def num_classes(self, level: str | int) -> int:
    return len(self.names[self.level(level)])

  def coarsen(self, labels, level: str | int) -> np.ndarray:
    """c_k: leaf indices -> node indices at `level` (same shape)."""
    labels = np.asarray(labels)
    if labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0
                        or labels.max() >= self.num_leaves):
      raise TaxonomyError(f"labels must be leaf indices in [0, {self.num_leaves})",
                          file=self.source, field="labels")
    return self.index[labels, self.level(level)]

  def members(self, level: str | int) -> list[np.ndarray]:
    """Leaf indices under every node of `level`."""
    col = self.index[:, self.level(level)]
    return [np.flatnonzero(col == j) for j in range(self.num_classes(level))]

  def coarsen_scores(self, probs, level: str | int) -> np.ndarray:
    """(N, L) leaf probabilities -> (N, classes at `level`): each node sums its leaves, so a
    fine-grained model is re-scored at a coarser level without retraining."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[1] != self.num_leaves:
      raise TaxonomyError(f"scores must be (N, {self.num_leaves}), got {probs.shape}",
                          file=self.source, field="scores")
    onehot = np.zeros((self.num_leaves, self.num_classes(level)))
    onehot[np.arange(self.num_leaves), self.index[:, self.level(level)]] = 1.0
    return probs @ onehot

  # ---- readers ---------------------------------------------------------------------------------

  @classmethod
  def from_table(cls, rows: Sequence[Sequence[str]], levels: Sequence[str], *,
                 label_set: Sequence[str] | None = None, source: str = "<memory>",
                 first_row: int = 0) -> "Taxonomy":
    """One row per leaf: its node name at every level, coarsest first. With `label_set` the
    leaves must be exactly those labels and take their order (leaf i = label_set[i])."""
    levels = tuple(levels)
    if len(levels) < 1:
      raise TaxonomyError("a hierarchy needs at least one level", file=source, field="levels")
    parent: list[dict[str, str]] = [dict() for _ in levels]
    leaves: dict[str, int] = {}
    for r, row in enumerate(rows):
      line = first_row + r
      if len(row) != len(levels):
        raise TaxonomyError(f"expected {len(levels)} levels, found {len(row)}", file=source,
                            row=line, field="levels")
      for lvl, name in enumerate(row):
        if not str(name).strip():
          raise TaxonomyError(f"missing {levels[lvl]}", file=source, row=line, field=levels[lvl])
      row = [str(n).strip() for n in row]
      for lvl in range(1, len(levels)):
        seen = parent[lvl].setdefault(row[lvl], row[lvl - 1])
        if seen != row[lvl - 1]:
          raise TaxonomyError(
              f"{levels[lvl]} {row[lvl]!r} has two parents: {seen!r} and {row[lvl - 1]!r}",
              file=source, row=line, field=levels[lvl])
      if row[-1] in leaves:
        raise TaxonomyError(f"leaf {row[-1]!r} listed twice", file=source, row=line,
                            field=levels[-1])
      leaves[row[-1]] = len(leaves)
    if not leaves:
      raise TaxonomyError("the hierarchy lists no leaf", file=source)
    leaf_order = list(leaves)
    if label_set is not None:
      label_set = [str(x) for x in label_set]
      missing = [x for x in leaf_order if x not in set(label_set)]
      absent = [x for x in label_set if x not in leaves]
      if missing:
        raise TaxonomyError(f"{len(missing)} leaves are not in the label set (first: "
                            f"{missing[:3]})", file=source, field=levels[-1])
      if absent:
        raise TaxonomyError(f"{len(absent)} labels have no place in the hierarchy (first: "
                            f"{absent[:3]})", file=source, field=levels[-1])
      leaf_order = label_set
    # Node ids per level: sorted names (stable across files listing leaves in another order).
    full = [[None] * len(levels) for _ in leaf_order]
    for i, leaf in enumerate(leaf_order):
      name = leaf
      for lvl in range(len(levels) - 1, -1, -1):
        full[i][lvl] = name
        if lvl:
          name = parent[lvl][name]
    names = tuple(tuple(sorted({row[lvl] for row in full})) for lvl in range(len(levels) - 1))
    names = names + (tuple(leaf_order),)
    lookup = [{n: j for j, n in enumerate(ns)} for ns in names]
    index = np.array([[lookup[lvl][row[lvl]] for lvl in range(len(levels))] for row in full],
                     np.int32)
    return cls(levels, names, index, source)

  @classmethod
  def from_csv(cls, path: str | os.PathLike, levels: Sequence[str] | None = None, *,
               label_set: Sequence[str] | None = None) -> "Taxonomy":
    """A CSV with a header naming the levels (default: those of DEFAULT_LEVELS present, in
    that order); other columns are ignored."""
    path = os.fspath(path)
    try:
      with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = list(reader)
    except OSError as e:
      raise TaxonomyError(f"cannot read the hierarchy ({e.strerror})", file=path) from e
    if levels is None:
      levels = [lvl for lvl in DEFAULT_LEVELS if lvl in header]
    missing = [lvl for lvl in levels if lvl not in header]
    if missing or not levels:
      raise TaxonomyError(f"missing level column(s) {missing or list(DEFAULT_LEVELS)}; header: "
                          f"{header}", file=path, row=1, field=(missing or ["levels"])[0])
    table = [[row.get(lvl) or "" for lvl in levels] for row in rows]
    return cls.from_table(table, levels, label_set=label_set, source=path, first_row=2)

  @classmethod
  def from_edges(cls, edges: Sequence[tuple[str, str]], levels: Sequence[str], *,
                 label_set: Sequence[str] | None = None,
                 source: str = "<memory>") -> "Taxonomy":
    """(child, parent) pairs; the root's parent is "" (or absent). Every leaf must sit at the
    same depth, len(levels) nodes from the root level."""
    parent: dict[str, str] = {}
    for r, (child, par) in enumerate(edges):
      child, par = str(child).strip(), str(par or "").strip()
      if child in parent and parent[child] != par:
        raise TaxonomyError(f"{child!r} has two parents: {parent[child]!r} and {par!r}",
                            file=source, row=r, field="parent")
      parent[child] = par
    children = {p for p in parent.values() if p}
    leaves = [c for c in parent if c not in children]
    rows, reached = [], set()
    for leaf in leaves:
      path, node = [], leaf
      while node:
        if node in path:
          raise TaxonomyError(f"cycle through {node!r}: {' -> '.join(path + [node])}",
                              file=source, field="parent")
        path.append(node)
        node = parent.get(node, "")
      reached.update(path)
      if len(path) != len(levels):
        raise TaxonomyError(f"leaf {leaf!r} has {len(path)} levels, the hierarchy "
                            f"{len(levels)} ({', '.join(levels)})", file=source, field="levels")
      rows.append(path[::-1])
    stranded = sorted(set(parent) - reached)
    if stranded:  # nodes no leaf leads to: only a cycle can hold them (every chain has an end)
      raise TaxonomyError(f"cycle among {stranded[:5]}: no leaf leads to these nodes",
                          file=source, field="parent")
    return cls.from_table(rows, levels, label_set=label_set, source=source)

  @classmethod
  def from_file(cls, path: str | os.PathLike, levels: Sequence[str] | None = None, *,
                label_set: Sequence[str] | None = None) -> "Taxonomy":
    """Either layout, told apart by the header: a `parent` column means (child, parent) rows
    (the child column is `child`, `name` or `id`; `levels` required), otherwise a level table
    (from_csv)."""
    path = os.fspath(path)
    try:
      with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = list(reader) if "parent" in header else None
    except OSError as e:
      raise TaxonomyError(f"cannot read the hierarchy ({e.strerror})", file=path) from e
    if rows is None:
      return cls.from_csv(path, levels, label_set=label_set)
    child = next((c for c in ("child", "name", "id") if c in header), None)
    if child is None:
      raise TaxonomyError(f"a parent-edge file needs a child/name/id column; header: {header}",
                          file=path, row=1, field="child")
    if not levels:
      raise TaxonomyError("a parent-edge file needs the names of its levels (coarsest first)",
                          file=path, field="levels")
    edges = [(r.get(child) or "", r.get("parent") or "") for r in rows]
    return cls.from_edges(edges, levels, label_set=label_set, source=path)
