"""Published-format readers: the simulated files read back as what the generator meant, and every
kind of bad evaluation file is refused with SinrInputError (or skipped and counted)."""
import json
import shutil

import numpy as np
import pytest
import tifffile

from sinr_jax import evaluators, grid
from sinr_jax.errors import SinrInputError
from sinr_jax.evaluators import readers, sim_geo_feature, sim_geo_prior, simulated


@pytest.fixture(scope="module")
def world_dir(request, tmp_path_factory):
  try:  # the suite's shared tiny world, when tests/sinr/conftest.py provides it
    return request.getfixturevalue("tiny_world_dir")
  except pytest.FixtureLookupError:
    from sinr_jax.world import WorldConfig, make_world
    path = tmp_path_factory.mktemp("world")
    make_world(WorldConfig(num_species=30, seed=0, h3_res=2)).write(path)
    return str(path)


@pytest.fixture(scope="module")
def world(world_dir):
  from sinr_jax.world import load_world
  return load_world(world_dir)


@pytest.fixture(scope="module")
def sim_dir(world_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("sim") / "eval_data"
  simulated.ensure_simulated(world_dir, out)
  return out


def test_simulated_snt_and_iucn_read_back(sim_dir, world):
  assert simulated.verified_simulated(sim_dir, world.config.to_dict(), 0) is not None
  with pytest.raises(SinrInputError, match="pickle"):
    readers.read_snt(sim_dir / "eval/snt/snt_res_5.npy")
  snt = readers.read_snt(sim_dir / "eval/snt/snt_res_5.npy", allow_pickle=True)
  assert len(snt.taxa) >= 1 and set(snt.taxa) <= set(world.taxa.tolist())
  lon, lat = snt.obs_locs[:, 0], snt.obs_locs[:, 1]
  assert (lon >= -170).all() and (lon <= -50).all() and (lat >= 7).all() and (lat <= 75).all()
  rows = {int(t): i for i, t in enumerate(world.taxa)}
  cell_of = {c: i for i, c in enumerate(grid.lonlat_to_cells(snt.obs_locs, world.config.h3_res))}
  for t, idx, y in zip(snt.taxa, snt.loc_indices, snt.labels):
    assert y.sum() >= 4 and (~y).sum() >= 4  # both labels, for a meaningful split
    truth = set(world.presence[rows[int(t)]].indices.tolist())
    cells = grid.lonlat_to_cells(snt.obs_locs[idx], world.config.h3_res)
    world_idx = np.searchsorted(world.cells, cells)
    np.testing.assert_array_equal(y, [i in truth for i in world_idx])
  assert len(cell_of) == len(snt.obs_locs)
  iucn = readers.read_iucn(sim_dir / "eval/iucn/iucn_res_5.json")
  np.testing.assert_allclose(iucn.locs, world.cell_lonlat, atol=1e-5)
  for t, cells in zip(iucn.taxa, iucn.presence):
    truth = world.presence[rows[int(t)]].indices
    assert np.isin(truth, cells).all()  # an expert range covers the true range...
  sizes = np.array([len(c) for c in iucn.presence])
  assert sizes.sum() > world.presence.nnz  # ...and smooths over some gaps


def test_simulated_geo_prior_reads_back(sim_dir, world):
  gp = readers.read_geo_prior(sim_dir / "eval/geo_prior/geo_prior_model_preds.npz",
                              sim_dir / "eval/geo_prior/geo_prior_model_meta.csv")
  np.testing.assert_array_equal(gp.model_to_taxa, world.taxa)
  assert (np.diff(gp.probs, axis=1) >= 0).all()  # ascending: the top-1 is last
  top1 = gp.inds[:, -1] == gp.labels
  assert 0.6 <= top1.mean() <= 0.75
  genus = sim_geo_prior.genera(world, 5)
  wrong = ~top1
  assert (genus[gp.inds[wrong, -1]] == genus[gp.labels[wrong]]).mean() > 0.5  # look-alikes
  has = np.isfinite(gp.lonlat).all(1)
  assert 0.005 < 1 - has.mean() < 0.05
  cells = grid.lonlat_to_cells(gp.lonlat[has], world.config.h3_res)
  cell_idx = np.searchsorted(world.cells, cells)
  assert all(world.presence[s, c] for s, c in zip(gp.labels[has], cell_idx))  # true locations


def test_simulated_geo_feature_reads_back(sim_dir):
  gf = readers.read_geo_feature(sim_dir / "eval/geo_feature", sim_dir / "masks/USA_MASK.tif")
  assert tuple(gf.layers) == sim_geo_feature.LAYERS and gf.log1p == ("POPULATION_DENSITY",)
  ys, xs = np.nonzero(gf.mask)
  lon, lat = np.linspace(-180, 180, gf.mask.shape[1]), np.linspace(90, -90, gf.mask.shape[0])
  assert lon[xs].min() >= -125 and lon[xs].max() <= -66.5 and lat[ys].min() >= 24.5
  for r in gf.layers.values():
    assert r.shape == gf.mask.shape and np.isfinite(r[gf.mask]).all()
  from sinr_jax.world import assets
  rows, cols = assets.raster_index(lon[xs], lat[ys])
  np.testing.assert_array_equal(gf.layers["ELEVATION"][ys, xs],
                                assets.grids()["elevation_m"][rows, cols])
  pop = gf.layers["POPULATION_DENSITY"][gf.mask]
  assert pop.max() > 100 * np.median(pop)  # cities stand out: why the evaluator log-transforms


def test_generation_is_deterministic_and_tampering_is_caught(sim_dir, world, world_dir, tmp_path):
  again = simulated.write_simulated(world, tmp_path / "again")
  assert again["files"] == json.loads((sim_dir / "simulated.json").read_text())["files"]
  (tmp_path / "again/eval/snt/snt_res_5.npy").write_bytes(b"\x93NUMPY tampered")
  assert simulated.verified_simulated(tmp_path / "again") is None
  simulated.ensure_simulated(world_dir, tmp_path / "again")  # regenerates
  assert simulated.verified_simulated(tmp_path / "again") is not None
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine/notes.txt").write_text("keep")
  with pytest.raises(SinrInputError, match="refusing to replace"):
    simulated.ensure_simulated(world_dir, tmp_path / "mine")
  assert (tmp_path / "mine/notes.txt").read_text() == "keep"


# ---------------------------------------------------------------- bad input


def save_snt(path, **changes):
  d = {"taxa": np.array([1, 2]), "obs_locs": np.array([[0, 0], [10, 10], [20, 20]], np.float32),
       "obs_locs_idx": np.arange(3), "loc_indices_per_species": [np.array([0, 1]), np.array([2])],
       "labels_per_species": [np.array([1, 0]), np.array([1])]}
  d.update(changes)
  for k in [k for k, v in changes.items() if v is None]:
    del d[k]
  np.save(path, np.asarray(d, dtype=object), allow_pickle=True)
  return path


@pytest.mark.parametrize("key", ["taxa", "obs_locs", "loc_indices_per_species",
                                 "labels_per_species"])
def test_snt_missing_key(tmp_path, key):
  with pytest.raises(SinrInputError, match="missing key") as e:
    readers.read_snt(save_snt(tmp_path / "s.npy", **{key: None}), allow_pickle=True)
  assert e.value.field == key


@pytest.mark.parametrize("change,field", [
    ({"obs_locs": np.zeros((3, 3))}, "obs_locs"),
    ({"obs_locs": np.array([[0, 0], [200, 0], [0, 0]])}, "obs_locs"),
    ({"taxa": np.array([1, 1])}, "taxa"),
    ({"loc_indices_per_species": [np.array([0, 1])]}, "loc_indices_per_species"),
    ({"loc_indices_per_species": [np.array([0, 5]), np.array([2])]}, "loc_indices_per_species[0]"),
    ({"labels_per_species": [np.array([1]), np.array([1])]}, "labels_per_species[0]"),
    ({"labels_per_species": [np.array([1, -1]), np.array([1])]}, "labels_per_species[0]"),
    ({"labels_per_species": [np.array([1, np.nan]), np.array([1])]}, "labels_per_species[0]"),
    ({"labels_per_species": [np.array(["1", "0"]), np.array([1])]}, "labels_per_species[0]"),
])
def test_snt_wrong_shapes_and_values(tmp_path, change, field):
  with pytest.raises(SinrInputError) as e:
    readers.read_snt(save_snt(tmp_path / "s.npy", **change), allow_pickle=True)
  assert e.value.field == field


def test_snt_pickle_refused_unless_allowed_and_only_arrays(tmp_path):
  path = save_snt(tmp_path / "snt_res_5.npy")
  with pytest.raises(SinrInputError, match=r"pickle.*allow_pickle=True \(CLI: --allow_pickle\)"):
    evaluators.make("snt", str(tmp_path))
  assert evaluators.make("snt", str(tmp_path), allow_pickle=True).data.taxa.tolist() == [1, 2]
  marker = tmp_path / "pwned"

  class Evil:
    def __reduce__(self):
      return (marker.touch, ())
  np.save(path, np.asarray({"taxa": Evil()}, dtype=object), allow_pickle=True)
  with pytest.raises(SinrInputError, match="refusing to load"):
    readers.read_snt(path, allow_pickle=True)
  assert not marker.exists()
  np.save(path, np.arange(4))
  with pytest.raises(SinrInputError, match="expected a pickled dict"):
    readers.read_snt(path, allow_pickle=True)
  np.save(path, np.asarray([1, "a"], dtype=object), allow_pickle=True)
  with pytest.raises(SinrInputError, match="expected a pickled dict"):
    readers.read_snt(path, allow_pickle=True)
  path.write_bytes(b"not numpy")
  with pytest.raises(SinrInputError, match="not a .npy file"):
    readers.read_snt(path, allow_pickle=True)


def write_json(path, obj):
  path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
  return path


@pytest.mark.parametrize("obj,field", [
    ({"taxa_presence": {}}, "locs"),
    ({"locs": [[0, 0]]}, "taxa_presence"),
    ({"locs": [[0, 0, 0]], "taxa_presence": {}}, "locs"),
    ({"locs": [[0, 0]], "taxa_presence": {"5": [1]}}, "taxa_presence[5]"),
    ({"locs": [[0, 0]], "taxa_presence": {"x": [0]}}, "taxa_presence[x]"),
    ({"locs": [[0, 0]], "taxa_presence": {"5": [0.5]}}, "taxa_presence[5]"),
    ({"locs": [[0, 0]], "taxa_presence": {"5": 0}}, "taxa_presence[5]"),
    ({"locs": [[0, 0]], "taxa_presence": [1]}, "taxa_presence"),
    ("{not json", None),
])
def test_iucn_bad_files(tmp_path, obj, field):
  with pytest.raises(SinrInputError) as e:
    readers.read_iucn(write_json(tmp_path / "iucn_res_5.json", obj))
  assert e.value.field == field


def save_geo_prior(d, meta="latitude,longitude\n1,2\n3,4\n", **changes):
  arrays = {"probs": np.array([[0.2, 0.8], [0.4, 0.6]], np.float32),
            "inds": np.array([[0, 1], [1, 2]]), "labels": np.array([1, 2]),
            "model_to_taxa": np.array([7, 8, 9])}
  arrays.update(changes)
  np.savez(d / "geo_prior_model_preds.npz", **{k: v for k, v in arrays.items() if v is not None})
  (d / "geo_prior_model_meta.csv").write_text(meta)
  return d


@pytest.mark.parametrize("changes,field,row", [
    ({"probs": None}, "probs", None),
    ({"model_to_taxa": None}, "model_to_taxa", None),
    ({"inds": np.array([[0, 1]])}, "inds", None),
    ({"inds": np.array([[0, 1], [1, 3]])}, "inds", None),
    ({"labels": np.array([1, -1])}, "labels", None),
    ({"probs": np.array([[0.2, 1.8], [0.4, 0.6]])}, "probs", None),
    ({"meta": "latitude,longitude\n1,2\n"}, None, None),
    ({"meta": "lat,longitude\n1,2\n3,4\n"}, "latitude", None),
    ({"meta": "latitude,longitude\n1,2\nabc,4\n"}, "latitude", 3),
    ({"meta": "latitude,longitude\n1,2\n95,4\n"}, "latitude/longitude", 3),
])
def test_geo_prior_bad_files(tmp_path, changes, field, row):
  save_geo_prior(tmp_path, **changes)
  with pytest.raises(SinrInputError) as e:
    evaluators.make("geo_prior", str(tmp_path))
  assert (e.value.field, e.value.row) == (field, row)


def test_geo_prior_object_array_refused_and_missing_locations_counted(tmp_path):
  save_geo_prior(tmp_path, model_to_taxa=np.array([7, "x", None], dtype=object))
  with pytest.raises(SinrInputError, match="pickle"):
    evaluators.make("geo_prior", str(tmp_path))
  save_geo_prior(tmp_path, meta="latitude,longitude\n,\nnan,4\n")
  ev = evaluators.make("geo_prior", str(tmp_path))
  assert np.isnan(ev.data.lonlat).all()


def write_rasters(d, mask_shape=(6, 12), shapes=None, manifest=True):
  (d / "eval/geo_feature").mkdir(parents=True, exist_ok=True)
  (d / "masks").mkdir(exist_ok=True)
  tifffile.imwrite(d / "masks/USA_MASK.tif", np.ones(mask_shape, np.uint8))
  for name, shape in (shapes or {"A": mask_shape, "B": mask_shape}).items():
    tifffile.imwrite(d / f"eval/geo_feature/{name}.tif", np.ones(shape, np.float32))
  if manifest:
    (d / "eval/geo_feature/layers.json").write_text(json.dumps({"layers": ["A", "B"]}))
  return d


def test_geo_feature_raster_shape_must_match_mask(tmp_path):
  write_rasters(tmp_path, shapes={"A": (6, 12), "B": (6, 13)})
  with pytest.raises(SinrInputError, match="does not match the mask") as e:
    evaluators.make("geo_feature", str(tmp_path))
  assert e.value.field == "shape" and e.value.file.endswith("B.tif")


def test_geo_feature_missing_layer_mask_and_bad_manifest(tmp_path):
  write_rasters(tmp_path, shapes={"A": (6, 12)})
  with pytest.raises(SinrInputError, match="raster file not found") as e:
    evaluators.make("geo_feature", str(tmp_path))
  assert e.value.field == "B"
  shutil.rmtree(tmp_path / "eval/geo_feature")
  write_rasters(tmp_path, manifest=False)  # no manifest: the published nine names are required
  with pytest.raises(SinrInputError, match="raster file not found") as e:
    evaluators.make("geo_feature", str(tmp_path))
  assert e.value.field == readers.GEO_FEATURE_LAYERS[0]
  (tmp_path / "eval/geo_feature/layers.json").write_text('{"layer": ["A"]}')
  with pytest.raises(SinrInputError, match="layers"):
    evaluators.make("geo_feature", str(tmp_path))
  (tmp_path / "masks/USA_MASK.tif").unlink()
  with pytest.raises(SinrInputError, match="USA_MASK.tif not found"):
    evaluators.make("geo_feature", str(tmp_path))


@pytest.mark.parametrize("task", evaluators.TASKS)
def test_missing_files_and_dirs(tmp_path, task):
  with pytest.raises(SinrInputError, match="not found"):
    evaluators.make(task, str(tmp_path / "nowhere"))
  if task != "geo_feature":  # an empty directory is a flat layout without the mask
    with pytest.raises(SinrInputError, match="not found"):
      evaluators.make(task, str(tmp_path))
