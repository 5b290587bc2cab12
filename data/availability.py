"""Availability in time: when each movie first appears in the training ratings, and what a
request at a given time may therefore be recommended.

A movie nobody had rated by a request's time was not yet in the catalog then. Requests that
carry a time (``request_time``) leave such movies out; evaluation asks each user's lists as of
their last training rating when validation showed that to help (docs/quality.md).
"""

from __future__ import annotations

import numpy as np

from twostage.data.schema import Ratings

# A movie without training ratings is available at any time; a user without them asks with
# no time (nothing is left out).
ALWAYS = np.iinfo(np.int64).min
NO_TIME = np.iinfo(np.int64).max


def first_rated(catalog_ids: np.ndarray, ratings: Ratings) -> np.ndarray:
    """[catalog] int64 seconds: each catalog movie's first rating in ``ratings`` (ALWAYS: none)."""
    return _extreme_per_id(ratings.movies.positions(catalog_ids), len(catalog_ids), ratings.timestamp, first=True)


def last_rated(user_ids: np.ndarray, ratings: Ratings) -> np.ndarray:
    """[users] int64 seconds: each user's last rating in ``ratings`` (NO_TIME: none)."""
    return _extreme_per_id(ratings.users.positions(user_ids), len(user_ids), ratings.timestamp, first=False)


def _extreme_per_id(rows: np.ndarray, size: int, timestamp: np.ndarray, first: bool) -> np.ndarray:
    """The earliest (``first``) or latest timestamp of each position 0..size-1 of ``rows``."""
    kept = rows >= 0
    out = np.full(size, ALWAYS if first else NO_TIME, np.int64)
    if not kept.any():
        return out
    found = np.full(size, np.iinfo(np.int64).max if first else np.iinfo(np.int64).min, np.int64)
    (np.minimum if first else np.maximum).at(found, rows[kept], timestamp[kept])
    has = np.bincount(rows[kept], minlength=size) > 0
    out[has] = found[has]
    return out


def unavailable(available_from: np.ndarray, request_times: np.ndarray) -> np.ndarray:
    """[users, catalog] bool: the movies not yet available at each user's request time.

    Args:
      available_from: [catalog] int64, each movie's first rating (``first_rated``).
      request_times: [users] int64 seconds (NO_TIME: no time, nothing left out).
    """
    return np.asarray(available_from)[np.newaxis, :] > np.asarray(request_times, np.int64)[:, np.newaxis]
