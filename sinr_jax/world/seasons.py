"""Migratory species: a breeding range occupied around the local summer, a wintering range the
other half of the year (the geo prior's date term has something to learn only if presence
depends on the date).

A migrant's breeding range is its ordinary niche range (niches.py). Its wintering home is a land
cell about cfg.migration_deg equatorward (across the equator when the breeding home is nearer to
it than that) at a similar longitude, drawn with the ordinary home weights; its wintering range
is the niche range around that home with the same radius and tolerances (the optimum is the
wintering home's environment). The truth `World.presence` is the union of both ranges.

Dates are angles on the year circle, angle = 2π·d − π for the day-of-year fraction d ∈ [0, 1)
(the convention of observers.draw_dates). A migrant's breeding season peaks at the local summer
solstice (± a little), its wintering season half a year later; it is present in a cell at a date
when the cell is in the range of the season that date falls in (the half year around its peak).
Residents are present in their range all year.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from sinr_jax.world import niches
from sinr_jax.world.config import WorldConfig

# Day-of-year fraction of 21 June (day index 171 of 365) as a year angle.
NORTH_SUMMER = 2 * np.pi * 171 / 365 - np.pi
_PEAK_JITTER = 0.15  # radians (~9 days) of spread of the breeding peak between species
_LAT_SD, _LON_SD = 5.0, 20.0  # degrees: spread of the wintering home around its target


@dataclasses.dataclass(frozen=True, eq=False)
class Seasons:
  migratory: np.ndarray   # (S,) bool
  peak: np.ndarray        # (S,) float64 year angle of the breeding season's peak
  summer: sp.csr_matrix   # (S, M) bool: cells occupied in the half year around `peak`
  winter: sp.csr_matrix   # (S, M) bool: cells occupied in the other half (residents: = summer)

  @property
  def presence(self) -> sp.csr_matrix:
    """The union of both seasons' ranges: every cell a species is ever present in."""
    union = (self.summer + self.winter).astype(bool).tocsr()
    union.sort_indices()
    return union

  def in_breeding_season(self, species: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Whether day-of-year fraction `day` lies in the half year around species' breeding peak."""
    angle = 2 * np.pi * np.asarray(day, np.float64) - np.pi
    return np.cos(angle - self.peak[species]) >= 0

  def present(self, species: np.ndarray, cell_idx: np.ndarray, day: np.ndarray) -> np.ndarray:
    """(N,) bool: species[i] is present in cell cell_idx[i] on day-of-year fraction day[i]."""
    species, cell_idx = np.asarray(species), np.asarray(cell_idx)
    if len(species) == 0:
      return np.zeros(0, bool)
    in_summer = np.asarray(self.summer[species, cell_idx]).ravel()
    in_winter = np.asarray(self.winter[species, cell_idx]).ravel()
    return np.where(self.in_breeding_season(species, day), in_summer, in_winter)

  def redate(self, rng: np.random.Generator, dates: np.ndarray, species: np.ndarray,
             cell_idx: np.ndarray, kappa: float) -> np.ndarray:
    """`dates` (YYYY-MM-DD) with the day of every migrant observation redrawn around the peak of
    the season whose range holds its cell (a cell in both ranges: either, at random); the year
    stays. Residents' dates are returned unchanged."""
    dates = np.asarray(dates).copy()
    rows = np.flatnonzero(self.migratory[species])
    if len(rows) == 0:
      return dates
    s, m = species[rows], cell_idx[rows]
    in_summer = np.asarray(self.summer[s, m]).ravel()
    in_winter = np.asarray(self.winter[s, m]).ravel()
    coin = rng.random(len(rows)) < 0.5
    breeding = in_summer & (~in_winter | coin)
    angle = rng.vonmises(self.peak[s] + np.where(breeding, 0.0, np.pi), kappa)
    year = dates[rows].astype("U4").astype(np.int64)
    jan1 = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    length = ((year + 1 - 1970).astype("datetime64[Y]").astype("datetime64[D]")
              - jan1).astype(np.int64)
    frac = (angle + np.pi) / (2 * np.pi)
    doy = np.clip((frac * length).astype(np.int64), 0, length - 1)
    dates[rows] = np.datetime_as_string(jan1 + doy, unit="D")
    return dates

  def save_arrays(self) -> dict[str, np.ndarray]:
    out = {"migratory": self.migratory, "peak": self.peak}
    for name in ("summer", "winter"):
      m = getattr(self, name)
      out[f"{name}_indptr"] = m.indptr.astype(np.int64)
      out[f"{name}_indices"] = m.indices.astype(np.int32)
    return out

  @classmethod
  def from_arrays(cls, arrays: dict, num_cells: int) -> "Seasons":
    s = len(arrays["migratory"])

    def csr(name):
      idx = arrays[f"{name}_indices"]
      return sp.csr_matrix((np.ones(len(idx), bool), idx, arrays[f"{name}_indptr"]),
                           shape=(s, num_cells))
    return cls(migratory=arrays["migratory"].astype(bool),
               peak=arrays["peak"].astype(np.float64), summer=csr("summer"), winter=csr("winter"))


def draw_seasons(rng: np.random.Generator, home: np.ndarray, radius_km: np.ndarray,
                 tolerance: np.ndarray, presence: sp.csr_matrix, cell_lonlat: np.ndarray,
                 cell_xyz: np.ndarray, cell_env: np.ndarray, home_weights: np.ndarray,
                 cfg: WorldConfig) -> Seasons:
  """Chooses round(cfg.migratory_fraction · S) migrants and draws their wintering ranges."""
  num_species = len(home)
  migratory = np.zeros(num_species, bool)
  migratory[rng.permutation(num_species)[:int(round(cfg.migratory_fraction * num_species))]] = True
  lat_home = cell_lonlat[home, 1]
  north = lat_home >= 0
  peak = NORTH_SUMMER + np.where(north, 0.0, np.pi) + _PEAK_JITTER * rng.standard_normal(
      num_species)
  peak = np.angle(np.exp(1j * peak))  # back to (−π, π]
  movers = np.flatnonzero(migratory)
  winter_home = np.array([_wintering_home(rng, home[s], cell_lonlat, home_weights,
                                          cfg.migration_deg) for s in movers], np.int64)
  winter_part = niches.presence_matrix(winter_home, radius_km[movers], tolerance[movers],
                                       cell_xyz, cell_env, cfg.suitability_threshold)
  # Winter rows: the wintering range for migrants, the ordinary range for residents.
  keep = sp.diags((~migratory).astype(np.float32))
  place = sp.csr_matrix((np.ones(len(movers), np.float32), (movers, np.arange(len(movers)))),
                        shape=(num_species, len(movers)))
  winter = (keep @ presence.astype(np.float32)
            + place @ winter_part.astype(np.float32)).astype(bool).tocsr()
  winter.sort_indices()
  return Seasons(migratory=migratory, peak=peak, summer=presence.tocsr(), winter=winter)


def _wintering_home(rng, home: int, cell_lonlat: np.ndarray, weights: np.ndarray,
                    migration_deg: float) -> int:
  lon0, lat0 = cell_lonlat[home]
  target = lat0 - (1.0 if lat0 >= 0 else -1.0) * migration_deg
  dlon = (cell_lonlat[:, 0] - lon0 + 180.0) % 360.0 - 180.0
  w = weights * np.exp(-0.5 * ((cell_lonlat[:, 1] - target) / _LAT_SD) ** 2
                       - 0.5 * (dlon / _LON_SD) ** 2)
  if not w.sum() > 0:  # no land near the target (open ocean): the nearest latitude band anywhere
    w = weights * np.exp(-0.5 * ((cell_lonlat[:, 1] - target) / _LAT_SD) ** 2)
  if not w.sum() > 0:
    w = weights
  return int(rng.choice(len(w), p=w / w.sum()))
