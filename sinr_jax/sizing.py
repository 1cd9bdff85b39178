"""Settings that scale with the data: the positive weight λ and the learning-rate decay interval.

The reference values (λ = 2048, ×0.98 per epoch) were tuned for 47,375 species and millions of
rows. On a user's own file they misbehave: with one species, λ = 2048 drives σ(z) to 0.999998
almost everywhere (probabilities tie, so thresholds and maps mean nothing), and a few-step epoch
decays the rate to ~1e-5 over a long run. So, unless set explicitly:

- `train.pos_weight = -1` (auto): λ = min(2048, S), S = number of species. In AN-full the optimum
  is ŷ_j(x) ≈ λ·n_j·p_j(x) / (λ·n_j·p_j(x) + N·(q(x) + ρ(x))) with n_j ≈ N/S, so λ/S sets how far
  the model leans towards presence; λ = S keeps the odds at p_j/(q + ρ) (unsaturated), and with
  one species a presence weighs exactly as much as the random location drawn with it. This is the
  geo-prior paper's choice (λ = number of classes) capped at the reference's 2048.
- `train.lr_decay_rows = -1` (auto): the ×`lr_decay` step happens once per epoch, but an epoch
  counts at least 2^17 = 131,072 observations; on the published data (millions of rows per
  epoch) that is the reference schedule, on a 1,500-row file the rate decays once per ~85
  epochs instead of every one. 0 = once per epoch (the reference); > 0 = that many rows.
The `full`, `demo` and `tiny` variants pin the reference values (their recorded figures use them).
"""
from __future__ import annotations

REFERENCE_POS_WEIGHT = 2048.0
AUTO = -1
MIN_ROWS_PER_DECAY = 1 << 17


def pos_weight(setting: float, num_species: int) -> float:
  """λ: the setting, or min(2048, S) when it is -1 (auto)."""
  if setting == AUTO:
    return float(min(REFERENCE_POS_WEIGHT, num_species))
  return float(setting)


def decay_steps(train_cfg, steps_per_epoch: int) -> int:
  """Steps between two ×lr_decay steps of the learning rate."""
  rows = train_cfg.get("lr_decay_rows", 0)
  if rows == AUTO:
    rows = MIN_ROWS_PER_DECAY
  if rows <= 0:
    return steps_per_epoch
  return max(steps_per_epoch, -(-int(rows) // int(train_cfg.batch_size)))


def describe(train_cfg, num_species: int, steps_per_epoch: int) -> str:
  """One log line: the λ and schedule in force and why."""
  lam = pos_weight(train_cfg.pos_weight, num_species)
  why = (f"auto: min(2048, {num_species} species)" if train_cfg.pos_weight == AUTO else "set")
  every = decay_steps(train_cfg, steps_per_epoch)
  rows = train_cfg.get("lr_decay_rows", 0)
  floor = MIN_ROWS_PER_DECAY if rows == AUTO else rows
  how = ("once per epoch" if every == steps_per_epoch
         else f"every {every} steps (an epoch counts at least {floor} rows)")
  return (f"pos_weight {lam:g} ({why}); lr {train_cfg.lr:g} decays x{train_cfg.lr_decay:g} "
          f"{how}")


def validate(train_cfg) -> list[tuple[str, bool, str]]:
  """(key, ok, rule) for the settings this module reads."""
  lam, rows = train_cfg.pos_weight, train_cfg.get("lr_decay_rows", 0)
  return [("train.pos_weight", lam == AUTO or (lam > 0 and lam < float("inf")),
           "a positive number or -1 (auto)"),
          ("train.lr_decay_rows", rows == AUTO or rows >= 0, ">= 0 or -1 (auto)")]
