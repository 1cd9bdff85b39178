"""Shared fixtures: small simulated worlds, generated once per session."""
import os

import pytest

from ecorep.config import load_config


@pytest.fixture(scope="session")
def tiny_world_dir(tmp_path_factory, repo_root):
  """The `tiny` config's world (30 species, H3 res 2), written once."""
  from sinr_jax.data import ensure_world
  cfg = load_config(os.path.join(repo_root, "configs/sinr.py:tiny"))
  path = str(tmp_path_factory.mktemp("tiny_world"))
  return ensure_world(path, cfg.data.world.to_dict())


@pytest.fixture
def tiny_config(repo_root, tiny_world_dir):
  """Returns a function building the tiny config with overrides, pointed at the shared world."""
  def make(variant: str = "", overrides=()):
    spec = os.path.join(repo_root, "configs/sinr.py:tiny" + ("," + variant if variant else ""))
    return load_config(spec, [f"data.world_dir={tiny_world_dir}", *overrides])
  return make


@pytest.fixture(scope="session")
def viewer_runs(tmp_path_factory, tiny_world_dir):
  """Two run directories on the tiny world for the range-map viewer, made without training: a
  random location encoder with a species head fitted by least squares to the true ranges (so maps
  look like ranges), each with the config.json that points the viewer at the world."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  from ecorep import io, trainer
  from sinr_jax import rundir
  from sinr_jax.features import make_encoder
  from sinr_jax.models import RangeModel
  from sinr_jax.observations import ClassIndex
  from sinr_jax.predictor import RangePredictor
  from sinr_jax.world import load_world

  world = load_world(tiny_world_dir)
  target = np.where(world.presence.toarray().T, 4.0, -4.0)  # (cells, species) logits to fit
  runs = []
  for name, seed, width in (("run_a", 0, 64), ("run_b", 1, 32)):
    model = RangeModel(num_species=len(world.taxa), input_dim=4, width=width, depth=1,
                       dropout=0.0)
    # Random weights drawn in numpy on the init's shapes: an eager flax init compiles op by op.
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 4))))["params"]
    params = jax.tree.map(lambda s: jnp.asarray(rng.uniform(-1, 1, s.shape) / np.sqrt(
        s.shape[0] if len(s.shape) == 2 else 10.0), jnp.float32), shapes)
    predictor = RangePredictor(model, params, make_encoder("coords"), ClassIndex(world.taxa))
    emb = predictor.embed(world.cell_lonlat[:, 0], world.cell_lonlat[:, 1]).astype(np.float64)
    head = np.linalg.lstsq(emb, target, rcond=None)[0].T
    params = {**params, "species_embedding": jnp.asarray(head, jnp.float32)}
    run = str(tmp_path_factory.mktemp(name))
    spec = rundir.model_spec(num_species=len(world.taxa), input_dim=4, encoder="resfc",
                             width=width, depth=1, dropout=0.0, input_kind="coords",
                             env_raster=None, env_shape=None)
    rundir.write_or_check_model_spec(run, spec, resuming=False)
    ClassIndex(world.taxa).save(os.path.join(run, rundir.TAXA_FILE))
    io.write_json(os.path.join(run, rundir.CONFIG_FILE),
                  {"data": {"train_file": "", "world_dir": tiny_world_dir}})
    trainer.save_checkpoint(os.path.join(run, rundir.CHECKPOINT_DIR),
                            trainer.new_state(params, optax.sgd(0.0)), jax.random.key(0))
    runs.append(run)
  return runs
