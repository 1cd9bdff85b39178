"""Read, validate and index presence-only training observations (SINR's `geo_prior_train.csv`).

Rows are named by their 1-based line number in a CSV (header = line 1; one record per line, as in
the published files) or their 1-based record number in Parquet.

What is dropped and what is fatal:
- Bad coordinates (non-numeric, empty/NaN, latitude outside [-90, 90], longitude outside
  [-180, 180]) are dropped and counted, as the reference does; `strict=True` raises on the first.
  Blank lines are dropped and counted as "empty_row". Each row counts once, under the first reason
  in `DROP_REASONS` that applies.
- A taxon id that is not an integer is always fatal: the row's class is unknown.
- With `crs` named, the coordinate columns hold projected x (east) and y (north) in that CRS and
  are converted to lon/lat on load (pyproj); a point the projection cannot map is dropped and
  counted as out of range. The column names are configurable (`Fields`); a one-species file may
  have no taxon column (`Fields(taxon=None)`, every row gets `default_taxon`).
- A row with the wrong number of fields (a truncated or mis-delimited file) is always fatal: we
  cannot tell which field moved, and dropping it would hide a cut-off download. A CSV whose last
  line lacks a newline is read with a warning, since a cut inside the last field is otherwise
  invisible. An unreadable compressed stream is fatal.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import difflib
import gzip
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from sinr_jax.capping import ClassIndex, cap_per_class
from sinr_jax.errors import SinrInputError

__all__ = ["Observations", "read_observations", "ClassIndex", "cap_per_class", "DROP_REASONS",
           "Fields"]

log = logging.getLogger(__name__)

LATITUDE, LONGITUDE, TAXON = "latitude", "longitude", "taxon_id"
REQUIRED = (LATITUDE, LONGITUDE, TAXON)
DROP_REASONS = ("empty_row", "non_numeric_coordinate", "nan_coordinate", "latitude_out_of_range",
                "longitude_out_of_range", "other_taxon")
_MAX_EXACT_INT = 2**53  # float64 holds every integer up to here exactly
_PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$"
_NAN_WORDS = frozenset(w.lower() for w in pa_csv.ConvertOptions().null_values)
_SHOW = 5  # offending rows listed per reason in the warning


@dataclasses.dataclass(frozen=True)
class Fields:
  """Names of the coordinate columns and of the taxon column (None: a one-species file)."""
  lon: str = LONGITUDE
  lat: str = LATITUDE
  taxon: str | None = TAXON

  @property
  def required(self) -> tuple[str, ...]:
    return tuple(c for c in (self.lat, self.lon, self.taxon) if c)


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Observations:
  """The usable observations of one file, with each row's place in that file."""
  lonlat: np.ndarray  # (N, 2) float32 degrees: longitude, latitude
  taxon_ids: np.ndarray  # (N,) int64
  rows: np.ndarray  # (N,) int64 source line (CSV, header = 1) or record number (Parquet), 1-based
  source: str
  extra: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  dropped: dict[str, int] = dataclasses.field(default_factory=dict)  # nonzero counts only

  def __post_init__(self):
    n = len(self.taxon_ids)
    if self.lonlat.shape != (n, 2) or self.rows.shape != (n,):
      raise ValueError(f"inconsistent shapes: lonlat {self.lonlat.shape}, taxon_ids ({n},), "
                       f"rows {self.rows.shape}")
    for name, values in self.extra.items():
      if len(values) != n:
        raise ValueError(f"extra column {name!r} has {len(values)} rows, expected {n}")

  def __len__(self) -> int:
    return len(self.taxon_ids)


def read_observations(path, *, strict: bool = False, taxa: Sequence[int] | None = None,
                      extra_columns: Sequence[str] | None = None, fields: Fields = Fields(),
                      crs: str = "", default_taxon: int = 0) -> Observations:
  """Reads a `.csv`, `.csv.gz` or `.parquet`/`.pq` file of (latitude, longitude, taxon_id) rows.

  taxa: the classes to keep (ids, or a ClassIndex); other rows are dropped as "other_taxon", and a
    requested taxon left with no rows is an error. extra_columns: the other columns to keep in
    `extra` (default: all; `()` saves memory on big files). fields: the column names; crs: the
    CRS of the coordinate columns ("" = lon/lat degrees), converted to lon/lat on load.
  """
  path = Path(path)
  parquet = _file_kind(path) == "parquet"
  wanted = None if taxa is None else _requested_taxa(taxa)
  req = fields.required
  if crs:
    from sinr_jax import crs as crs_lib
    crs_lib.parse(crs, file=path)
  if parquet:
    cols, first_row = _read_parquet(path, extra_columns, req), 1
  else:
    cols, first_row = _read_csv(path, extra_columns, req), 2
  n = len(cols[fields.lat])
  if n == 0:
    raise SinrInputError("the file has no data rows", file=path, row=first_row)
  rows = np.arange(first_row, first_row + n, dtype=np.int64)
  if not parquet:
    _warn_if_unterminated(path, last_line=int(rows[-1]))

  lat, lat_bad = _to_float(cols[fields.lat], path, fields.lat)
  lon, lon_bad = _to_float(cols[fields.lon], path, fields.lon)
  if crs:
    lon, lat = _projected_to_lonlat(lon, lat, crs)
  empty = _nulls(cols[fields.lat]) & _nulls(cols[fields.lon])
  if fields.taxon:
    empty &= _nulls(cols[fields.taxon])
    taxon = _parse_taxa(cols[fields.taxon], ~empty, path, rows, fields.taxon)
  else:
    taxon = np.full(n, default_taxon, np.int64)
  reason = _coordinate_reasons(cols, lat, lat_bad, lon, lon_bad, empty, path, rows, strict,
                               fields, crs)
  if wanted is not None:
    reason[(reason == 0) & ~np.isin(taxon, wanted)] = DROP_REASONS.index("other_taxon") + 1
  counts = np.bincount(reason, minlength=len(DROP_REASONS) + 1)
  dropped = {name: int(c) for name, c in zip(DROP_REASONS, counts[1:]) if c}
  _log_drops(path, rows, reason, dropped, n)

  keep = reason == 0
  if not keep.any():
    raise SinrInputError(f"no usable observations among {n} rows (dropped: {dropped})", file=path)
  taxon = taxon[keep]
  if wanted is not None:
    missing = wanted[~np.isin(wanted, taxon)]
    if len(missing):
      listed = ", ".join(str(t) for t in missing[:10]) + (", ..." if len(missing) > 10 else "")
      raise SinrInputError(f"{len(missing)} requested taxa have no usable observations, so their "
                           f"classes cannot be trained: {listed}", file=path,
                           field=fields.taxon or TAXON)
  keep_arrow = pa.array(keep)
  extra = {name: _extra_to_numpy(col.filter(keep_arrow))
           for name, col in cols.items() if name not in req}
  return Observations(lonlat=np.stack([lon[keep], lat[keep]], axis=1).astype(np.float32),
                      taxon_ids=taxon, rows=rows[keep], source=str(path), extra=extra,
                      dropped=dropped)


def _projected_to_lonlat(x: np.ndarray, y: np.ndarray, crs: str):
  """lon/lat of the finite (x, y); NaN stays NaN, and points PROJ cannot map become inf (so they
  count as out of range)."""
  from sinr_jax import crs as crs_lib
  lon, lat = x.copy(), y.copy()
  ok = np.isfinite(x) & np.isfinite(y)
  lon[ok], lat[ok] = crs_lib.to_lonlat(x[ok], y[ok], crs)
  bad = ok & ~(np.isfinite(lon) & np.isfinite(lat))
  lon[bad], lat[bad] = np.inf, np.inf
  return lon, lat


def _coordinate_reasons(cols, lat, lat_bad, lon, lon_bad, empty, path, rows, strict,
                        fields: Fields = Fields(), crs: str = "") -> np.ndarray:
  """Per row 0 (keep) or k for DROP_REASONS[k - 1]; with `strict`, raises on the first bad row."""
  lat_nan, lon_nan = np.isnan(lat) & ~lat_bad, np.isnan(lon) & ~lon_bad
  lat_out, lon_out = np.abs(lat) > 90, np.abs(lon) > 180  # False for NaN, True for inf
  if strict:
    bad = ~empty & (lat_bad | lon_bad | lat_nan | lon_nan | lat_out | lon_out)
    if bad.any():
      i = int(np.argmax(bad))
      is_lat = bool(lat_bad[i] or lat_nan[i] or lat_out[i])
      field = fields.lat if is_lat else fields.lon
      what = _describe_coordinate(field, cols[field][i].as_py(), 90 if is_lat else 180)
      if crs and not (lat_bad[i] or lon_bad[i] or lat_nan[i] or lon_nan[i]):
        what = (f"({cols[fields.lon][i].as_py()}, {cols[fields.lat][i].as_py()}) in {crs} does "
                "not map to a valid lon/lat")
      raise SinrInputError(f"{what} (strict=False drops and counts such rows)", file=path,
                           row=int(rows[i]), field=field)
  checks = [empty, lat_bad | lon_bad, lat_nan | lon_nan, lat_out, lon_out]
  reason = np.zeros(len(lat), np.int8)
  for k in range(len(checks), 0, -1):  # reverse order so the first reason that applies wins
    reason[checks[k - 1]] = k
  return reason


def _file_kind(path: Path) -> str:
  if not path.exists():
    raise SinrInputError("file not found", file=path)
  if path.is_dir():
    raise SinrInputError("is a directory; expected an observation file", file=path)
  try:  # a permission problem is named as such, not as an unreadable format
    with open(path, "rb"):
      pass
  except PermissionError as e:
    raise SinrInputError(f"permission denied: cannot open the file for reading ({e.strerror}); "
                         "check its permissions", file=path) from e
  name = path.name.lower()
  if name.endswith((".parquet", ".pq")):
    return "parquet"
  if name.endswith((".csv", ".csv.gz")):
    return "csv"
  raise SinrInputError("unsupported file type; expected .csv, .csv.gz, .parquet or .pq", file=path)


def _requested_taxa(taxa) -> np.ndarray:
  values = np.asarray(getattr(taxa, "taxa", taxa))  # a ClassIndex or a sequence of ids
  if values.ndim != 1 or len(values) == 0:
    raise SinrInputError(f"taxa must be a non-empty 1-D list of ids, got shape {values.shape}",
                         field="taxa")
  if values.dtype.kind not in "iu":
    if values.dtype.kind != "f" or not np.all(np.isfinite(values) & (values == np.round(values))):
      raise SinrInputError(f"taxa must be integer ids, got {values[:5].tolist()}...", field="taxa")
  return np.unique(values.astype(np.int64))


def _read_header(path: Path, required: tuple[str, ...] = REQUIRED) -> list[str]:
  opener = gzip.open if path.name.lower().endswith(".gz") else open
  try:
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
      line = f.readline()
  except PermissionError as e:
    raise SinrInputError(f"permission denied: cannot open the file for reading ({e.strerror})",
                         file=path) from e
  except (OSError, EOFError, UnicodeDecodeError) as e:
    raise SinrInputError(f"cannot read the header ({e}); is this a UTF-8 CSV file?",
                         file=path, row=1) from e
  if not line.strip():
    raise SinrInputError("the file is empty" if not line else "line 1 is blank; expected a header "
                         f"naming {', '.join(required)}", file=path, row=1)
  return next(csv.reader([line]))


def _select_columns(names: list[str], extra_columns, path: Path, row: int | None,
                    required: tuple[str, ...] = REQUIRED) -> list[str]:
  """The required columns then the extras to keep, after checking they exist."""
  for name, count in collections.Counter(names).items():
    if count > 1:
      raise SinrInputError(f"column {name!r} appears {count} times in the header", file=path,
                           row=row, field=name)
  extras = [c for c in names if c not in required] if extra_columns is None else [
      c for c in extra_columns if c not in required]
  # Columns that already serve a field are never offered as the spelling of another one.
  taken = set(required) | (set() if extra_columns is None else set(extras))
  for name in (*required, *extras):
    if name not in names:
      raise _missing_column(name, names, path, row, taken=taken)
  return [*required, *extras]


def _missing_column(name: str, names: list[str], path: Path, row: int | None, *,
                    taken=frozenset()) -> SinrInputError:
  free = [c for c in names if c not in taken]
  folded = {c.strip().lower(): c for c in free}
  close = [folded[name]] if name in folded else difflib.get_close_matches(name, free, n=1)
  hint = f" (did you mean {close[0]!r}?)" if close else ""
  shown = ", ".join(repr(c) for c in names[:20]) + (", ..." if len(names) > 20 else "")
  return SinrInputError(f"missing column {name!r}{hint}; the columns are {shown}", file=path,
                        row=row, field=name)


def _read_csv(path: Path, extra_columns,
              required: tuple[str, ...] = REQUIRED) -> dict[str, pa.ChunkedArray]:
  header = _read_header(path, required)
  names = _select_columns(header, extra_columns, path, 1, required)
  try:  # fast path: coordinates and taxa parse as numbers
    table = _csv_table(path, header, names, numeric=True, required=required)
  except _NotNumeric:  # find and report the offending values from their text
    table = _csv_table(path, header, names, numeric=False, required=required)
  return {name: table.column(name) if name in required else _typed_text(table.column(name))
          for name in names}


def _typed_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
  """A CSV extra column as int64 if every value is an int (missing ones allowed), else float64
  if every value is a number, else the text."""
  for numeric in (pa.int64(), pa.float64()):
    try:
      return col.cast(numeric)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
      pass
  return col


class _NotNumeric(Exception):
  pass


def _csv_table(path: Path, header: list[str], names: list[str], *, numeric: bool,
               required: tuple[str, ...] = REQUIRED) -> pa.Table:
  types = {name: pa.string() for name in names}  # extras: text, typed later by _typed_text
  if numeric:
    # taxon_id as float64 too, so that "12.0" passes; ids are checked to be exact integers.
    types.update({name: pa.float64() for name in required})
  malformed = []

  def on_invalid_row(row):
    malformed.append(row)
    return "error"

  try:
    return pa_csv.read_csv(
        path,
        # Blank lines stay as all-null rows so that record k is line k + 2.
        parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid_row,
                                          ignore_empty_lines=False),
        convert_options=pa_csv.ConvertOptions(include_columns=names, column_types=types,
                                              strings_can_be_null=True))
  except pa.ArrowInvalid as e:
    if malformed:
      raise _malformed_row(path, header, names) from None
    if numeric:
      raise _NotNumeric() from e
    raise SinrInputError(f"cannot parse the file: {e}", file=path) from e
  except (OSError, EOFError, pa.ArrowException) as e:
    raise SinrInputError(f"cannot read the file ({e}); it may be truncated or corrupt",
                         file=path) from e


def _malformed_row(path: Path, header: list[str], names: list[str]) -> SinrInputError:
  """Re-parses serially, since only a serial read knows the line number of a bad row."""
  found = []

  def on_invalid_row(row):
    found.append(row)
    return "error"

  try:
    pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(use_threads=False),
                    parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid_row,
                                                      ignore_empty_lines=False),
                    convert_options=pa_csv.ConvertOptions(
                        include_columns=names, column_types={n: pa.string() for n in names}))
  except pa.ArrowInvalid:
    pass
  if not found:
    return SinrInputError("a line has the wrong number of fields; the file is truncated or "
                          "malformed", file=path)
  row = found[0]
  field = header[row.actual_columns] if row.actual_columns < len(header) else None
  what = "missing fields" if field else "too many fields"
  return SinrInputError(
      f"{what}: the line has {row.actual_columns} fields, the header {row.expected_columns} "
      f"({row.text[:80]!r}); the file is truncated or malformed", file=path, row=row.number,
      field=field)


def _warn_if_unterminated(path: Path, last_line: int):
  if path.name.lower().endswith(".gz") or path.stat().st_size == 0:
    return  # reading the end of a gzip stream means decompressing it all
  with open(path, "rb") as f:
    f.seek(-1, 2)
    if f.read(1) != b"\n":
      log.warning("%s: the last line (line %d) does not end with a newline; if the file was cut "
                  "off, its last field may be incomplete", path, last_line)


def _read_parquet(path: Path, extra_columns,
                  required: tuple[str, ...] = REQUIRED) -> dict[str, pa.ChunkedArray]:
  try:
    schema = pq.read_schema(path)
  except (OSError, pa.ArrowException) as e:
    raise SinrInputError(f"cannot read as Parquet ({e}); it may be truncated or corrupt",
                         file=path) from e
  names = _select_columns(list(schema.names), extra_columns, path, None, required)
  try:
    table = pq.read_table(path, columns=names)
  except (OSError, pa.ArrowException) as e:
    raise SinrInputError(f"cannot read as Parquet ({e}); it may be truncated or corrupt",
                         file=path) from e
  return {name: _decoded(table.column(name)) for name in names}


def _decoded(col: pa.ChunkedArray) -> pa.ChunkedArray:
  return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def _nulls(col: pa.ChunkedArray) -> np.ndarray:
  return col.is_null().to_numpy(zero_copy_only=False)


def _to_float(col: pa.ChunkedArray, path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
  """float64 values (NaN where empty or not a number) and the mask of non-numeric entries."""
  if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(
      col.type):
    values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return values, np.zeros(len(values), bool)
  if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
    raise SinrInputError(f"column has type {col.type}; expected numbers", file=path, field=name)
  # Arrow parses the plainly numeric texts; Python's float() judges the few others ("abc", " 1").
  plain = pc.match_substring_regex(col, _PLAIN_NUMBER).fill_null(False)
  try:
    parsed = pc.if_else(plain, col, None).cast(pa.float64())
    values = np.array(parsed.to_numpy(zero_copy_only=False))
    others = np.flatnonzero(~plain.to_numpy(zero_copy_only=False) & ~_nulls(col))
  except pa.ArrowInvalid:  # e.g. an overflowing exponent: judge every text in Python
    values = np.full(len(col), np.nan)
    others = np.flatnonzero(~_nulls(col))
  non_numeric = np.zeros(len(values), bool)
  for i, text in zip(others, col.take(others).to_pylist()):
    try:
      values[i] = float(text)
    except ValueError:
      non_numeric[i] = text.strip().lower() not in _NAN_WORDS
  return values, non_numeric


def _parse_taxa(col: pa.ChunkedArray, check: np.ndarray, path: Path,
                rows: np.ndarray, name: str = TAXON) -> np.ndarray:
  """int64 taxon ids (0 where not checked); raises on the first checked row that is not an int."""
  if pa.types.is_integer(col.type):
    bad = _nulls(col) & check
    try:
      values = col.fill_null(0).cast(pa.int64()).to_numpy()
    except pa.ArrowInvalid as e:  # uint64 beyond int64
      raise SinrInputError(f"taxon ids do not fit in int64 ({e})", file=path, field=name) from e
  else:
    values, non_numeric = _to_float(col, path, name)
    with np.errstate(invalid="ignore"):
      inexact = ~(np.abs(values) < _MAX_EXACT_INT) | (values != np.round(values))  # NaN: inexact
      bad = check & (non_numeric | inexact)
    values = np.where(bad | ~check, 0, values).astype(np.int64)
  if bad.any():
    i = int(np.argmax(bad))
    value = col[i].as_py()
    what = "is empty" if value is None else f"{value!r} is not an integer"
    more = f" ({int(bad.sum())} rows like this)" if bad.sum() > 1 else ""
    raise SinrInputError(f"taxon id {what}{more}", file=path, row=int(rows[i]), field=name)
  return values


def _describe_coordinate(field: str, value, limit: int) -> str:
  if value is None:
    return f"{field} is empty or NaN"
  if isinstance(value, str):
    try:
      value = float(value)
    except ValueError:
      return f"{field} {value!r} is not a number"
  if np.isnan(value):
    return f"{field} is NaN"
  return f"{field} {value} is outside [-{limit}, {limit}]"


def _log_drops(path: Path, rows: np.ndarray, reason: np.ndarray, dropped: dict[str, int], n: int):
  parts = []
  for name, count in dropped.items():
    if name == "other_taxon":
      log.info("%s: dropped %d of %d rows of taxa not requested", path, count, n)
      continue
    lines = rows[reason == DROP_REASONS.index(name) + 1][:_SHOW]
    more = ", ..." if count > _SHOW else ""
    parts.append(f"{name}={count} (rows {', '.join(map(str, lines))}{more})")
  if parts:
    log.warning("%s: dropped %d of %d rows: %s", path, sum(
        dropped.get(r, 0) for r in DROP_REASONS[:-1]), n, "; ".join(parts))


def _extra_to_numpy(col: pa.ChunkedArray) -> np.ndarray:
  """Ints with missing values become float64 with NaN; text becomes an object array (None where
  missing)."""
  return _decoded(col).to_numpy(zero_copy_only=False)
