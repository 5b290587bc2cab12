"""Offline metrics with the definitions every report in this project uses.

For each test user, movies that user rated in training are excluded from the ranked list;
recall@K = hits in the top K / min(K, that user's test movies); NDCG@K uses binary relevance
and the ideal over min(K, n); both are averaged over test users.
``top_k_categorical_accuracy`` is the TFRS metric: the share of test (user, movie) pairs whose
movie is among the top K over all movies, seen ones included.

Everything here works on score matrices or ranked id lists, so the same code scores the
two-tower model, the final two-stage list and any baseline.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional, Sequence

import numpy as np

from twostage.data.availability import unavailable
from twostage.data.schema import Ratings


# Validation while choosing settings scores at most this many validation users (a seeded
# sample beyond it): at 160k users, every epoch or setting scored in full would cost minutes.
VALIDATION_USERS = 20_000


def _codes(rows: np.ndarray, cols: np.ndarray, width: int) -> np.ndarray:
    return rows.astype(np.int64) * width + cols.astype(np.int64)


def _by_row(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) pairs sorted by row: a batch of rows then finds its pairs by bisection
    (``_in_rows``), not by a mask over every pair (the pairs of every training rating)."""
    order = np.argsort(rows, kind="stable")
    return rows[order], cols[order]


def _in_rows(rows: np.ndarray, start: int, stop: int) -> slice:
    """The slice of row-sorted ``rows`` that lies in [start, stop)."""
    low, high = np.searchsorted(rows, [start, stop])
    return slice(int(low), int(high))


class HeldOutEvaluator:
    """Scores recommendations for the test users of a split.

    Args:
      catalog_ids: the movie ids in catalog order (score matrices have one column each).
      train: the training ratings (their movies are excluded from each user's list).
      test: the held-out ratings.
      max_users: score a uniform sample of this many test users (seeded), not all of them:
        what every epoch's validation can afford at 160k users (``all_users`` says how many
        there were).
      seed: seeds the sample.
    """

    def __init__(self, catalog_ids: np.ndarray, train: Ratings, test: Ratings, max_users: Optional[int] = None,
                 seed: int = 0):
        self.catalog_ids = np.asarray(catalog_ids, dtype=str)
        self.num_items = len(self.catalog_ids)
        self._column = {movie: i for i, movie in enumerate(self.catalog_ids.tolist())}
        self.user_ids = test.users.used()
        self.all_users = len(self.user_ids)
        if max_users is not None and self.all_users > max_users:
            chosen = np.random.default_rng(seed).choice(self.all_users, max_users, replace=False)
            self.user_ids = self.user_ids[np.sort(chosen)]
        test_rows = test.users.positions(self.user_ids)
        test_cols = test.movies.positions(self.catalog_ids)
        sampled = test_rows >= 0
        test_rows, test_cols = test_rows[sampled], test_cols[sampled]
        # A user's test movies count in the denominator even if the catalog lacks them.
        unique_pairs = np.unique(_codes(test_rows, test_cols + 1, self.num_items + 1))
        self.num_test = np.bincount(unique_pairs // (self.num_items + 1), minlength=len(self.user_ids))
        known = test_cols >= 0
        self._test_rows, self._test_cols = _by_row(test_rows[known], test_cols[known])
        self._test_codes = np.unique(_codes(self._test_rows, self._test_cols, self.num_items))
        train_rows = train.users.positions(self.user_ids)
        train_cols = train.movies.positions(self.catalog_ids)
        keep = (train_rows >= 0) & (train_cols >= 0)
        self._seen_rows, self._seen_cols = _by_row(train_rows[keep], train_cols[keep])
        self.available_from = self.request_times = None

    def as_of(self, available_from: np.ndarray, request_times: np.ndarray) -> "HeldOutEvaluator":
        """This evaluator with each user's lists asked at a time: movies not yet available
        then are left out as training movies are (data.availability).

        Args:
          available_from: [catalog] int64, each movie's first training rating.
          request_times: [len(user_ids)] int64, each user's request time.
        """
        if len(request_times) != len(self.user_ids) or len(available_from) != self.num_items:
            raise ValueError(f"expected {len(self.user_ids)} request times and {self.num_items} movie times, got "
                             f"{len(request_times)} and {len(available_from)}")
        timed = copy.copy(self)
        timed.available_from = np.asarray(available_from, np.int64)
        timed.request_times = np.asarray(request_times, np.int64)
        return timed

    def column_of(self, movie_ids: np.ndarray) -> np.ndarray:
        """Catalog columns of movie ids (-1 for ids not in the catalog)."""
        flat = [self._column.get(m, -1) for m in np.asarray(movie_ids, dtype=str).ravel().tolist()]
        return np.asarray(flat, dtype=np.int64).reshape(np.shape(movie_ids))

    def held_out(self, columns: np.ndarray) -> np.ndarray:
        """[num test users, n] bool: which of each user's catalog ``columns`` (-1 pads, never
        held out) are among their held-out movies."""
        columns = np.asarray(columns)
        if columns.shape[0] != len(self.user_ids):
            raise ValueError(f"expected {len(self.user_ids)} ranked lists, got {columns.shape[0]}")
        rows = np.arange(len(self.user_ids))[:, None]
        return np.isin(_codes(rows, columns, self.num_items), self._test_codes) & (columns >= 0)

    def ranked_list_metrics(self, ranked_columns: np.ndarray, ks: Sequence[int]) -> dict:
        """recall@K and NDCG@K of ranked lists, one row per test user (in ``user_ids`` order).

        Args:
          ranked_columns: [num test users, n] catalog columns, best first; -1 pads (a list
            shorter than K, as a small catalog leaves it, scores as if padded).
          ks: the cut-offs.

        Returns:
          {"recall@K": ..., "ndcg@K": ...} averaged over test users.
        """
        ranked_columns = np.asarray(ranked_columns).reshape(len(ranked_columns), -1)
        if ranked_columns.shape[1] < max(ks):
            padding = np.full((ranked_columns.shape[0], max(ks) - ranked_columns.shape[1]), -1, np.int64)
            ranked_columns = np.concatenate([ranked_columns, padding], axis=1)
        hits = self.held_out(ranked_columns)
        discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
        results = {}
        for k in ks:
            relevant = np.minimum(k, self.num_test)
            results[f"recall@{k}"] = float(np.mean(hits[:, :k].sum(axis=1) / relevant))
            ideal = np.cumsum(discounts[:k])[relevant - 1]
            results[f"ndcg@{k}"] = float(np.mean((hits[:, :k] * discounts[:k]).sum(axis=1) / ideal))
        return results

    def _score_batches(self, score_users, batch_size: int):
        for start in range(0, len(self.user_ids), batch_size):
            stop = min(start + batch_size, len(self.user_ids))
            scores = np.asarray(score_users(self.user_ids[start:stop]))
            # A copy (seen movies are written over), float32 kept as it is: it ranks the same,
            # and selecting the top of a float32 row takes half the time of float64's.
            scores = np.array(scores, dtype=scores.dtype if scores.dtype in (np.float32, np.float64) else np.float64)
            if scores.shape != (stop - start, self.num_items):
                raise ValueError(f"scores have shape {scores.shape}, expected {(stop - start, self.num_items)}")
            yield start, stop, scores

    def _top_unseen(self, start: int, stop: int, scores: np.ndarray, depth: int):
        """Best ``depth`` columns per row with training movies (and, asked at a time, the
        movies not yet available) excluded (-1 pads)."""
        seen = _in_rows(self._seen_rows, start, stop)
        scores[self._seen_rows[seen] - start, self._seen_cols[seen]] = -np.inf
        if self.request_times is not None:
            scores[unavailable(self.available_from, self.request_times[start:stop])] = -np.inf
        top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        best = np.take_along_axis(top, order, axis=1)
        best_scores = np.take_along_axis(scores, best, axis=1)
        best[best_scores == -np.inf] = -1
        return best, best_scores

    def top_unseen(self, score_users: Callable[[np.ndarray], np.ndarray], depth: int,
                   batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Each test user's best ``depth`` catalog columns, training movies excluded.

        Returns:
          (columns, scores), each [num test users, depth], best first; column -1 pads.
        """
        depth = min(depth, self.num_items)
        columns = np.full((len(self.user_ids), depth), -1, dtype=np.int64)
        values = np.full((len(self.user_ids), depth), -np.inf)
        for start, stop, scores in self._score_batches(score_users, batch_size):
            columns[start:stop], values[start:stop] = self._top_unseen(start, stop, scores, depth)
        return columns, values

    def score_metrics(self, score_users: Callable[[np.ndarray], np.ndarray], ks: Sequence[int] = (10, 50, 100),
                      accuracy_k: int = 100, batch_size: int = 1024, progress: Callable | None = None) -> dict:
        """Metrics of a model that scores every catalog movie for a user.

        Args:
          score_users: user ids -> [len(ids), num catalog movies] scores (higher is better).
          ks: cut-offs for recall@K and NDCG@K (training movies excluded).
          accuracy_k: K of ``top_K_categorical_accuracy`` (nothing excluded).
          batch_size: users scored at once.
          progress: called with (users done, users in all) after each batch.

        Returns:
          recall@K, ndcg@K and top_{accuracy_k}_categorical_accuracy.
        """
        depth = min(max(ks), self.num_items)
        ranked = np.full((len(self.user_ids), max(ks)), -1, dtype=np.int64)
        accurate = 0
        for start, stop, scores in self._score_batches(score_users, batch_size):
            # TFRS top-K accuracy: the true movie is in the top K over all movies (seen included),
            # i.e. its score is at least the K-th largest score.
            in_batch = _in_rows(self._test_rows, start, stop)
            pair_rows, pair_cols = self._test_rows[in_batch] - start, self._test_cols[in_batch]
            kth = min(accuracy_k, self.num_items) - 1
            kth_largest = -np.partition(-scores, kth, axis=1)[:, kth]
            accurate += int(np.sum(scores[pair_rows, pair_cols] >= kth_largest[pair_rows]))
            ranked[start:stop, :depth] = self._top_unseen(start, stop, scores, depth)[0]
            if progress:
                progress(stop, len(self.user_ids))
        results = self.ranked_list_metrics(ranked, ks)
        results[f"top_{accuracy_k}_categorical_accuracy"] = accurate / max(1, len(self._test_rows))
        return results


def rating_counts(catalog_ids: np.ndarray, train: Ratings) -> np.ndarray:
    """[catalog] number of training ratings of each catalog movie (movies outside it ignored)."""
    cols = train.movies.positions(catalog_ids)
    return np.bincount(cols[cols >= 0], minlength=len(catalog_ids))


def popularity_scorer(catalog_ids: np.ndarray, train: Ratings) -> Callable[[np.ndarray], np.ndarray]:
    """The popularity baseline: every user gets the catalog scored by training rating counts.

    Args:
      catalog_ids: movie ids in catalog order.
      train: the training ratings.

    Returns:
      user ids -> [users, catalog] scores, for :meth:`HeldOutEvaluator.score_metrics`.
    """
    counts = rating_counts(catalog_ids, train).astype(np.float32)
    return lambda user_ids: np.broadcast_to(counts, (len(user_ids), len(counts)))
