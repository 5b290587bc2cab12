"""The fast path for ratings files: pyarrow's multithreaded CSV and Parquet readers.

A 25M-row ``ratings.csv`` read line by line in Python costs minutes and a string object per
id; pyarrow parses it in seconds into typed columns, and the ids are dictionary-encoded
straight into :class:`CodedIds`. This path only accepts files it can check in whole-column
operations; anything else (a malformed row, a rating out of range, an odd timestamp)
returns None and the exact line-by-line reader (data.readers) reads the file again, so
that the error names the file and the line.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from twostage.data.errors import DataError
from twostage.data.files import DataFiles
from twostage.data.schema import CodedIds, Ratings

PARQUET_COLUMNS = ("userId", "movieId", "rating", "timestamp")


@dataclasses.dataclass(frozen=True)
class RatingsLayout:
    """How one ratings file is laid out.

    Attributes:
      delimiter: one character (ml-1m's "::" is read as ":" with empty fields between).
      header: the column names the first line must hold (None: no header line).
      columns: the columns pyarrow sees, in order; ``user``, ``movie``, ``rating`` and
        ``timestamp`` are the ones kept.
      bounds: lowest and highest rating.
      whole_ratings: ratings must be whole numbers.
    """

    delimiter: str
    header: Optional[tuple]
    columns: tuple
    bounds: tuple
    whole_ratings: bool


LAYOUTS = {
    "ml-100k": RatingsLayout("\t", None, ("user", "movie", "rating", "timestamp"), (1.0, 5.0), True),
    "ml-1m": RatingsLayout(":", None, ("user", "_1", "movie", "_2", "rating", "_3", "timestamp"), (0.5, 5.0), False),
    "csv": RatingsLayout(",", PARQUET_COLUMNS, ("user", "movie", "rating", "timestamp"), (0.5, 5.0), False),
}
_TYPES = {"user": pa.string(), "movie": pa.string(), "rating": pa.float32(), "timestamp": pa.int64()}


def read_ratings_csv(files: DataFiles, name: str, layout: RatingsLayout) -> Optional[Ratings]:
    """Reads a delimited ratings file with pyarrow; None if any row needs the exact reader."""
    kept = ("user", "movie", "rating", "timestamp")
    if layout.header and _first_line(files, name) != layout.header:
        return None
    empty = {c: pa.string() for c in layout.columns if c not in kept}
    try:
        table = pa_csv.read_csv(
            _source(files, name),
            read_options=pa_csv.ReadOptions(column_names=list(layout.columns), skip_rows=0 if layout.header is None else 1,
                                            block_size=16 << 20),
            parse_options=pa_csv.ParseOptions(delimiter=layout.delimiter, quote_char=False),
            convert_options=pa_csv.ConvertOptions(column_types={**_TYPES, **empty}, include_columns=list(kept)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    for column in empty:  # ml-1m: the fields between the "::" halves must be empty
        if column in table.column_names and pc.any(pc.not_equal(table[column], "")).as_py():
            return None
    return _checked(table, layout.bounds, layout.whole_ratings)


def read_ratings_parquet(files: DataFiles, name: str, bounds: tuple = (0.5, 5.0)) -> Ratings:
    """Reads ``ratings.parquet`` (columns userId, movieId, rating, timestamp; ids of any
    integer or string type, timestamps as seconds or a timestamp type).

    Raises:
      DataError: missing columns or values that do not fit; Parquet has no lines, so the
        error names the row (0-based, as pandas and Spark show them).
    """
    where = files.display(name)
    try:
        table = pq.read_table(_source(files, name))
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"not a readable Parquet file ({err})", where) from None
    missing = [c for c in PARQUET_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}: ratings.parquet needs "
                        f"{', '.join(PARQUET_COLUMNS)}, found {', '.join(table.column_names)}", where)
    columns = {}
    for new, old in zip(("user", "movie", "rating", "timestamp"), PARQUET_COLUMNS):
        column = table[old]
        if pa.types.is_timestamp(column.type):
            column = pc.cast(column, pa.timestamp("s")).cast(pa.int64())
        try:
            columns[new] = pc.cast(column, _TYPES[new])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise DataError(f"column {old} of type {column.type} cannot be read as {_TYPES[new]} ({err})",
                            where) from None
        nulls = pc.is_null(columns[new])
        if pc.any(nulls).as_py():
            raise DataError(f"column {old} is empty in row {_first(nulls)}", where)
    ratings = _checked(pa.table(columns), bounds, whole_ratings=False)
    if ratings is None:
        _raise_first_bad_row(pa.table(columns), bounds, where)
    return ratings


def _source(files: DataFiles, name: str):
    """A path pyarrow memory-maps (a folder) or the member's bytes (a .zip)."""
    path = files.local_path(name)
    return path if path is not None else io.BytesIO(files.raw(name))


def _first_line(files: DataFiles, name: str) -> tuple:
    line = files.first_line(name)
    return tuple(field.strip() for field in line.strip().split(","))


def _coded(column: pa.ChunkedArray) -> Optional[CodedIds]:
    """Dictionary-encodes an id column; ids are stripped (as the exact reader strips fields)."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    ids = np.asarray(pc.utf8_trim_whitespace(encoded.dictionary).to_pylist(), dtype=str)
    if len(ids) == 0 or (ids == "").any():
        return None
    distinct, remap = np.unique(ids, return_inverse=True)
    if len(distinct) < len(ids):  # " 7" and "7" are one id
        return CodedIds(remap.astype(np.int32)[codes], distinct)
    return CodedIds(codes, ids)


def _checked(table: pa.Table, bounds: tuple, whole_ratings: bool) -> Optional[Ratings]:
    """Ratings from parsed columns, or None if a value needs the exact reader's message."""
    if table.num_rows == 0 or any(table[c].null_count for c in ("user", "movie", "rating", "timestamp")):
        return None
    rating = table["rating"].to_numpy().astype(np.float32, copy=False)
    low, high = bounds
    if not ((rating >= low) & (rating <= high)).all() or (whole_ratings and (rating % 1 != 0).any()):
        return None
    users, movies = _coded(table["user"]), _coded(table["movie"])
    if users is None or movies is None:
        return None
    return Ratings(users, movies, rating, table["timestamp"].to_numpy().astype(np.int64, copy=False))


def _first(mask) -> int:
    return int(np.argmax(np.asarray(mask.to_numpy(zero_copy_only=False))))


def _raise_first_bad_row(table: pa.Table, bounds: tuple, where: str):
    rating = table["rating"].to_numpy()
    bad = (rating < bounds[0]) | (rating > bounds[1])
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"rating {rating[row]:g} in row {row} is out of range: expected from {bounds[0]:g} to "
                        f"{bounds[1]:g}", where)
    for column, what in (("user", "userId"), ("movie", "movieId")):
        empty = pc.equal(pc.utf8_trim_whitespace(table[column]), "")
        if pc.any(empty).as_py():
            raise DataError(f"empty {what} in row {_first(empty)}", where)
    raise DataError("no ratings in the file", where)
