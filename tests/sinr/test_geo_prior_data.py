"""Geo-prior data: day-of-year parsing and the bad-date policy, the input encoding, the photographer
index with its "other" bucket, the iNat geo-prior file reader and per-epoch resampling."""
import datetime
import json
import math

import numpy as np
import pytest

from ecorep.config import load_config
from ecorep.sampler import EpochSampler
from sinr_jax.errors import SinrInputError
from sinr_jax.geo_prior import dates, encoding
from sinr_jax.geo_prior.data import load_geo_prior_data
from sinr_jax.geo_prior.inat import parse_inat_dates, read_inat_locations
from sinr_jax.geo_prior.photographers import PhotographerIndex

TODAY = datetime.date(2024, 6, 30)


def test_day_of_year_by_hand():
  values = np.array(["2012-01-01", "2012-12-31", "2013-12-31", "2012-03-01 17:09:47+00:00",
                     "2018-07-02T10:00:00Z", "2019-1-5", "", None, float("nan"), "31/12/2012",
                     "2012-02-30", "2024-07-01"], dtype=object)
  day, reason = dates.parse_dates(values, max_date=TODAY)
  # 2012 is a leap year: 366 days, 1 March is day index 31 + 29 = 60; 2 July 2018 is index 182.
  np.testing.assert_allclose(day[:6], [0, 365 / 366, 364 / 365, 60 / 366, 182 / 365, 4 / 365])
  assert reason.tolist() == [0] * 6 + [1, 1, 1, 2, 2, 3]
  assert np.isnan(day[6:]).all()
  stamps = np.array(["2020-12-31", "NaT"], dtype="datetime64[D]")
  day, reason = dates.parse_dates(stamps, max_date=TODAY)
  assert day[0] == 365 / 366 and reason.tolist() == [0, 1]


def test_bad_date_policy_counts_or_names_the_row():
  values = np.array(["2012-01-01", "", "tomorrow", "2030-01-01"], dtype=object)
  _, reason = dates.parse_dates(values, max_date=TODAY)
  assert dates.apply_policy(reason, "drop", values) == {
      "missing_date": 1, "unparseable_date": 1, "future_date": 1}
  with pytest.raises(SinrInputError, match=r"f\.csv, row 3, field 'observed_on': the date is "
                                           "missing") as e:
    dates.apply_policy(reason, "error", values, file="f.csv", rows=np.arange(2, 6))
  assert e.value.row == 3
  _, reason = dates.parse_dates(values[3:], max_date=TODAY)
  with pytest.raises(SinrInputError, match="in the future"):
    dates.apply_policy(reason, "error", values[3:])


@pytest.mark.parametrize("use_date,wrap", [(True, True), (True, False), (False, True),
                                           (False, False)])
def test_encoding_against_float64_numpy(use_date, wrap):
  rng = np.random.default_rng(0)
  lonlat = np.stack([rng.uniform(-1, 1, 5), rng.uniform(-1, 1, 5)], 1)
  day = rng.uniform(0, 1, 5)
  got = np.asarray(encoding.encode(lonlat.astype(np.float32), day.astype(np.float32),
                                   use_date=use_date, wrap=wrap))
  t = 2 * day - 1
  loc = np.concatenate([np.sin(np.pi * lonlat), np.cos(np.pi * lonlat)], 1) if wrap else lonlat
  date = np.stack([np.sin(np.pi * t), np.cos(np.pi * t)], 1) if wrap else t[:, None]
  want = np.concatenate([loc, date], 1) if use_date else loc
  assert got.shape == (5, encoding.input_dim(use_date, wrap))
  np.testing.assert_allclose(got, want, atol=2e-6)
  # The year is a circle: 31 December and 1 January are neighbours when wrapped.
  if wrap and use_date:
    ends = np.asarray(encoding.encode(np.zeros((2, 2), np.float32), np.array([0.0, 0.9999],
                                      np.float32), use_date=True, wrap=True))
    assert np.abs(ends[0] - ends[1]).max() < 1e-3


def test_background_points_uniform_on_the_sphere_and_the_year():
  import jax
  from scipy import stats
  lonlat, day = map(np.asarray, encoding.background(jax.random.key(0), 20000))
  # Uniform area: longitude and sin(latitude) are uniform on [-1, 1]; the day on [0, 1).
  assert stats.kstest(lonlat[:, 0], "uniform", args=(-1, 2)).pvalue > 1e-3
  assert stats.kstest(np.sin(lonlat[:, 1] * np.pi / 2), "uniform", args=(-1, 2)).pvalue > 1e-3
  assert stats.kstest(day, "uniform").pvalue > 1e-3 and 0 <= day.min() and day.max() < 1
  # A box-uniform latitude (the wrong law) is rejected by the same check.
  assert stats.kstest(np.sin(np.random.default_rng(0).uniform(-1, 1, 20000) * np.pi / 2),
                      "uniform", args=(-1, 2)).pvalue < 1e-3


def test_photographer_index_other_bucket():
  users = np.array([17, 17.0, "17", 4, 4, 9, None, float("nan"), "", 4], dtype=object)
  index = PhotographerIndex.from_users(users, min_count=2)
  assert index.users.tolist() == ["17", "4"] and len(index) == 3 and index.other == 2
  assert index.counts.tolist() == [3, 3] and index.other_count == 4
  got = index.encode(np.array([4, "17", 9, None, 12345, 17.0], dtype=object))
  assert got.tolist() == [1, 0, 2, 2, 2, 0]  # rare (9), missing and unknown users: "other"
  with pytest.raises(SinrInputError, match="min_photographer_obs"):
    PhotographerIndex.from_users(users, min_count=0)


def test_photographer_index_round_trip(tmp_path):
  index = PhotographerIndex.from_users(np.array([1, 1, 2], dtype=object), min_count=1)
  index.save(tmp_path / "p.json")
  back = PhotographerIndex.load(tmp_path / "p.json")
  assert back.users.tolist() == ["1", "2"] and back.encode(np.array([2], object)).tolist() == [1]


def _csv(path, rows):
  path.write_text("id,latitude,longitude,taxon_id,user_id,observed_on\n"
                  + "".join(",".join(map(str, r)) + "\n" for r in rows))
  return str(path)


def _config(repo_root, train_file, *tokens, **overrides):
  spec = f"{repo_root}/configs/geo_prior.py:tiny" + "".join("," + t for t in tokens)
  return load_config(spec, [f"data.train_file={train_file}", "data.max_date=2024-06-30",
                            "data.min_photographer_obs=2",
                            *(f"{k}={v}" for k, v in overrides.items())])


def test_training_file_dates_and_users(tmp_path, repo_root):
  path = _csv(tmp_path / "obs.csv", [
      (1, 10.0, 20.0, 5, 7, "2012-01-01"), (2, 11.0, 21.0, 5, 7, "2012-07-01"),
      (3, 12.0, 22.0, 9, "", "2013-01-01"), (4, 13.0, 23.0, 9, 8, ""),
      (5, 14.0, 24.0, 9, 8, "2099-01-01"), (6, 15.0, 25.0, 9, 8, "not a date"),
      (7, 95.0, 25.0, 9, 8, "2013-05-05")])
  data = load_geo_prior_data(_config(repo_root, path), str(tmp_path))
  assert data.dropped == {"latitude_out_of_range": 1, "missing_date": 1, "future_date": 1,
                          "unparseable_date": 1}
  assert data.class_index.taxa.tolist() == [5, 9] and data.labels.tolist() == [0, 0, 1]
  np.testing.assert_allclose(data.day, [0, 182 / 366, 0])
  assert data.photographers.users.tolist() == ["7"]   # user 8 has no usable row left
  assert data.users.tolist() == [0, 0, 1]             # the missing user id: "other"
  with pytest.raises(SinrInputError, match=r"obs\.csv, row 5, field 'observed_on'"):
    load_geo_prior_data(_config(repo_root, path, **{"data.bad_dates": "error"}), str(tmp_path))
  # Without the date term no date is read, so none is dropped.
  data = load_geo_prior_data(_config(repo_root, path, "no_date"), str(tmp_path))
  assert len(data.labels) == 6 and "missing_date" not in data.dropped


def test_training_file_missing_date_column(tmp_path, repo_root):
  path = tmp_path / "obs.csv"
  path.write_text("latitude,longitude,taxon_id,user_id,observed\n1,2,3,4,2012-01-01\n")
  with pytest.raises(SinrInputError, match="missing column 'observed_on'.*did you mean 'observed'"):
    load_geo_prior_data(_config(repo_root, str(path)), str(tmp_path))


def _inat_files(tmp_path):
  """A split in the layout of the released iNat2018 geo-prior files (sinr_jax/geo_prior/inat.py)."""
  ann = {"images": [{"id": i, "file_name": f"train_val2018/x/{i}.jpg"} for i in range(1, 7)],
         "annotations": [{"id": 100 + i, "image_id": i, "category_id": c}
                         for i, c in zip(range(1, 7), (3, 3, 8, 8, 8, 3))],
         "categories": [{"id": 3, "name": "a"}, {"id": 8, "name": "b"}]}
  locs = [{"id": 1, "lat": 40.5, "lon": -3.7, "loc_uncert": 10, "date": "2016-05-02 09:00:00+00:00",
           "date_c": 0.33, "user_id": 12},
          {"id": 2, "lat": None, "lon": None, "loc_uncert": None, "date": None, "date_c": None,
           "user_id": 12},
          {"id": 3, "lat": -33.9, "lon": 151.2, "loc_uncert": None, "date": None, "date_c": 0.5,
           "user_id": None},
          {"id": 4, "lat": 95.0, "lon": 10.0, "loc_uncert": 5, "date": "2017-01-01", "date_c": 0.0,
           "user_id": 3},
          {"id": 6, "lat": 1.0, "lon": 2.0, "loc_uncert": 5, "date": "2017-13-01", "date_c": None,
           "user_id": 3}]
  (tmp_path / "train2018.json").write_text(json.dumps(ann))
  (tmp_path / "train2018_locations.json").write_text(json.dumps(locs))
  return str(tmp_path / "train2018_locations.json"), str(tmp_path / "train2018.json")


def test_inat_geo_prior_files(tmp_path, repo_root):
  locs, ann = _inat_files(tmp_path)
  g = read_inat_locations(locs, ann)
  assert g.image_ids.tolist() == [1, 3, 6] and g.taxon_ids.tolist() == [3, 8, 3]
  assert g.dropped == {"no_location_entry": 1, "no_location": 1, "bad_coordinate": 1}
  day, reason = parse_inat_dates(g.dates, max_date=TODAY)
  np.testing.assert_allclose(day[:2], [(31 + 29 + 31 + 30 + 1) / 366, 0.5])  # date_c fallback
  assert reason.tolist() == [0, 0, 2]
  with pytest.raises(SinrInputError, match=r"row 3, field 'lat/lon'"):
    read_inat_locations(locs, ann, strict=True)
  cfg = _config(repo_root, locs, "inat2018", **{"data.annotations_file": ann})
  data = load_geo_prior_data(cfg, str(tmp_path))
  assert data.labels.tolist() == [0, 1] and data.dropped["unparseable_date"] == 1
  assert data.users.tolist() == [data.photographers.other] * 2  # one user below the minimum


def test_epoch_resampling_draws_fresh_capped_subsets():
  labels = np.repeat(np.arange(3), [50, 5, 20])
  sampler = EpochSampler(len(labels), 8, seed=0, labels=labels, cap=10)
  e0, e1 = sampler.epoch_rows(0), sampler.epoch_rows(1)
  for rows in (e0, e1):
    assert np.bincount(labels[rows], minlength=3).tolist() == [10, 5, 10]
  assert set(e0[labels[e0] == 0]) != set(e1[labels[e1] == 0])  # a fresh draw, not a fixed cap
  assert math.isclose(sampler.steps_per_epoch, 25 // 8)
