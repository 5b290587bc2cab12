"""The pyarrow fast path reads exactly what the line-by-line reader reads, in every layout,
and leaves every file it cannot vouch for to it (so errors still name the line)."""

import os

import numpy as np
import pytest

from movielens_files import write_csv, write_ml100k, write_ml1m, zip_folder
from twostage.data import DataError, SyntheticConfig, generate
from twostage.data import readers
from twostage.data.columnar import LAYOUTS, read_ratings_csv
from twostage.data.files import DataFiles
from twostage.data.readers import read_movielens
from twostage.data.writers import check_output, write_movielens

RATINGS_FILE = {"ml-100k": "u.data", "ml-1m": "ratings.dat", "csv": "ratings.csv"}
EXACT = {"ml-100k": lambda f: readers._read_ratings(f, "u.data", readers._split_100k, (1.0, 5.0), True, ""),
         "ml-1m": lambda f: readers._read_ratings(f, "ratings.dat", lambda l: l.split("::"), (0.5, 5.0), False, ""),
         "csv": lambda f: readers._read_ratings(f, "ratings.csv", None, (0.5, 5.0), False, "",
                                                 csv_header=("userId", "movieId", "rating", "timestamp"))}


@pytest.fixture(scope="module")
def tiny(small_data):
    return small_data.with_ratings(small_data.ratings.take(np.arange(400)))


def _same_ratings(a, b):
    for column in ("user_id", "movie_id", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column))


@pytest.mark.parametrize("layout,writer", [("ml-100k", write_ml100k), ("ml-1m", write_ml1m), ("csv", write_csv)])
@pytest.mark.parametrize("zipped", [False, True])
def test_fast_path_equals_exact_path(tmp_path, tiny, layout, writer, zipped):
    path = writer(tiny, str(tmp_path / "data"))
    if zipped:
        path = zip_folder(path, str(tmp_path / "data.zip"))
    files = DataFiles(path)
    fast = read_ratings_csv(files, RATINGS_FILE[layout], LAYOUTS[layout])
    assert fast is not None, "a well-formed file must take the fast path"
    _same_ratings(fast, EXACT[layout](files))
    assert fast.users.codes.dtype == np.int32 and len(fast.users.ids) == len(set(fast.users.ids.tolist()))


def test_a_well_formed_file_never_reaches_the_line_reader(tmp_path, tiny, monkeypatch):
    folder = write_csv(tiny, str(tmp_path / "csv"))
    monkeypatch.setattr(readers, "_read_ratings", lambda *a, **k: pytest.fail("the exact reader ran"))
    _same_ratings(read_movielens(folder).ratings, tiny.ratings)


@pytest.mark.parametrize("bad,message", [
    ("7,3,six,881250949", r"ratings\.csv, line 4: rating 'six' is not a number"),
    ("7,3,9,881250949", r"ratings\.csv, line 4: rating 9 is out of range"),
    ("7,,4,881250949", r"ratings\.csv, line 4: empty user or movie id"),
    ("7,3,4", r"ratings\.csv, line 4: expected 4 comma-separated fields"),
])
def test_a_bad_row_falls_back_to_the_line_reader_and_is_named(tmp_path, tiny, bad, message):
    folder = write_csv(tiny, str(tmp_path / "csv"))
    path = os.path.join(folder, "ratings.csv")
    lines = open(path).read().splitlines()
    lines[3] = bad
    open(path, "w").write("\n".join(lines) + "\n")
    assert read_ratings_csv(DataFiles(folder), "ratings.csv", LAYOUTS["csv"]) is None
    with pytest.raises(DataError, match=message):
        read_movielens(folder)


def test_spaces_around_ids_are_one_id_as_in_the_line_reader(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "movies.csv").write_text("movieId,title,genres\n1,A (1990),Drama\n2,B (1991),Comedy\n")
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n7,1,4.0,10\n 7,2,3.5,11\n")
    ratings = read_movielens(str(folder)).ratings
    assert ratings.user_id.tolist() == ["7", "7"] and len(ratings.users.ids) == 1


def test_generated_data_written_as_csv_and_parquet_reads_back(tmp_path):
    data = generate(SyntheticConfig(num_users=40, num_movies=50, seed=2)).data
    for fmt in ("csv", "parquet"):
        folder = str(tmp_path / fmt)
        write_movielens(data, folder, fmt)
        read = read_movielens(folder)
        _same_ratings(read.ratings, data.ratings)
        np.testing.assert_array_equal(read.movies.title, data.movies.title)
        assert read.users is None and read.rating_scale == (0.5, 5.0)
        with pytest.raises(DataError, match="would overwrite"):
            check_output(folder, fmt)


def test_parquet_errors_name_the_column_or_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = generate(SyntheticConfig(num_users=20, num_movies=30, seed=2)).data
    folder = str(tmp_path / "pq")
    write_movielens(data, folder, "parquet")
    path = os.path.join(folder, "ratings.parquet")
    table = pq.read_table(path)
    pq.write_table(table.drop(["timestamp"]), path)
    with pytest.raises(DataError, match="missing column\\(s\\) timestamp"):
        read_movielens(folder)
    ratings = table.column("rating").to_numpy().copy()
    ratings[5] = 7.0
    pq.write_table(table.set_column(2, "rating", pa.array(ratings)), path)
    with pytest.raises(DataError, match="rating 7 in row 5 is out of range"):
        read_movielens(folder)
    pq.write_table(table.set_column(1, "movieId", pa.array([999] * table.num_rows)), path)
    with pytest.raises(DataError, match="movie id 999 is not in movies.csv \\(row 0\\)"):
        read_movielens(folder)
