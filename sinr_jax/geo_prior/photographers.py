"""Photographer (observer) index: user ids of the training file → rows of the embedding P.

Users with at least `min_count` training observations get their own index (in sorted order of
their ids); everyone else, users unknown at training time and rows without a user id share the
last index, "other". Ids are compared as text: 17, 17.0 and "17" are one user (ids read through
pandas come out as floats when a column has gaps). Saved as photographers.json in the run.
"""
from __future__ import annotations

import numpy as np

from ecorep import io
from sinr_jax.errors import SinrInputError

FORMAT = "sinr_jax.geo_prior.photographers/1"


def user_keys(values) -> np.ndarray:
  """Object array of normalised id text, None where the id is missing (null, NaN, empty)."""
  out = np.empty(len(values), dtype=object)
  for i, v in enumerate(np.asarray(values, dtype=object).tolist()):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
      out[i] = None
    elif isinstance(v, (float, np.floating)) and float(v).is_integer():
      out[i] = str(int(v))
    else:
      text = str(v).strip()
      out[i] = text if text and text.lower() not in ("nan", "none", "null") else None
  return out


class PhotographerIndex:
  def __init__(self, users, counts, other_count: int, min_count: int):
    self.users = np.asarray(users, dtype=object)        # sorted id text of the kept users
    self.counts = np.asarray(counts, np.int64)          # their training observations
    self.other_count = int(other_count)                 # observations in the "other" bucket
    self.min_count = int(min_count)
    self._lookup = {u: i for i, u in enumerate(self.users.tolist())}

  @classmethod
  def from_users(cls, values, min_count: int) -> "PhotographerIndex":
    if min_count < 1:
      raise SinrInputError(f"must be at least 1, got {min_count}",
                           field="data.min_photographer_obs")
    keys = user_keys(values)
    present = keys[keys != None]  # noqa: E711  (elementwise on an object array)
    uniq, counts = np.unique(present.astype(str), return_counts=True)
    keep = counts >= min_count
    return cls(uniq[keep].astype(object), counts[keep], int(len(keys) - counts[keep].sum()),
               min_count)

  def __len__(self) -> int:
    return len(self.users) + 1

  @property
  def other(self) -> int:
    return len(self.users)

  def encode(self, values) -> np.ndarray:
    """(N,) int32 photographer index; missing, rare and unknown users → `other`."""
    other = self.other
    return np.fromiter((self._lookup.get(k, other) if k is not None else other
                        for k in user_keys(values)), np.int32, count=len(values))

  def save(self, path) -> None:
    io.write_json(path, {"format": FORMAT, "min_count": self.min_count,
                         "users": self.users.tolist(), "counts": self.counts.tolist(),
                         "other_count": self.other_count})

  @classmethod
  def load(cls, path) -> "PhotographerIndex":
    d = io.read_versioned_json(path, FORMAT, what="photographer index", error=SinrInputError)
    try:
      return cls(d["users"], d["counts"], d["other_count"], d["min_count"])
    except (KeyError, TypeError, ValueError) as e:
      raise SinrInputError(f"malformed photographer index ({e!r})", file=path) from e
