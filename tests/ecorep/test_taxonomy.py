"""The shared label hierarchy: coarsening against hand-built tables, re-scoring, bad files."""
import numpy as np
import pytest

from ecorep.taxonomy import Taxonomy, TaxonomyError

LEVELS = ("family", "genus", "species")
ROWS = [("Felidae", "Panthera", "leo"), ("Felidae", "Panthera", "tigris"),
        ("Felidae", "Felis", "catus"), ("Canidae", "Canis", "lupus")]


def test_coarsening_and_rescoring():
  tax = Taxonomy.from_table(ROWS, LEVELS)
  assert tax.leaf_names == ("leo", "tigris", "catus", "lupus")
  assert tax.names[0] == ("Canidae", "Felidae") and tax.names[1] == ("Canis", "Felis", "Panthera")
  labels = np.array([0, 1, 2, 3, 3])
  np.testing.assert_array_equal(tax.coarsen(labels, "genus"), [2, 2, 1, 0, 0])
  np.testing.assert_array_equal(tax.coarsen(labels, 2), [1, 1, 1, 0, 0])  # c_2 = family
  np.testing.assert_array_equal(tax.coarsen(labels, 0), labels)
  probs = np.array([[0.5, 0.2, 0.2, 0.1], [0.0, 0.1, 0.3, 0.6]])
  np.testing.assert_allclose(tax.coarsen_scores(probs, "family"), [[0.1, 0.9], [0.6, 0.4]])
  np.testing.assert_allclose(tax.coarsen_scores(probs, "genus"), [[0.1, 0.2, 0.7],
                                                                 [0.6, 0.3, 0.1]])
  assert [m.tolist() for m in tax.members("genus")] == [[3], [2], [0, 1]]
  # Leaves take the label set's order.
  ordered = Taxonomy.from_table(ROWS, LEVELS, label_set=["lupus", "catus", "leo", "tigris"])
  np.testing.assert_array_equal(ordered.coarsen(np.arange(4), "family"), [0, 1, 1, 1])


def test_csv_and_edges_agree(tmp_path):
  path = tmp_path / "tax.csv"
  path.write_text("id,family,genus,species\n" + "".join(
      f"{i},{f},{g},{s}\n" for i, (f, g, s) in enumerate(ROWS)))
  a = Taxonomy.from_csv(path)
  assert a.levels == LEVELS
  edges = [("Felidae", ""), ("Canidae", ""), ("Panthera", "Felidae"), ("Felis", "Felidae"),
           ("Canis", "Canidae"), ("leo", "Panthera"), ("tigris", "Panthera"),
           ("catus", "Felis"), ("lupus", "Canis")]
  b = Taxonomy.from_edges(edges, LEVELS, label_set=a.leaf_names)
  np.testing.assert_array_equal(a.index, b.index)


def test_bad_hierarchies_are_named(tmp_path):
  with pytest.raises(TaxonomyError, match="two parents") as e:
    Taxonomy.from_table(ROWS + [("Canidae", "Felis", "silvestris")], LEVELS)
  assert e.value.field == "genus"
  with pytest.raises(TaxonomyError, match="missing genus") as e:
    Taxonomy.from_table([("Felidae", "", "leo")], LEVELS)
  assert e.value.row == 0
  with pytest.raises(TaxonomyError, match="not in the label set"):
    Taxonomy.from_table(ROWS, LEVELS, label_set=["leo", "tigris", "catus"])
  with pytest.raises(TaxonomyError, match="no place in the hierarchy"):
    Taxonomy.from_table(ROWS, LEVELS, label_set=["leo", "tigris", "catus", "lupus", "rufus"])
  with pytest.raises(TaxonomyError, match="cycle"):
    Taxonomy.from_edges([("a", "b"), ("b", "c"), ("c", "a"), ("x", "y"), ("y", "")],
                        ("g", "s"))
  with pytest.raises(TaxonomyError, match="has 2 levels"):
    Taxonomy.from_edges([("Felidae", ""), ("leo", "Felidae")], LEVELS)
  path = tmp_path / "t.csv"
  path.write_text("family,species\nFelidae,leo\n")
  with pytest.raises(TaxonomyError, match="missing level column") as e:
    Taxonomy.from_csv(path, levels=LEVELS)
  assert e.value.field == "genus"
  tax = Taxonomy.from_table(ROWS, LEVELS)
  with pytest.raises(TaxonomyError, match="level 3 steps up is outside"):
    tax.coarsen([0], 3)
  with pytest.raises(TaxonomyError, match="unknown level 'order'"):
    tax.coarsen([0], "order")
