"""Per-user and per-movie interaction tables built from the training part.

The query tower pools a user's history; the exported model excludes it from
recommendations and finds each movie's fans in it. All are ragged tables of int32 values,
row 0 kept for unknown users where rows are users.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from twostage.data.schema import Movies, Ratings

class RaggedTable:
    """Row -> sorted unique int32 values, as (values, row_splits) for ``tf.RaggedTensor``.

    Args:
      rows: row of each pair (0..num_rows-1).
      values: value of each pair.
      num_rows: rows in the table (rows without pairs are empty).
      weights: a number per pair (e.g. the rating), kept aligned with ``values``; of a pair
        given twice, the last one's.
    """

    def __init__(self, rows: np.ndarray, values: np.ndarray, num_rows: int, weights: Optional[np.ndarray] = None):
        width = int(values.max(initial=0)) + 1
        keys = rows.astype(np.int64) * width + values.astype(np.int64)
        # Sorted by row, then value; of repeated pairs the last (np.unique keeps the first of the reversed keys).
        pairs, last = np.unique(keys[::-1], return_index=True)
        rows, values = pairs // width, pairs % width
        self.values = values.astype(np.int32)
        self.row_splits = np.searchsorted(rows, np.arange(num_rows + 1)).astype(np.int64)
        self.max_length = int(np.diff(self.row_splits).max(initial=0))
        self.weights = None if weights is None else np.asarray(weights, np.float32)[::-1][last]


def training_history(train: Ratings, user_ids: Sequence[str], movies: Movies, with_ratings: bool = False) -> RaggedTable:
    """Each known user's training movies as catalog positions; row 0 (unknown users) empty.

    Args:
      train: the training ratings.
      user_ids: the user vocabulary (rows 1..n).
      movies: the catalog.
      with_ratings: keep each pair's rating as its weight (of a pair rated twice, the later
        row's).
    """
    rows = train.users.positions(user_ids, offset=1)
    cols = train.movies.positions(movies.movie_id)
    keep = (rows > 0) & (cols >= 0)
    weights = np.asarray(train.rating, np.float32)[keep] if with_ratings else None
    return RaggedTable(rows[keep], cols[keep], len(user_ids) + 1, weights)


def fans(train: Ratings, user_ids: Sequence[str], movies: Movies, liked_rating: float) -> RaggedTable:
    """For each catalog movie, the user rows (1..n) who rated it at least ``liked_rating``."""
    liked = train.rating >= liked_rating
    rows = train.movies.positions(movies.movie_id)[liked]
    users = train.users.positions(user_ids, offset=1)[liked]
    keep = (rows >= 0) & (users > 0)
    return RaggedTable(rows[keep], users[keep], len(movies))


def ragged_table(values: np.ndarray, row_splits: np.ndarray) -> RaggedTable:
    """A RaggedTable from its (values, row_splits), e.g. read back from an export."""
    rows = np.repeat(np.arange(len(row_splits) - 1), np.diff(row_splits))
    return RaggedTable(rows, np.asarray(values), len(row_splits) - 1)
