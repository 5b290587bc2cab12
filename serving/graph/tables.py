"""The tables an exported model looks up at request time, and how deep its index is built."""

from __future__ import annotations

import dataclasses

import numpy as np

from twostage.data.history import RaggedTable


@dataclasses.dataclass
class ServingTables:
    """What the exported model looks up at request time, all from the training part.

    Attributes:
      movie_ids, titles: the catalog, position order.
      candidate_embeddings: [catalog, dim] candidate-tower embeddings.
      user_ids: the training users (rows 1..n of every per-user table; row
        data.features.UNKNOWN_USER_ROW is a user never seen).
      user_embeddings: [n, dim] query embeddings of those users (their training features
        and history), so a known user costs a gather, not a pass through the query tower.
      history: each user's training movies (rows 1..n), excluded by default.
      fans: each movie's users who liked it (user rows), for "also liked".
      popularity: [catalog] training rating counts (cold start without features).
      available_from: [catalog] int64 seconds, each movie's first training rating (what a
        request time leaves out; data.availability).
    """

    movie_ids: np.ndarray
    titles: np.ndarray
    candidate_embeddings: np.ndarray
    user_ids: np.ndarray
    user_embeddings: np.ndarray
    history: RaggedTable
    fans: RaggedTable
    popularity: np.ndarray
    available_from: np.ndarray


def max_depth(num_movies: int, num_candidates: int, history: RaggedTable, max_exclusions: int) -> int:
    """The most neighbours a request may ask the index for: candidates + the longest history
    + extra exclusions, capped at the catalog."""
    return min(num_movies, min(num_candidates, num_movies) + history.max_length + max_exclusions)
