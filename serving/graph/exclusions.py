"""What each user of a request must not be recommended: their training movies and the request's exclusions."""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from twostage.serving.graph.inputs import per_user


def pair_mask(rows, positions, batch, num_movies):
    """[batch, catalog] bool, True at (rows[i], positions[i]); positions -1 are ignored."""
    # The last column absorbs what is not in the catalog, and is dropped.
    indices = tf.stack([rows, tf.where(positions >= 0, positions, num_movies)], axis=1)
    mask = tf.scatter_nd(indices, tf.ones(tf.shape(rows), tf.int32), tf.stack([batch, num_movies + 1])) > 0
    return mask[:, :-1]


def not_yet_available(available_from, request_time, batch):
    """Movies first rated after each user's request time (data.availability).

    Args:
      available_from: [catalog] int64 seconds, each movie's first training rating.
      request_time: [] (no time: nothing left out), [1] shared or [batch] int64 seconds.

    Returns:
      [batch, catalog] bool mask and [batch] counts.
    """
    # No time reads as the latest possible one: every movie is available then.
    times = per_user(request_time, batch, "request_time", missing=tf.int64.max)
    mask = available_from[tf.newaxis, :] > times[:, tf.newaxis]
    return mask, tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)


def requested_exclusions(exclude_movie_ids, batch, movie_rows, num_movies):
    """The request's own exclusions ([rows, n] movie ids, "" pads; none, one shared row, or
    one per user): [batch, catalog] bool mask and [batch] counts of catalog movies."""
    extra = movie_rows.lookup(per_user(exclude_movie_ids, batch, "exclude_movie_ids"))
    extra_rows = tf.broadcast_to(tf.range(batch)[:, tf.newaxis], tf.shape(extra))
    mask = pair_mask(tf.reshape(extra_rows, [-1]), tf.reshape(extra, [-1]), batch, num_movies)
    return mask, tf.reduce_sum(tf.cast(extra >= 0, tf.int32), axis=1)


class Exclusions:
    """The exclusion masks of a request's users, from the module's history tables.

    Args:
      history_values, history_row_splits: each user row's training movies (catalog
        positions), as a ragged table; the unknown user's row is empty.
      history_lengths: [user rows] how many that is.
      seen: [user rows, catalog] bool, the same as a dense table, or None (too large).
      movie_rows: movie id -> catalog position (-1: not in the catalog).
      movie_ids: the catalog, position order (its size).
      available_from: [catalog] int64 seconds, each movie's first training rating (what a
        request time leaves out).
    """

    def __init__(self, history_values: tf.Variable, history_row_splits: tf.Variable, history_lengths: tf.Variable,
                 seen: Optional[tf.Variable], movie_rows: tf.lookup.StaticHashTable, movie_ids: tf.Variable,
                 available_from: tf.Variable):
        self.history_values, self.history_row_splits = history_values, history_row_splits
        self.history_lengths, self.seen = history_lengths, seen
        self.movie_rows, self.movie_ids = movie_rows, movie_ids
        self.available_from = available_from

    def history(self, rows: tf.Tensor) -> tf.RaggedTensor:
        """[batch, (movies)] the training movies (catalog positions) of user rows."""
        history = tf.RaggedTensor.from_row_splits(self.history_values, self.history_row_splits, validate=False)
        return tf.gather(history, rows)

    def _mask(self, rows, positions, batch):
        return pair_mask(rows, positions, batch, tf.shape(self.movie_ids, out_type=tf.int32)[0])

    def __call__(self, rows, exclude_movie_ids, include_seen, request_time=None):
        """What each user must not get: the training history (unless include_seen), the
        request's exclusions and the movies not yet available at its request time.

        Returns:
          [batch, catalog] bool mask and [batch] counts.
        """
        batch = tf.shape(rows)[0]
        # The unknown user's history row (UNKNOWN_USER_ROW, 0) is empty: it is what include_seen asks for.
        seen_rows = rows if include_seen is None else tf.where(include_seen, tf.zeros_like(rows), rows)
        counts = tf.gather(self.history_lengths, seen_rows)
        if self.seen is not None:
            mask = tf.gather(self.seen, seen_rows)
        else:
            # A scatter, not a sort and a binary search: it stays cheap for a batch of heavy users.
            seen = self.history(seen_rows)
            mask = self._mask(tf.cast(seen.value_rowids(), tf.int32), seen.values, batch)

        if request_time is not None:  # the "_at" signatures
            later_mask, later_counts = not_yet_available(self.available_from, request_time, batch)
            mask, counts = mask | later_mask, counts + later_counts
        if exclude_movie_ids is None:
            return mask, counts

        def with_request_exclusions():
            extra_mask, extra_counts = requested_exclusions(exclude_movie_ids, batch, self.movie_rows,
                                                            tf.shape(self.movie_ids, out_type=tf.int32)[0])
            return mask | extra_mask, counts + extra_counts

        # Most requests exclude nothing: they skip the lookup and scatter.
        return tf.cond(tf.size(exclude_movie_ids) > 0, with_request_exclusions, lambda: (mask, counts))
