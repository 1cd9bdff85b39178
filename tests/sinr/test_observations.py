"""Tests for reading/validating observations, the class index and the per-class cap."""
from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import time

import numpy as np
import pandas as pd
import pytest

from sinr_jax.errors import SinrInputError
from sinr_jax.observations import ClassIndex, cap_per_class, read_observations

HEADER = "id,user_id,latitude,longitude,taxon_id,observed_on\n"
GOOD = [
    "1,10,10.5,20.25,5,2018-01-02",
    "2,11,-33.0,151.0,7,2018-03-04",
    "3,10,0.0,-179.5,5,2019-12-31",
    "4,12,89.9,180.0,9,2020-06-30",
]


def write(tmp_path, lines, name="obs.csv", header=HEADER):
  path = tmp_path / name
  path.write_text(header + "".join(line + "\n" for line in lines))
  return path


def raises(path, row, field, match=None, **kwargs):
  """Asserts one SinrInputError naming file, row and field; returns it."""
  with pytest.raises(SinrInputError, match=match) as info:
    read_observations(path, **kwargs)
  e = info.value
  assert e.file == str(path) and str(path) in str(e)
  assert e.row == row and (row is None or f"row {row}" in str(e))
  assert e.field == field and (field is None or f"'{field}'" in str(e))
  return e


# --- files that cannot be read ---------------------------------------------------------------

def test_missing_file(tmp_path):
  path = tmp_path / "nope.csv"
  e = raises(path, None, None, match="not found")
  assert not isinstance(e, FileNotFoundError)


def test_directory(tmp_path):
  (tmp_path / "dir.csv").mkdir()
  raises(tmp_path / "dir.csv", None, None, match="directory")


def test_unsupported_extension(tmp_path):
  raises(write(tmp_path, GOOD, name="obs.txt"), None, None, match=r"\.csv, \.csv\.gz, \.parquet")


def test_empty_file(tmp_path):
  path = tmp_path / "obs.csv"
  path.write_bytes(b"")
  raises(path, 1, None, match="empty")


def test_header_only(tmp_path):
  raises(write(tmp_path, []), 2, None, match="no data rows")
  header_only = tmp_path / "obs.parquet"
  pd.read_csv(write(tmp_path, GOOD)).iloc[:0].to_parquet(header_only)
  raises(header_only, 1, None, match="no data rows")


def test_truncated_last_row_is_an_error(tmp_path):
  path = tmp_path / "obs.csv"
  path.write_text(HEADER + "\n".join(GOOD) + "\n5,13,12.5,4")  # cut inside longitude's row
  raises(path, 6, "taxon_id", match="truncated or malformed")


def test_row_with_too_many_fields(tmp_path):
  raises(write(tmp_path, GOOD[:2] + ["5,13,1,2,3,2018-01-01,oops"] + GOOD[2:]), 4, None,
         match="too many fields")


def test_unterminated_last_line_warns(tmp_path, caplog):
  path = tmp_path / "obs.csv"
  path.write_text(HEADER + "\n".join(GOOD))  # complete field count, maybe cut inside the last one
  with caplog.at_level(logging.WARNING):
    obs = read_observations(path)
  assert len(obs) == 4
  assert "line 5" in caplog.text and "newline" in caplog.text


def test_truncated_gzip(tmp_path):
  raw = gzip.compress((HEADER + "".join(f"{i},1,1.5,2.5,3,2018-01-01\n" for i in range(20000)))
                      .encode())
  path = tmp_path / "obs.csv.gz"
  path.write_bytes(raw[: len(raw) // 2])
  raises(path, None, None, match="truncated or corrupt")


def test_truncated_parquet(tmp_path):
  path = tmp_path / "obs.parquet"
  pd.read_csv(write(tmp_path, GOOD)).to_parquet(path)
  path.write_bytes(path.read_bytes()[:-20])
  raises(path, None, None, match="truncated or corrupt")


# --- columns ---------------------------------------------------------------------------------

def test_misspelled_column_suggests_closest(tmp_path):
  path = write(tmp_path, GOOD, header=HEADER.replace("latitude", "lattitude"))
  raises(path, 1, "latitude", match=r"missing column 'latitude' \(did you mean 'lattitude'\?\)")


def test_missing_column_lists_columns(tmp_path):
  path = write(tmp_path, [g.rsplit(",", 2)[0] + "," + g.rsplit(",", 1)[1] for g in GOOD],
               header="id,user_id,latitude,longitude,observed_on\n")
  e = raises(path, 1, "taxon_id", match="missing column 'taxon_id'")
  assert "did you mean" not in str(e) and "'observed_on'" in str(e)


def test_missing_column_hint_skips_columns_used_by_other_fields(tmp_path):
  # 'longitude' is the closest spelling of 'latitude', but it is the longitude column
  path = write(tmp_path, [",".join(g.split(",")[:2] + g.split(",")[3:]) for g in GOOD],
               header="id,user_id,longitude,taxon_id,observed_on\n")
  e = raises(path, 1, "latitude", match="missing column 'latitude'")
  assert "did you mean" not in str(e) and "'longitude'" in str(e)
  # an extra column asked for by name is taken too; a free look-alike is still offered
  path = write(tmp_path, GOOD, header=HEADER.replace("observed_on", "observed"))
  raises(path, 1, "observed_on", match=r"did you mean 'observed'\?", extra_columns=["observed_on"])
  path = write(tmp_path, GOOD, header=HEADER.replace("latitude", "latitudes"))
  raises(path, 1, "latitude", match="did you mean 'latitudes'")
  e = raises(path, 1, "latitude", match="missing column 'latitude'", extra_columns=["latitudes"])
  assert "did you mean" not in str(e)


def test_unreadable_file_is_a_permission_error(tmp_path, monkeypatch):
  import builtins
  import gzip as gzip_module
  for name in ("obs.csv", "obs.csv.gz", "obs.parquet"):
    path = write(tmp_path, GOOD, name=name)
    path.chmod(0)
    try:
      open(path, "rb").close()  # root reads anyway: make open() refuse this file as the OS would
    except PermissionError:
      pass
    else:
      real_open = builtins.open

      def refusing_open(file, *args, _path=str(path), **kwargs):
        if str(file) == _path:
          raise PermissionError(13, "Permission denied", _path)
        return real_open(file, *args, **kwargs)
      monkeypatch.setattr(builtins, "open", refusing_open)
      monkeypatch.setattr(gzip_module, "open", lambda f, *a, **k: refusing_open(f, "rb"))
    e = raises(path, None, None, match="permission denied")
    assert "UTF-8" not in str(e) and "corrupt" not in str(e)
    monkeypatch.undo()
    path.chmod(0o644)


def test_duplicate_column(tmp_path):
  path = write(tmp_path, [g + ",1" for g in GOOD], header=HEADER.strip() + ",latitude\n")
  raises(path, 1, "latitude", match="appears 2 times")


def test_parquet_missing_column(tmp_path):
  path = tmp_path / "obs.parquet"
  pd.read_csv(write(tmp_path, GOOD)).rename(columns={"longitude": "Longitude"}).to_parquet(path)
  raises(path, None, "longitude", match="did you mean 'Longitude'")


# --- coordinates -----------------------------------------------------------------------------

BAD_COORDINATES = [  # (line, reason, field, message)
    ("5,1,abc,2.0,5,2018-01-01", "non_numeric_coordinate", "latitude", "'abc' is not a number"),
    ("5,1,1.0,,5,2018-01-01", "nan_coordinate", "longitude", "longitude is empty"),
    ("5,1,NaN,2.0,5,2018-01-01", "nan_coordinate", "latitude", "latitude is empty"),
    ("5,1,90.5,2.0,5,2018-01-01", "latitude_out_of_range", "latitude", r"outside \[-90, 90\]"),
    ("5,1,1.0,-180.01,5,2018-01-01", "longitude_out_of_range", "longitude",
     r"outside \[-180, 180\]"),
    ("5,1,1.0,inf,5,2018-01-01", "longitude_out_of_range", "longitude", "outside"),
]


@pytest.mark.parametrize("line,reason,field,message", BAD_COORDINATES)
def test_bad_coordinate_is_dropped_and_counted(tmp_path, caplog, line, reason, field, message):
  path = write(tmp_path, GOOD[:2] + [line] + GOOD[2:])
  with caplog.at_level(logging.WARNING):
    obs = read_observations(path)
  assert obs.dropped == {reason: 1}
  assert obs.rows.tolist() == [2, 3, 5, 6]
  assert f"{reason}=1 (rows 4)" in caplog.text


@pytest.mark.parametrize("line,reason,field,message", BAD_COORDINATES)
def test_bad_coordinate_strict_raises(tmp_path, line, reason, field, message):
  raises(write(tmp_path, GOOD[:2] + [line] + GOOD[2:]), 4, field, match=message, strict=True)


def test_strict_parquet_names_record_number(tmp_path):
  path = tmp_path / "obs.parquet"
  df = pd.read_csv(write(tmp_path, GOOD))
  df.loc[2, "latitude"] = -91.0
  df.to_parquet(path)
  raises(path, 3, "latitude", match="outside", strict=True)


def test_row_numbers_after_drops_and_blank_lines(tmp_path, caplog):
  lines = [GOOD[0], "", "9,1,100,1,5,x", GOOD[1], "9,1,,,5,x", "", GOOD[2], "9,1,1,200,5,x",
           GOOD[3]]
  with caplog.at_level(logging.WARNING):
    obs = read_observations(write(tmp_path, lines))
  assert obs.rows.tolist() == [2, 5, 8, 10]
  assert obs.taxon_ids.tolist() == [5, 7, 5, 9]
  assert obs.extra["id"].tolist() == [1, 2, 3, 4]
  assert obs.dropped == {"empty_row": 2, "nan_coordinate": 1, "latitude_out_of_range": 1,
                         "longitude_out_of_range": 1}
  assert "empty_row=2 (rows 3, 7)" in caplog.text


# --- taxa ------------------------------------------------------------------------------------

@pytest.mark.parametrize("taxon,message", [("abc", "'abc' is not an integer"),
                                           ("3.5", "3.5 is not an integer"),
                                           ("", "is empty"), ("NaN", "is empty")])
@pytest.mark.parametrize("strict", [False, True])
def test_non_integer_taxon_is_an_error(tmp_path, taxon, message, strict):
  path = write(tmp_path, GOOD[:3] + [f"5,1,1.0,2.0,{taxon},2018-01-01"] + GOOD[3:])
  raises(path, 5, "taxon_id", match=message, strict=strict)


def test_integral_float_taxa_are_fine(tmp_path):
  obs = read_observations(write(tmp_path, [g.replace(",5,", ",5.0,") for g in GOOD]))
  assert obs.taxon_ids.dtype == np.int64 and obs.taxon_ids.tolist() == [5, 7, 5, 9]


def test_taxa_filter_counts_other_taxa(tmp_path):
  obs = read_observations(write(tmp_path, GOOD), taxa=[5, 9])
  assert obs.taxon_ids.tolist() == [5, 5, 9] and obs.rows.tolist() == [2, 4, 5]
  assert obs.dropped == {"other_taxon": 1}
  again = read_observations(write(tmp_path, GOOD), taxa=ClassIndex.from_taxa([7]))
  assert again.taxon_ids.tolist() == [7]


def test_requested_taxon_without_rows_is_an_error(tmp_path):
  e = raises(write(tmp_path, GOOD), None, "taxon_id", match="1 requested taxa", taxa=[5, 404])
  assert "404" in str(e)


def test_requested_taxon_whose_rows_were_all_dropped(tmp_path):
  path = write(tmp_path, GOOD[:1] + ["5,1,95,2.0,8,2018-01-01"])
  raises(path, None, "taxon_id", match=": 8$", taxa=[5, 8])


def test_nothing_left_is_an_error(tmp_path):
  path = write(tmp_path, ["5,1,95,2.0,8,2018-01-01", "6,1,abc,2.0,8,2018-01-01"])
  raises(path, None, None, match="no usable observations among 2 rows")


# --- formats and contents --------------------------------------------------------------------

def assert_same(a, b):
  np.testing.assert_array_equal(a.lonlat, b.lonlat)
  np.testing.assert_array_equal(a.taxon_ids, b.taxon_ids)
  np.testing.assert_array_equal(a.rows, b.rows)
  assert a.dropped == b.dropped and a.extra.keys() == b.extra.keys()
  for name in a.extra:
    assert a.extra[name].dtype == b.extra[name].dtype, name
    np.testing.assert_array_equal(a.extra[name], b.extra[name])


def test_csv_gzip_and_parquet_agree(tmp_path):
  csv_path = write(tmp_path, GOOD)
  gz_path = tmp_path / "obs.csv.gz"
  gz_path.write_bytes(gzip.compress(csv_path.read_bytes()))
  pq_path = tmp_path / "obs.parquet"
  pd.read_csv(csv_path).to_parquet(pq_path)
  obs = read_observations(csv_path)
  assert obs.lonlat.dtype == np.float32 and obs.lonlat.shape == (4, 2)
  np.testing.assert_array_equal(obs.lonlat[0], [20.25, 10.5])  # (longitude, latitude)
  assert obs.taxon_ids.dtype == np.int64 and obs.rows.dtype == np.int64
  assert_same(obs, read_observations(gz_path))
  pq_obs = read_observations(pq_path)
  # Parquet rows are record numbers; the CSV's are line numbers, one more for the header.
  assert_same(obs, dataclasses.replace(pq_obs, rows=pq_obs.rows + 1))
  assert pq_obs.rows.tolist() == [1, 2, 3, 4]


def test_extra_columns_kept(tmp_path):
  obs = read_observations(write(tmp_path, GOOD))
  assert list(obs.extra) == ["id", "user_id", "observed_on"]
  assert obs.extra["user_id"].dtype == np.int64
  assert obs.extra["user_id"].tolist() == [10, 11, 10, 12]
  assert obs.extra["observed_on"].tolist() == ["2018-01-02", "2018-03-04", "2019-12-31",
                                               "2020-06-30"]
  only = read_observations(write(tmp_path, GOOD), extra_columns=["observed_on"])
  assert list(only.extra) == ["observed_on"]
  assert read_observations(write(tmp_path, GOOD), extra_columns=()).extra == {}
  raises(write(tmp_path, GOOD), 1, "date", match="missing column 'date'", extra_columns=["date"])


def test_bom_and_crlf(tmp_path):
  path = tmp_path / "obs.csv"
  path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "".join(g + "\n" for g in GOOD)).replace(
      "\n", "\r\n").encode())
  assert_same(read_observations(path), read_observations(write(tmp_path, GOOD, name="b.csv")))


def test_parquet_types_are_kept(tmp_path):
  df = pd.read_csv(write(tmp_path, GOOD)).astype({"id": str, "latitude": str})
  df.loc[1, "latitude"] = "abc"
  path = tmp_path / "obs.parquet"
  df.to_parquet(path)
  obs = read_observations(path)
  assert obs.extra["id"].tolist() == ["1", "3", "4"]  # text in Parquet stays text
  assert obs.dropped == {"non_numeric_coordinate": 1} and obs.rows.tolist() == [1, 3, 4]
  raises(path, 2, "latitude", match="'abc' is not a number", strict=True)


def test_extras_follow_the_kept_rows(tmp_path):
  obs = read_observations(write(tmp_path, GOOD[:1] + ["5,1,95,2.0,8,"] + GOOD[1:]))
  assert obs.extra["id"].tolist() == [1, 2, 3, 4]
  assert obs.extra["observed_on"][0] == "2018-01-02"


# --- class index -----------------------------------------------------------------------------

def test_class_index_round_trip(tmp_path):
  index = ClassIndex.from_taxa(np.array([42, 7, 42, 1000, 7]))
  assert len(index) == 3 and index.taxa.tolist() == [7, 42, 1000]
  classes = index.encode([1000, 7, 42, 42])
  assert classes.dtype == np.int32 and classes.tolist() == [2, 0, 1, 1]
  assert index.decode(classes).tolist() == [1000, 7, 42, 42]
  path = tmp_path / "classes.json"
  index.save(path)
  assert ClassIndex.load(path) == index
  assert [p.name for p in tmp_path.iterdir()] == ["classes.json"]  # no temp file left behind
  path.write_text(json.dumps([7, 42]))  # the reference's bare class_to_taxa list
  assert ClassIndex.load(path).taxa.tolist() == [7, 42]


def test_class_index_unknown_taxon(tmp_path):
  index = ClassIndex.from_taxa([5, 7])
  with pytest.raises(SinrInputError, match=r"taxon 6 is not in .* \(2 rows, 2 unknown taxa\)") as e:
    index.encode(np.array([5, 6, 7, 8]), source="obs.csv", rows=np.array([2, 3, 4, 5]))
  assert (e.value.file, e.value.row, e.value.field) == ("obs.csv", 3, "taxon_id")
  assert "obs.csv, row 3, field 'taxon_id'" in str(e.value)
  with pytest.raises(SinrInputError, match="0-based index") as e:
    index.encode([5, 9])
  assert e.value.row == 1
  with pytest.raises(SinrInputError, match="class indices"):
    index.decode([2])


@pytest.mark.parametrize("content,message", [
    ('{"taxa": [3, 1]}', "not sorted"), ('{"taxa": [1, 1]}', "duplicate"),
    ('{"taxa": [1, 2.5]}', "not an integer"), ('{"taxa": [1, true]}', "not an integer"),
    ('{"taxa": []}', "non-empty"), ('{"taxa": [1, 2', "not valid JSON"),
    ('{"format": "other", "taxa": [1]}', "not a class index")])
def test_class_index_load_validates(tmp_path, content, message):
  path = tmp_path / "classes.json"
  path.write_text(content)
  with pytest.raises(SinrInputError, match=message) as e:
    ClassIndex.load(path)
  assert e.value.file == str(path)


# --- per-class cap ---------------------------------------------------------------------------

def reference_cap(labels, cap, seed):
  """The reference's loop, written out: walk one permutation, keep while the class is under cap."""
  kept, counts = [], {}
  for i in np.random.default_rng(seed).permutation(len(labels)):
    if counts.get(labels[i], 0) < cap:
      kept.append(i)
      counts[labels[i]] = counts.get(labels[i], 0) + 1
  return np.sort(np.array(kept, dtype=np.int64))


def skewed_labels(seed, n=3000):
  ids = np.random.default_rng(seed).zipf(1.6, n) % 150  # a few huge classes, many tiny ones
  return ids * 1009 + 17  # taxon-like ids, not 0..S-1


@pytest.mark.parametrize("seed", [0, 1, 123])
@pytest.mark.parametrize("cap", [1, 3, 10, 100])
def test_cap_matches_reference_loop(seed, cap):
  labels = skewed_labels(seed)
  expected = reference_cap(labels, cap, seed)
  for variant in (labels, np.unique(labels, return_inverse=True)[1].astype(np.int32),
                  labels.astype(str), -labels):
    got = cap_per_class(variant, cap, seed)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


def test_cap_counts_and_seeds():
  labels = skewed_labels(5)
  a = cap_per_class(labels, 20, seed=1)
  np.testing.assert_array_equal(a, cap_per_class(labels, 20, seed=1))
  assert not np.array_equal(a, cap_per_class(labels, 20, seed=2))
  taxa, counts = np.unique(labels, return_counts=True)
  kept = dict(zip(*np.unique(labels[a], return_counts=True)))
  assert all(kept[t] == min(c, 20) for t, c in zip(taxa, counts))
  assert np.all(np.diff(a) > 0)


@pytest.mark.parametrize("cap", [None, -1, 0, 10**6])
def test_cap_keep_all(cap):
  labels = skewed_labels(0)
  np.testing.assert_array_equal(cap_per_class(labels, cap, seed=0), np.arange(len(labels)))


def test_cap_rejects_bad_cap():
  with pytest.raises(SinrInputError, match="cap"):
    cap_per_class(np.zeros(3, int), -5, seed=0)


def test_cap_one_million_rows_is_fast():
  labels = (np.random.default_rng(0).zipf(1.3, 1_000_000) % 50_000).astype(np.int32)
  cap_per_class(labels[:1000], 10, seed=0)  # warm up
  start = time.perf_counter()
  kept = cap_per_class(labels, 100, seed=0)
  assert time.perf_counter() - start < 0.8
  assert np.bincount(labels[kept]).max() == 100
