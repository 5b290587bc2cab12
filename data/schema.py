"""The one schema every data source is read into.

Ids are strings everywhere (they become ``StringLookup`` vocabularies), genres are kept as
tuples of names, and a year of 0 means unknown. Tables are column-oriented numpy arrays so
that a 25M-rating file stays cheap to split and to feed to ``tf.data``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

# Age buckets used by ml-1m (and by the TFDS "bucketized_user_age" feature); ml-100k's raw
# ages are mapped onto the same buckets so that every source speaks one vocabulary.
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)


def age_bucket(age: int) -> int:
    """Maps a raw age in years to the ml-1m bucket it falls in (0 when unknown)."""
    if age <= 0:
        return 0
    bucket = AGE_BUCKETS[0]
    for lower in AGE_BUCKETS:
        if age >= lower:
            bucket = lower
    return bucket


@dataclasses.dataclass(frozen=True)
class CodedIds:
    """A column of string ids stored as integer codes into the distinct ids.

    A 25M-row column is 100 MB of int32 codes instead of 25M Python-sized strings; every
    per-row question about ids (which vocabulary row, which catalog position) is answered
    once per distinct id and then gathered by code.

    Attributes:
      codes: int32 [rows], each an index into ``ids``.
      ids: str [distinct ids], in no particular order (some may be used by no row, e.g.
        after a split).
    """

    codes: np.ndarray
    ids: np.ndarray

    @staticmethod
    def encode(values: Sequence) -> "CodedIds":
        """Codes for a column of id strings."""
        ids, codes = np.unique(np.asarray(values, dtype=str), return_inverse=True)
        return CodedIds(codes.astype(np.int32).reshape(-1), ids)

    def __len__(self) -> int:
        return len(self.codes)

    def strings(self) -> np.ndarray:
        """The ids of every row, as strings (materialises one string per row: small data only)."""
        return self.ids[self.codes]

    def take(self, indices: np.ndarray) -> "CodedIds":
        return CodedIds(self.codes[indices], self.ids)

    def positions(self, vocabulary: Sequence[str], offset: int = 0) -> np.ndarray:
        """Each row's position in ``vocabulary`` plus ``offset``; -1 where its id is not there.

        Args:
          vocabulary: ids in the order of their positions (a catalog, a user vocabulary).
          offset: added to every found position (1 for tables whose row 0 is "unknown").

        Returns:
          int64 [rows].
        """
        index = {key: i + offset for i, key in enumerate(np.asarray(vocabulary, dtype=str).tolist())}
        of_code = np.fromiter((index.get(key, -1) for key in self.ids.tolist()), np.int64, len(self.ids))
        return of_code[self.codes] if len(of_code) else np.full(len(self.codes), -1, np.int64)

    def used(self) -> np.ndarray:
        """The distinct ids some row uses, sorted."""
        return np.sort(self.ids[np.flatnonzero(np.bincount(self.codes, minlength=len(self.ids)))])


@dataclasses.dataclass(frozen=True)
class Ratings:
    """Explicit ratings, one row per (user, movie) event, in source order.

    Ids are :class:`CodedIds` (``user_id`` / ``movie_id`` give them as strings, for small
    data and tests; code that runs at scale works on the codes).
    """

    users: CodedIds
    movies: CodedIds
    rating: np.ndarray  # float32
    timestamp: np.ndarray  # int64, seconds since the epoch

    def __post_init__(self):
        n = len(self.users)
        for field in ("movies", "rating", "timestamp"):
            if len(getattr(self, field)) != n:
                raise ValueError(f"Ratings.{field} has {len(getattr(self, field))} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.users)

    @property
    def user_id(self) -> np.ndarray:
        """str [rows]: the user id of every row."""
        return self.users.strings()

    @property
    def movie_id(self) -> np.ndarray:
        """str [rows]: the movie id of every row."""
        return self.movies.strings()

    def take(self, indices: np.ndarray) -> "Ratings":
        """Returns the rows at ``indices`` (in that order)."""
        return Ratings(self.users.take(indices), self.movies.take(indices), self.rating[indices],
                       self.timestamp[indices])

    def of_users(self, user_ids: Sequence[str]) -> "Ratings":
        """The rows of the users in ``user_ids`` (in their order here)."""
        return self.take(np.flatnonzero(self.users.positions(user_ids) >= 0))

    def pairs(self) -> set:
        """The set of (user id, movie id) pairs."""
        return set(zip(self.user_id.tolist(), self.movie_id.tolist()))

    def latest_per_pair(self) -> tuple["Ratings", int]:
        """One rating per (user, movie): of a pair rated more than once, the latest by
        timestamp (of equal timestamps, the later row). Rows keep their source order.

        Returns:
          The ratings without the earlier re-ratings, and how many rows were dropped.
        """
        n = len(self)
        # Sorted by pair, then time, then row: the last row of each pair's run is the one kept.
        order = np.lexsort((np.arange(n), self.timestamp, self.movies.codes, self.users.codes))
        users, movies = self.users.codes[order], self.movies.codes[order]
        last_of_pair = np.r_[(users[1:] != users[:-1]) | (movies[1:] != movies[:-1]), True]
        if last_of_pair.all():
            return self, 0
        keep = np.sort(order[last_of_pair])
        return self.take(keep), n - len(keep)

    @staticmethod
    def from_rows(user_id: Sequence, movie_id: Sequence, rating: Sequence, timestamp: Sequence) -> "Ratings":
        return Ratings(
            users=CodedIds.encode(user_id),
            movies=CodedIds.encode(movie_id),
            rating=np.asarray(rating, dtype=np.float32),
            timestamp=np.asarray(timestamp, dtype=np.int64),
        )


@dataclasses.dataclass(frozen=True)
class Movies:
    """The catalog: one row per movie."""

    movie_id: np.ndarray  # str, unique
    title: np.ndarray  # str
    genres: tuple  # tuple of tuples of genre names
    year: np.ndarray  # int32, 0 = unknown

    def __len__(self) -> int:
        return len(self.movie_id)

    def genre_strings(self) -> np.ndarray:
        """Genres joined with '|' (the form the TF models split again)."""
        return np.asarray(["|".join(g) for g in self.genres], dtype=str)


@dataclasses.dataclass(frozen=True)
class Users:
    """User demographics, where the source has them (ml-100k, ml-1m, synthetic)."""

    user_id: np.ndarray  # str, unique
    age: np.ndarray  # int32, ml-1m age bucket (see AGE_BUCKETS), 0 = unknown
    gender: np.ndarray  # str: "M", "F" or ""
    occupation: np.ndarray  # str
    zip_code: np.ndarray  # str

    def __len__(self) -> int:
        return len(self.user_id)


@dataclasses.dataclass(frozen=True)
class MovieLensData:
    """A whole dataset: ratings plus the movie catalog and, optionally, user features.

    Attributes:
      name: where it came from ("ml-100k", "synthetic", a path, ...), for reports.
      ratings: all ratings, in source order (the random split depends on that order).
      movies: the catalog; every rated movie is in it.
      users: user features, or None when the format has none (the CSV family).
      rating_scale: (lowest, highest) rating the format allows.
      merged_ratings: earlier ratings of a (user, movie) pair rated again, dropped when the
        data was loaded (the latest rating of each pair is kept).
    """

    name: str
    ratings: Ratings
    movies: Movies
    users: Optional[Users]
    rating_scale: tuple
    merged_ratings: int = 0

    def with_ratings(self, ratings: Ratings) -> "MovieLensData":
        """The same catalog and users with other ratings (a split part)."""
        return dataclasses.replace(self, ratings=ratings)
