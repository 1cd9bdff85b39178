"""WorldConfig: every knob of the simulated world, with defaults sized for the demo."""
from __future__ import annotations

import dataclasses

from sinr_jax.errors import SinrInputError


@dataclasses.dataclass(frozen=True)
class WorldConfig:
  """Parameters of a simulated world; `make_world(cfg)` is a pure function of this object."""

  # --- size and randomness ---
  num_species: int = 500  # S; 50 to 50,000 are supported.
  seed: int = 0  # every random draw derives from this through numpy SeedSequence.
  h3_res: int = 3  # H3 resolution of the truth cells (res 3: ~11.7k land cells of ~12,400 km^2).
  num_observations: int = 120_000  # target total N (exact up to rounding unless min/max bind).

  # --- species niches (env channels are z-scored, so tolerances are in standard deviations) ---
  radius_km_median: float = 600.0  # median dispersal radius (great circle) around the home cell.
  radius_log_sigma: float = 0.9  # log-normal spread of the radius: a few species span continents.
  tolerance_median: float = 0.8  # median per-channel niche width (sd of a Gaussian niche).
  tolerance_log_sigma: float = 0.5  # log-normal spread of the species' overall niche width.
  tolerance_channel_sigma: float = 0.3  # extra log-normal jitter of the width per channel.
  breadth_correlation: float = 0.6  # correlation of log radius and log niche width (generalists).
  suitability_threshold: float = 0.5  # present where exp(-d^2/2) >= this (d: scaled env distance).
  home_tropics_deg: float = 40.0  # home weight exp(-|lat|/this): more species nearer the equator.
  home_greenness_weight: float = 0.7  # home weight x exp(this * z-scored Blue Marble greenness).
  home_min_temperature_c: float = -8.0  # no homes colder than this (ice caps) on the temperature proxy.
  home_region_deg: float = 30.0  # homes are flattened over lat/lon blocks of this size so every
  #   continent (and large island) gets species: block weight ~ sqrt(number of eligible cells).

  # --- observation counts ---
  zipf_exponent: float = 1.0  # a in n_s ~ rank^-a; ranks are a random permutation of species.
  min_obs_per_species: int = 5  # every species gets at least this many observations.
  max_obs_per_species: int = 5_000  # and at most this many.

  # --- observers ---
  observer_bandwidth_km: float = 200.0  # Gaussian kernel around each city (weight sqrt(population)).
  observer_bias_exponent: float = 1.5  # kernel sum ** this: how strongly effort clusters at cities.
  observer_floor: float = 0.05  # intensity added everywhere (the sharpened kernel has mean 1 over land).
  jitter_fraction: float = 0.8  # points fall within this fraction of the cell's inscribed circle.
  num_users: int = 300  # simulated observers.
  user_activity_exponent: float = 1.1  # user activity ~ rank^-this (heavy-tailed).
  user_travel_km: float = 800.0  # users observe mostly within ~this distance of their home city.
  user_travel_floor: float = 0.02  # relative chance of observing far from home.

  # --- dates ---
  first_year: int = 2012
  last_year: int = 2023
  yearly_growth: float = 1.3  # observations per year grow by this factor, as on iNaturalist.
  seasonality_mean_kappa: float = 1.0  # mean von Mises concentration of a species' day of year.

  # --- geo prior (seed chapter 7); the defaults leave the world exactly as without them ---
  migratory_fraction: float = 0.0  # share of species that migrate: a breeding range occupied in
  #   its local summer and a wintering range, equatorward, occupied the other half of the year.
  migration_deg: float = 35.0  # the wintering home lies about this far equatorward (degrees lat).
  season_kappa: float = 4.0  # von Mises concentration of a migrant's dates around its season.
  user_groups: int = 0  # taxon groups photographers specialise in (0: no taxon preferences).
  user_group_concentration: float = 0.3  # Dirichlet concentration of a photographer's group
  #   preferences: small values make specialists.
  user_travel_log_sigma: float = 0.0  # log-normal spread of photographers' home-range sizes
  #   around user_travel_km (0: one size for all).

  def __post_init__(self):
    def need(ok: bool, name: str, msg: str):
      if not ok:
        raise SinrInputError(f"{msg}, got {getattr(self, name)!r}", field=name)
    need(1 <= self.num_species <= 2_000_000 - 1, "num_species", "must be in 1..1,999,999")
    need(isinstance(self.seed, int) and self.seed >= 0, "seed", "must be a non-negative int")
    need(0 <= self.h3_res <= 6, "h3_res", "must be in 0..6")
    need(self.num_observations >= 0, "num_observations", "must be >= 0")
    for name in ("radius_km_median", "tolerance_median", "observer_bandwidth_km", "user_travel_km"):
      need(getattr(self, name) > 0, name, "must be > 0")
    for name in ("radius_log_sigma", "tolerance_log_sigma", "tolerance_channel_sigma",
                 "zipf_exponent", "observer_floor", "home_greenness_weight",
                 "observer_bias_exponent", "user_travel_floor", "seasonality_mean_kappa",
                 "season_kappa", "user_travel_log_sigma"):
      need(getattr(self, name) >= 0, name, "must be >= 0")
    need(0 <= self.breadth_correlation <= 1, "breadth_correlation", "must be in [0, 1]")
    need(0 < self.suitability_threshold < 1, "suitability_threshold", "must be in (0, 1)")
    need(0 < self.jitter_fraction < 1, "jitter_fraction", "must be in (0, 1)")
    need(self.home_tropics_deg > 0 and self.home_region_deg > 0, "home_region_deg",
         "home_tropics_deg and home_region_deg must be > 0")
    need(0 <= self.min_obs_per_species <= self.max_obs_per_species, "max_obs_per_species",
         "must be >= min_obs_per_species >= 0")
    need(self.num_users >= 1, "num_users", "must be >= 1")
    need(self.first_year <= self.last_year, "last_year", "must be >= first_year")
    need(self.yearly_growth > 0, "yearly_growth", "must be > 0")
    need(0 <= self.migratory_fraction <= 1, "migratory_fraction", "must be in [0, 1]")
    need(0 < self.migration_deg <= 90, "migration_deg", "must be in (0, 90]")
    need(self.user_groups >= 0, "user_groups", "must be >= 0")
    need(self.user_group_concentration > 0, "user_group_concentration", "must be > 0")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict, *, source: str = "<dict>") -> "WorldConfig":
    """Builds a config from `to_dict` output; unknown or mistyped keys raise SinrInputError."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    for k in d:
      if k not in names:
        raise SinrInputError(f"unknown config key {k!r}", file=source, field=f"config.{k}")
    for k, v in d.items():
      want = int if names[k].type in ("int", int) else float
      if isinstance(v, bool) or not isinstance(v, (int, float)) or (want is int and not isinstance(v, int)):
        raise SinrInputError(f"expected {want.__name__}, got {v!r}", file=source, field=f"config.{k}")
    return cls(**d)
