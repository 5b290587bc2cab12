"""Readers for the GroupLens MovieLens formats, from a folder or from the original .zip.

Supported layouts (detected from the file names):

* ml-100k: ``u.data`` (tab-separated), ``u.item`` and ``u.user`` (``|``-separated).
* ml-1m (and ml-10m's ratings): ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated).
* the CSV family (ml-latest-small, ml-20m, ml-25m, ml-32m): ``ratings.csv`` + ``movies.csv``;
  no user demographics.
* Parquet: ``ratings.parquet`` (the CSV family's columns) + ``movies.csv``, the form most
  pipelines export.

Ratings files are read by pyarrow (data.columnar) into coded columns; a file the fast path
cannot vouch for is read again line by line, so that every problem is reported as a

:class:`DataError` naming the file and the line.
"""

from __future__ import annotations

import csv
import os
import re
from typing import Callable, Optional

import numpy as np

from twostage.data import columnar
from twostage.data.errors import DataError
from twostage.data.files import DataFiles
from twostage.data.schema import MovieLensData, Movies, Ratings, Users, age_bucket

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
# ml-1m's users.dat stores occupations as codes; its README gives the names.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
_YEAR_IN_TITLE = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
# Timestamps are stored as int64 seconds.
_LARGEST_TIMESTAMP = 2 ** 63 - 1


def _whole_number(text: str) -> bool:
    """Whether ``text`` is ASCII digits ("²".isdigit() is true, yet int("²") fails)."""
    return text.isascii() and text.isdigit()


def detect_format(files: DataFiles) -> str:
    if files.has("u.data"):
        return "ml-100k"
    if files.has("ratings.dat"):
        return "ml-1m"
    if files.has("ratings.csv"):
        return "csv"
    if files.has("ratings.parquet"):
        return "parquet"
    raise DataError(
        "no MovieLens ratings file found (expected u.data for ml-100k, ratings.dat for ml-1m, "
        "ratings.csv for ml-latest/ml-20m/ml-25m, or ratings.parquet)", files.path)


def read_movielens(path: str) -> MovieLensData:
    """Reads a MovieLens dataset from a folder or its .zip.

    Args:
      path: a folder or a .zip in one of the GroupLens layouts.

    Returns:
      The dataset in the common schema, ratings in file order.

    Raises:
      DataError: missing files, wrong format, malformed lines, out-of-range ratings or
        ratings that name movies/users missing from the catalog files.
    """
    files = DataFiles(path)
    fmt = detect_format(files)
    name = os.path.basename(os.path.normpath(path))
    if fmt == "ml-100k":
        _require(files, "u.item")
        genre_names = _read_100k_genres(files) if files.has("u.genre") else ML100K_GENRES
        movies = _read_100k_movies(files, genre_names)
        users = _read_100k_users(files) if files.has("u.user") else None
        ratings = columnar.read_ratings_csv(files, "u.data", columnar.LAYOUTS["ml-100k"]) or _read_ratings(
            files, "u.data", _split_100k, (1.0, 5.0), integer=True,
                                layout="4 tab-separated fields: user id, movie id, rating, timestamp")
        scale = (1.0, 5.0)
    elif fmt == "ml-1m":
        _require(files, "movies.dat")
        movies = _read_1m_movies(files)
        users = _read_1m_users(files) if files.has("users.dat") else None
        # ml-10m's ratings.dat uses half stars; ml-1m's only whole ones, both within 0.5..5.
        ratings = columnar.read_ratings_csv(files, "ratings.dat", columnar.LAYOUTS["ml-1m"]) or _read_ratings(
            files, "ratings.dat", lambda l: l.split("::"), (0.5, 5.0),
                                integer=False, layout="4 '::'-separated fields: UserID::MovieID::Rating::Timestamp")
        scale = (1.0, 5.0) if np.all(np.mod(ratings.rating, 1.0) == 0) else (0.5, 5.0)
    elif fmt == "parquet":
        _require(files, "movies.csv")
        movies = _read_csv_movies(files)
        users = None
        ratings = columnar.read_ratings_parquet(files, "ratings.parquet")
        scale = (0.5, 5.0)
    else:
        _require(files, "movies.csv")
        movies = _read_csv_movies(files)
        users = None
        ratings = columnar.read_ratings_csv(files, "ratings.csv", columnar.LAYOUTS["csv"]) or _read_ratings(
            files, "ratings.csv", None, (0.5, 5.0), integer=False,
                                layout="4 comma-separated fields: userId,movieId,rating,timestamp", csv_header=(
                                    "userId", "movieId", "rating", "timestamp"))
        scale = (0.5, 5.0)
    _check_references(files, fmt, ratings, movies, users)
    return MovieLensData(name=name, ratings=ratings, movies=movies, users=users, rating_scale=scale)


def _require(files: DataFiles, name: str):
    if not files.has(name):
        raise DataError(f"{name} is missing next to the ratings file", files.path)


def _split_100k(line: str) -> list:
    parts = line.split("\t")
    return parts if len(parts) == 4 else line.split()


def _read_ratings(files: DataFiles, name: str, splitter: Optional[Callable], bounds: tuple, integer: bool,
                  layout: str, csv_header: Optional[tuple] = None) -> Ratings:
    where = files.display(name)
    users, movies, values, stamps = [], [], [], []
    lines = files.lines(name, "utf-8" if csv_header else "latin-1")
    if csv_header:
        number, header = next(lines)
        if tuple(h.strip() for h in header.split(",")) != csv_header:
            raise DataError(f"expected the header {','.join(csv_header)}, found {header!r}", where, number)
        splitter = lambda l: l.split(",")  # noqa: E731  ids and numbers never hold commas
    low, high = bounds
    for number, line in lines:
        parts = splitter(line)
        if len(parts) != 4:
            raise DataError(f"expected {layout}; found {len(parts)} field(s) in {line!r}", where, number)
        user, movie, rating_text, stamp_text = (p.strip() for p in parts)
        if not user or not movie:
            raise DataError(f"empty user or movie id in {line!r}", where, number)
        try:
            rating = float(rating_text)
        except ValueError:
            raise DataError(f"rating {rating_text!r} is not a number", where, number) from None
        if not (low <= rating <= high) or (integer and rating != int(rating)):
            kind = "a whole number " if integer else ""
            raise DataError(f"rating {rating_text} is out of range: expected {kind}from {low:g} to {high:g} "
                            f"(user {user}, movie {movie})", where, number)
        try:
            stamp = int(stamp_text) if _whole_number(stamp_text) else int(float(stamp_text))
        except (ValueError, OverflowError):
            raise DataError(f"timestamp {stamp_text!r} is not a number of seconds", where, number) from None
        if abs(stamp) > _LARGEST_TIMESTAMP:
            raise DataError(f"timestamp {stamp_text} is out of range (seconds since 1970 fit in 19 digits)",
                            where, number)
        users.append(user)
        movies.append(movie)
        values.append(rating)
        stamps.append(stamp)
    if not users:
        raise DataError("no ratings in the file", where)
    return Ratings.from_rows(users, movies, values, stamps)


def _read_100k_genres(files: DataFiles) -> tuple:
    names = []
    for number, line in files.lines("u.genre", "latin-1"):
        parts = line.split("|")
        if len(parts) != 2:
            raise DataError(f"expected 'name|index', found {line!r}", files.display("u.genre"), number)
        names.append(parts[0])
    return tuple(names)


def release_year(title: str, date: str = "") -> int:
    """The release year from a "01-Jan-1995" date, else from a "Title (1995)" title; 0 if neither."""
    if len(date) >= 4 and _whole_number(date[-4:]):
        return int(date[-4:])
    match = _YEAR_IN_TITLE.search(title)
    return int(match.group(1)) if match else 0


def _unique(ids: list, what: str, where: str, numbers: list):
    seen = {}
    for movie_id, number in zip(ids, numbers):
        if movie_id in seen:
            raise DataError(f"{what} id {movie_id} appears twice (first on line {seen[movie_id]})", where, number)
        seen[movie_id] = number


class _CatalogRows:
    """Collects catalog rows as a movies file is read; one id per movie, checked."""

    def __init__(self, where: str):
        self.where = where
        self.rows, self.first_line = [], {}

    def add(self, number: int, movie_id: str, title: str, genres: tuple, year: int):
        movie_id = movie_id.strip()
        if movie_id in self.first_line:
            raise DataError(f"movie id {movie_id} appears twice (first on line {self.first_line[movie_id]})",
                            self.where, number)
        self.first_line[movie_id] = number
        self.rows.append((movie_id, title.strip(), genres, year))

    def movies(self) -> Movies:
        if not self.rows:
            raise DataError("no movies in the file", self.where)
        ids, titles, genres, years = zip(*self.rows)
        return Movies(np.asarray(ids, dtype=str), np.asarray(titles, dtype=str), tuple(genres),
                      np.asarray(years, dtype=np.int32))


def _read_100k_movies(files: DataFiles, genre_names: tuple) -> Movies:
    where = files.display("u.item")
    catalog = _CatalogRows(where)
    for number, line in files.lines("u.item", "latin-1"):
        parts = line.split("|")
        if len(parts) != 5 + len(genre_names):
            raise DataError(f"expected {5 + len(genre_names)} '|'-separated fields (id|title|release date|"
                            f"video date|url|{len(genre_names)} genre flags), found {len(parts)}", where, number)
        flags = parts[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataError(f"genre flags must be 0 or 1, found {'|'.join(flags)}", where, number)
        genres = tuple(g for g, flag in zip(genre_names, flags) if flag == "1" and g != "unknown")
        catalog.add(number, parts[0], parts[1], genres, release_year(parts[1], parts[2].strip()))
    return catalog.movies()


def _read_100k_users(files: DataFiles) -> Users:
    where = files.display("u.user")
    rows, numbers = [], []
    for number, line in files.lines("u.user", "latin-1"):
        parts = line.split("|")
        if len(parts) != 5:
            raise DataError(f"expected 5 '|'-separated fields (id|age|gender|occupation|zip), found {len(parts)}",
                            where, number)
        if not _whole_number(parts[1].strip()):
            raise DataError(f"age {parts[1]!r} is not a whole number", where, number)
        rows.append((parts[0].strip(), age_bucket(int(parts[1])), parts[2].strip(), parts[3].strip(),
                     parts[4].strip()))
        numbers.append(number)
    _unique([r[0] for r in rows], "user", where, numbers)
    return _users(rows)


def _users(rows: list) -> Users:
    ids, ages, genders, occupations, zips = zip(*rows)
    return Users(np.asarray(ids, dtype=str), np.asarray(ages, dtype=np.int32), np.asarray(genders, dtype=str),
                 np.asarray(occupations, dtype=str), np.asarray(zips, dtype=str))


def _read_1m_movies(files: DataFiles) -> Movies:
    where = files.display("movies.dat")
    catalog = _CatalogRows(where)
    for number, line in files.lines("movies.dat", "latin-1"):
        parts = line.split("::")
        if len(parts) != 3:
            raise DataError(f"expected 3 '::'-separated fields (MovieID::Title::Genres), found {len(parts)}",
                            where, number)
        catalog.add(number, parts[0], parts[1], _genre_list(parts[2]), release_year(parts[1]))
    return catalog.movies()


def _genre_list(text: str) -> tuple:
    text = text.strip()
    if not text or text == "(no genres listed)":
        return ()
    return tuple(g for g in text.split("|") if g)


def _read_1m_users(files: DataFiles) -> Users:
    where = files.display("users.dat")
    rows, numbers = [], []
    for number, line in files.lines("users.dat", "latin-1"):
        parts = line.split("::")
        if len(parts) != 5:
            raise DataError(f"expected 5 '::'-separated fields (UserID::Gender::Age::Occupation::Zip-code), "
                            f"found {len(parts)}", where, number)
        age, occupation = parts[2].strip(), parts[3].strip()
        if not _whole_number(age) or not _whole_number(occupation):
            raise DataError(f"age and occupation must be numeric codes, found {age!r} and {occupation!r}",
                            where, number)
        code = int(occupation)
        name = ML1M_OCCUPATIONS[code] if code < len(ML1M_OCCUPATIONS) else occupation
        rows.append((parts[0].strip(), age_bucket(int(age)), parts[1].strip(), name, parts[4].strip()))
        numbers.append(number)
    _unique([r[0] for r in rows], "user", where, numbers)
    return _users(rows)


def _read_csv_movies(files: DataFiles) -> Movies:
    where = files.display("movies.csv")
    lines = files.lines("movies.csv", "utf-8")
    number, header = next(lines)
    if [h.strip() for h in header.split(",")] != ["movieId", "title", "genres"]:
        raise DataError(f"expected the header movieId,title,genres, found {header!r}", where, number)
    catalog = _CatalogRows(where)
    for number, line in lines:
        try:
            parts = next(csv.reader([line], strict=True))
        except csv.Error as err:
            raise DataError(f"malformed CSV ({err})", where, number) from None
        if len(parts) != 3:
            raise DataError(f"expected 3 fields (movieId,title,genres), found {len(parts)}", where, number)
        catalog.add(number, parts[0], parts[1], _genre_list(parts[2]), release_year(parts[1]))
    return catalog.movies()


def _check_references(files: DataFiles, fmt: str, ratings: Ratings, movies: Movies, users: Optional[Users]):
    ratings_file = {"ml-100k": "u.data", "ml-1m": "ratings.dat", "csv": "ratings.csv",
                    "parquet": "ratings.parquet"}[fmt]
    header_lines = 1 if fmt == "csv" else 0
    checks = [(ratings.movies, movies.movie_id, "movie", {"ml-100k": "u.item", "ml-1m": "movies.dat"}.get(fmt, "movies.csv"))]
    if users is not None:
        checks.append((ratings.users, users.user_id, "user", "u.user" if fmt == "ml-100k" else "users.dat"))
    for column, known, what, catalog in checks:
        missing = column.positions(known) < 0
        if missing.any():
            row = int(np.argmax(missing))
            message = f"{what} id {column.ids[column.codes[row]]} is not in {catalog}"
            if fmt == "parquet":
                raise DataError(f"{message} (row {row})", files.display(ratings_file))
            raise DataError(message, files.display(ratings_file), _line_of(files, ratings_file, row, header_lines))


def _line_of(files: DataFiles, name: str, row: int, header_lines: int) -> int:
    """The file line of the row-th data line (blank lines are skipped when reading)."""
    for index, (number, _) in enumerate(files.lines(name, "latin-1")):
        if index == row + header_lines:
            return number
    return row + 1 + header_lines
