"""A simulated presence-only world with known true ranges, on real geography (the default data set).

`make_world(WorldConfig(...))` is deterministic by config; `World.write(dir)` / `load_world(dir)`
persist it in the published SINR file layout; `env_raster`, `land_mask`, `is_land` expose the
packaged real grids (see assets/PROVENANCE.md).
"""
from __future__ import annotations

from sinr_jax.world.assets import env_raster, is_land, land_mask
from sinr_jax.world.config import WorldConfig
from sinr_jax.world.io import load_world
from sinr_jax.world.simulate import World, make_world

__all__ = ["WorldConfig", "World", "make_world", "load_world", "env_raster", "land_mask", "is_land"]
