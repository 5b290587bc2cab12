"""Writes a dataset in the GroupLens CSV layout (ml-20m / ml-25m) or as Parquet.

``twostage generate`` uses it to put generated data of any size on disk, so that scale runs
read a file exactly as they would read the real ML-25M. Columns are written by pyarrow,
never a Python string per rating.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from twostage.data.errors import DataError
from twostage.data.schema import MovieLensData

FORMATS = ("csv", "parquet")


def output_files(folder: str, fmt: str) -> list:
    """The files ``write_movielens`` writes into ``folder``."""
    return [os.path.join(folder, "ratings." + ("csv" if fmt == "csv" else "parquet")),
            os.path.join(folder, "movies.csv")]


def check_output(folder: str, fmt: str, force: bool = False) -> None:
    """Refuses (before any work) to overwrite files already in ``folder`` unless ``force``.

    Raises:
      DataError: a file would be overwritten, or ``folder`` is a file.
    """
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise DataError("exists and is not a folder; choose another --out", folder)
    existing = [path for path in output_files(folder, fmt) if os.path.exists(path)]
    if existing and not force:
        raise DataError(f"would overwrite {', '.join(os.path.basename(p) for p in existing)}; "
                        "choose another --out or pass --force", folder)


def write_movielens(data: MovieLensData, folder: str, fmt: str = "csv") -> list:
    """Writes ``ratings.csv`` (or ``ratings.parquet``) and ``movies.csv`` into ``folder``.

    Args:
      data: the dataset (user demographics are not written: the layout has none).
      folder: created if missing.
      fmt: "csv" (userId,movieId,rating,timestamp, as ml-25m) or "parquet" (same columns).

    Returns:
      The paths written.
    """
    os.makedirs(folder, exist_ok=True)
    ratings_path, movies_path = output_files(folder, fmt)
    ratings = data.ratings
    # Ids that are whole numbers are written as numbers (as GroupLens does and pipelines export).
    table = pa.table({"userId": _id_column(ratings.users.ids, ratings.users.codes),
                      "movieId": _id_column(ratings.movies.ids, ratings.movies.codes),
                      "rating": pa.array(ratings.rating, pa.float32()),
                      "timestamp": pa.array(ratings.timestamp, pa.int64())})
    if fmt == "parquet":
        pq.write_table(table, ratings_path)
    else:
        with open(ratings_path, "wb") as f:  # pyarrow would quote the header; GroupLens does not
            f.write(b"userId,movieId,rating,timestamp\n")
            pa_csv.write_csv(table, f, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    with open(movies_path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("movieId", "title", "genres"))
        writer.writerows(zip(data.movies.movie_id.tolist(), data.movies.title.tolist(),
                             ("|".join(g) or "(no genres listed)" for g in data.movies.genres)))
    return [ratings_path, movies_path]


def _id_column(ids: np.ndarray, codes: np.ndarray) -> pa.Array:
    if all(i.isascii() and i.isdigit() and len(i) < 19 for i in ids.tolist()):
        return pa.array(ids.astype(np.int64)[codes])
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(ids.tolist())).cast(pa.string())
