"""Observation dates → day of year, with the drop-or-raise policy for bad ones.

The geo prior's date input is the day of the year as a fraction d ∈ [0, 1) (day index / days in
that year, so 1 January is 0 in every year and 31 December is 364/365 or 365/366). It enters the
model as t = 2d − 1 ∈ [−1, 1), wrapped as [sin πt, cos πt] (encoding.py), so the year is a circle.

Accepted text: ISO dates `YYYY-MM-DD`, optionally followed by a time (`2012-06-16 17:09:47+00:00`,
`2018-12-31T10:00:00Z`, the forms of iNaturalist's `observed_on` and the geo-prior location
files); the calendar date as written is used (no time-zone shift). Datetime columns (e.g. Parquet
dates) are used as they are. A row is bad when its date is missing (empty / null), unparseable
(other text, an impossible day such as 2012-02-30) or in the future (after `max_date`, default
today): under the "drop" policy such rows are dropped and counted, under "error" the first one
raises SinrInputError naming file, row and field.
"""
from __future__ import annotations

import datetime

import numpy as np
import pandas as pd

from sinr_jax.errors import SinrInputError

POLICIES = ("drop", "error")
REASONS = ("missing_date", "unparseable_date", "future_date")
_ISO_PREFIX = r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:$|[ T])"


def parse_max_date(text: str | None, field: str = "data.max_date") -> datetime.date:
  """'' or None: today; else an ISO date."""
  if not text:
    return datetime.date.today()
  try:
    return datetime.date.fromisoformat(str(text).strip())
  except ValueError:
    raise SinrInputError(f"expected an ISO date YYYY-MM-DD, got {text!r}", field=field) from None


def parse_dates(values, *,
                max_date: datetime.date | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(day-of-year fraction (N,) float64, NaN where bad; reason (N,) int8: 0 good, else the
  1-based index into REASONS)."""
  values = np.asarray(values)
  if values.dtype.kind == "M":
    stamps = pd.Series(values.astype("datetime64[ns]"))
    missing = stamps.isna().to_numpy()
    unparseable = np.zeros(len(values), bool)
  else:
    text = pd.Series(values, dtype=object)
    missing = (text.isna() | (text.astype(str).str.strip() == "")).to_numpy()
    parts = text.astype(str).str.strip().str.extract(_ISO_PREFIX)
    stamps = pd.to_datetime(parts[0] + "-" + parts[1] + "-" + parts[2], format="%Y-%m-%d",
                            errors="coerce")
    unparseable = stamps.isna().to_numpy() & ~missing
  limit = pd.Timestamp(max_date or datetime.date.today())
  future = (stamps.dt.normalize() > limit).fillna(False).to_numpy()
  reason = np.zeros(len(values), np.int8)
  for k, bad in ((3, future), (2, unparseable), (1, missing)):  # first reason wins
    reason[bad] = k
  day = np.full(len(values), np.nan)
  ok = reason == 0
  if ok.any():
    good = stamps[ok]
    day[ok] = ((good.dt.day_of_year - 1) / np.where(good.dt.is_leap_year, 366.0, 365.0)).to_numpy()
  return day, reason


def apply_policy(reason: np.ndarray, policy: str, values, *, file=None, rows=None,
                 field: str = "observed_on") -> dict[str, int]:
  """Counts per REASONS of the bad rows; with policy "error", raises on the first one instead."""
  if policy not in POLICIES:
    raise SinrInputError(f"unknown bad-date policy {policy!r}; choose one of {', '.join(POLICIES)}",
                         field="data.bad_dates")
  bad = np.flatnonzero(reason)
  if len(bad) and policy == "error":
    i = int(bad[0])
    what = {1: "the date is missing", 2: f"{values[i]!r} is not a YYYY-MM-DD date",
            3: f"{values[i]!r} is in the future"}[int(reason[i])]
    raise SinrInputError(f"{what} ({len(bad)} rows with bad dates; data.bad_dates=drop drops "
                         "and counts them)", file=file,
                         row=int(rows[i]) if rows is not None else i, field=field)
  counts = np.bincount(reason, minlength=len(REASONS) + 1)[1:]
  return {name: int(c) for name, c in zip(REASONS, counts) if c}


def wrap_day(day):
  """t = 2d − 1 ∈ [−1, 1) of a day-of-year fraction d (the model's date input before sin/cos)."""
  return 2.0 * day - 1.0
