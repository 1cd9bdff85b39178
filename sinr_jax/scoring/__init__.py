"""All of SINR's scoring of range models, exact AP from ecorep.ranking throughout.

  species.py    score_species: the streaming all-species scorer (AP, F1 threshold, range size)
  cells.py      CellScorer: cells encoded once, species scored in sharded jitted blocks
  ranges.py     evaluate_ranges: range-map MAP against known true ranges (the simulated world)
  locations.py  LocationScores: dense scores at a few evaluation locations (S&T, geo prior)
"""
from sinr_jax.scoring.cells import CellScorer, has_linear_head
from sinr_jax.scoring.locations import LocationScores
from sinr_jax.scoring.ranges import evaluate_ranges
from sinr_jax.scoring.species import (SpeciesScores, cell_areas_km2, plan_blocks, positive_lists,
                                      score_species)

__all__ = ["CellScorer", "LocationScores", "SpeciesScores", "cell_areas_km2", "evaluate_ranges",
           "has_linear_head", "plan_blocks", "positive_lists", "score_species"]
