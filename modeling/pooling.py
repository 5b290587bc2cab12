"""Pooling the movies a user rated into one vector: the history input both stages' models read."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from twostage.data.history import RaggedTable
from twostage.modeling.distribute import variables_are_remote
from twostage.modeling.layers import training_noise
from twostage.modeling.tf_setup import require_legacy_keras

keras = require_legacy_keras()

# Up to this many [users of a batch] x [catalog] cells, history pooling multiplies a dense
# matrix (faster per step); past it, a sparse one, to bound memory.
DENSE_POOLING_CELLS = 40_000_000
# A sparse product costs about 80 times a dense cell per element: where the batch size is not
# fixed (serving), a matrix sparser than one rated movie in this many cells takes the sparse
# product (a few users, a large catalog).
DENSE_POOLING_SPARSITY = 64


def users_by_catalog_product(indices: tf.Tensor, weights: tf.Tensor, num_users: tf.Tensor, table: tf.Tensor,
                             batch_size: Optional[int] = None) -> tf.Tensor:
    """A [users, catalog] matrix of weights times a [catalog, dim] table: each user's weighted
    sum of the rows of the movies they rated.

    A product rather than a gather of rows: its gradient is a dense [catalog, dim] one,
    which every worker of a multi-worker strategy sums alike (gathered rows' gradients differ
    in size per worker and cannot be all-gathered), and one matmul is far cheaper than a
    gathered row per (user, rated movie). The matrix is dense (an MKL matmul) up to
    ``DENSE_POOLING_CELLS`` cells, sparse past it or where it holds under one pair in
    ``DENSE_POOLING_SPARSITY`` cells.

    Args:
      indices: [pairs, 2] int64 (user, catalog position) of each nonzero, each pair once.
      weights: [pairs] float32 their weights.
      num_users: the matrix's rows (a scalar).
      table: [catalog, dim].
      batch_size: the most users, where it is fixed (training batches of one size): the
        choice is then made once, when tracing, from the cells alone.

    Returns:
      [users, dim].
    """
    catalog = tf.shape(table, out_type=tf.int64)[0]
    shape = tf.stack([tf.cast(num_users, tf.int64), catalog])

    def dense():
        # The pairs are unique (a RaggedTable's rows hold each movie once), so writing them
        # (SparseToDense) equals summing them (scatter_nd), and costs a fifth as much.
        return tf.matmul(tf.sparse.to_dense(tf.SparseTensor(indices, weights, shape), validate_indices=False), table)

    def sparse():
        return tf.sparse.sparse_dense_matmul(tf.SparseTensor(indices, weights, shape), table)

    if batch_size is not None and table.shape[0] is not None:
        return dense() if batch_size * table.shape[0] <= DENSE_POOLING_CELLS else sparse()
    cells = shape[0] * catalog
    dense_enough = tf.size(weights, tf.int64) * DENSE_POOLING_SPARSITY >= cells
    return tf.cond((cells <= DENSE_POOLING_CELLS) & dense_enough, dense, sparse)


class HistorySplit(NamedTuple):
    """A batch of users' histories, each split at random into input and held-out movies.

    Attributes:
      rowids: [pairs] int64 batch position of each (user, rated movie) pair.
      movies: [pairs] int64 catalog position of the pair's movie.
      kept: [pairs] float32: 1 where the movie is input (pooled into the query), 0 where it
        is held out (a target the query must find).
      num_users: the batch's users.
    """

    rowids: tf.Tensor
    movies: tf.Tensor
    kept: tf.Tensor
    num_users: tf.Tensor


class RatedMoviesPooling(keras.layers.Layer):
    """The mean embedding of the movies a user rated in training (the SVD++ / YouTube-DNN idea).

    The history is baked in as a ragged table (row = user vocabulary index, row 0 for unknown
    users, empty). In training the example's own movie is left out of its history, or the
    model would learn to find movies by looking them up in the history.

    With ``rating_weighted``, a second mean follows the first: of a second embedding of each
    rated movie, weighted by how far its rating lies from the history's mean rating (the
    explicit half of Koren's neighbourhood model): it tells the model what the user liked
    and disliked, not only what they watched.

    Args:
      history: user rows -> catalog positions (data.history.training_history), with the
        ratings as weights when ``rating_weighted``.
      catalog_ids: the catalog, in position order.
      embedding_dim: width of each mean.
      rating_weighted: add the rating-weighted mean.
      sample: in training, pool at most this many of each user's rated movies, drawn anew
        every step (None: all of them); serving always pools the whole history.

    Call args:
      user_rows: [batch] user vocabulary rows (0: unknown user).
      target_ids: in training, [batch] movie ids (or their catalog vocabulary rows, position
        + 1, as IdEmbedding.index gives them) to leave out of each row's history.
      split: in training on whole users, their histories split by ``split``: only the
        input part of each is pooled (``user_rows`` is then ignored).

    Returns:
      [batch, embedding_dim], or [batch, 2 * embedding_dim] when ``rating_weighted``.
    """

    def __init__(self, history: RaggedTable, catalog_ids: Sequence[str], embedding_dim: int,
                 rating_weighted: bool = False, sample: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.sample = sample
        self.noise = training_noise()
        if rating_weighted and history.weights is None:
            raise ValueError("a rating-weighted history needs the ratings (training_history(with_ratings=True))")
        self.num_movies = len(catalog_ids)
        # The centre stays that of the history trained with, when a larger one replaces it.
        self.centre = float(history.weights.mean()) if rating_weighted and len(history.weights) else 0.0
        # Variables of open shape, so the history can be swapped for a larger one after
        # training (and is saved with the weights, not as a graph constant). Their first
        # values are placeholders of one element: a multi-worker strategy broadcasts
        # initial values, and broadcasting an empty one crashes the process. Parameter
        # servers cannot hand variables of open shape to their workers' steps (the process
        # aborts): there they take the history's own shape, and only a history of the same
        # sizes can replace it.
        open_shape = not variables_are_remote()
        pairs = len(history.values)

        def history_variable(dtype, size, name):
            if open_shape:
                return tf.Variable(np.zeros(1, dtype), shape=[None], trainable=False, name=name)
            return tf.Variable(np.zeros(size, dtype), trainable=False, name=name)

        self.values = history_variable(np.int32, pairs, "history_values")
        self.row_splits = history_variable(np.int64, len(history.row_splits), "history_row_splits")
        self.pair_keys = history_variable(np.int64, pairs, "history_pair_keys")
        self.centred_ratings = history_variable(np.float32, pairs, "history_centred_ratings") if rating_weighted \
            else None
        self.set_history(history)
        self.catalog_lookup = keras.layers.StringLookup(vocabulary=list(catalog_ids), mask_token=None)
        self.embedding = keras.layers.Embedding(len(catalog_ids), embedding_dim)
        self.rating_embedding = keras.layers.Embedding(len(catalog_ids), embedding_dim) if rating_weighted else None

    def set_history(self, history: RaggedTable):
        """Replaces the pooled history (e.g. the fit part's by the whole training part's)."""
        rows = np.repeat(np.arange(len(history.row_splits) - 1), np.diff(history.row_splits))
        # (row, movie) pairs as row * catalog + movie: sorted, so membership is a binary search.
        self.values.assign(history.values)
        self.row_splits.assign(history.row_splits)
        self.pair_keys.assign(rows * self.num_movies + history.values.astype(np.int64))
        if self.centred_ratings is not None:
            if history.weights is None:
                raise ValueError("this pooling is rating-weighted: the new history needs its ratings")
            self.centred_ratings.assign(history.weights - self.centre)

    def forget_history(self):
        """Drops the baked-in history (one empty row is left): for an export whose requests
        carry each user's history, so that no table of users is saved with it."""
        weights = None if self.centred_ratings is None else np.zeros(0, np.float32)
        self.set_history(RaggedTable(np.zeros(0, np.int64), np.zeros(0, np.int32), 1, weights))

    def build(self, input_shape):
        self.embedding.build(None)
        if self.rating_embedding is not None:
            self.rating_embedding.build(None)
        super().build(input_shape)

    def _target_rows(self, target_ids: tf.Tensor) -> tf.Tensor:
        """Catalog positions of the targets (-1: not in the catalog)."""
        rows = target_ids if target_ids.dtype.is_integer else self.catalog_lookup(target_ids)
        return tf.cast(rows, tf.int64) - 1

    def _sampled(self, user_rows: tf.Tensor, target_ids: tf.Tensor) -> tf.Tensor:
        """Training: the mean over at most ``sample`` of each user's rated movies, drawn anew
        every step (all of them for shorter histories), the example's own movie left out.

        The cost grows with users x ``sample``, not with the users' whole histories (ML-25M
        users rate up to thousands of movies); the mean of a random subset estimates the
        whole history's mean, which serving pools.
        """
        unique_rows, back = tf.unique(user_rows)
        starts = tf.gather(self.row_splits, unique_rows)
        lengths = tf.gather(self.row_splits, unique_rows + 1) - starts
        slots = tf.range(self.sample, dtype=tf.int64)[tf.newaxis, :]
        short = lengths[:, tf.newaxis] <= self.sample
        drawn = tf.cast(self.noise.uniform(tf.shape(slots * lengths[:, tf.newaxis])) *
                        tf.cast(lengths[:, tf.newaxis], tf.float32), tf.int64)
        offsets = tf.where(short, slots, tf.minimum(drawn, lengths[:, tf.newaxis] - 1))
        present = tf.cast(~short | (slots < lengths[:, tf.newaxis]), tf.float32)  # [users, sample]
        at = tf.minimum(starts[:, tf.newaxis] + offsets, tf.maximum(tf.size(self.values, tf.int64) - 1, 0))
        movies = tf.gather(tf.concat([self.values, [0]], axis=0), at)  # [users, sample]
        weights = [present]
        tables = [self.embedding.embeddings]
        if self.centred_ratings is not None:
            weights.append(present * tf.gather(tf.concat([self.centred_ratings, [0.0]], axis=0), at))
            tables.append(self.rating_embedding.embeddings)
        # Each example: its user's sums, less its own movie as often as the draw holds it.
        target = self._target_rows(target_ids)
        own = tf.cast(tf.equal(tf.cast(tf.gather(movies, back), tf.int64), target[:, tf.newaxis]), tf.float32)
        safe_target = tf.maximum(target, 0)
        sums = []
        for weight, table in zip(weights, tables):
            per_user = tf.einsum("us,usd->ud", weight, tf.gather(table, movies))
            repeats = tf.reduce_sum(tf.gather(weight, back) * own, axis=1, keepdims=True)
            sums.append(tf.gather(per_user, back) - repeats * tf.gather(table, safe_target))
        count = tf.gather(tf.reduce_sum(present, axis=1), back) - tf.reduce_sum(tf.gather(present, back) * own, axis=1)
        return tf.concat(sums, axis=1) / tf.maximum(count, 1.0)[:, tf.newaxis]

    def _rows(self, user_rows: tf.Tensor) -> tf.Tensor:
        """User rows clipped to the table (rows past it are users it does not hold)."""
        return tf.clip_by_value(user_rows, 0, tf.shape(self.row_splits, tf.int64)[0] - 2)

    def _table(self, values: tf.Variable) -> tf.RaggedTensor:
        """``values`` (the movies, or their centred ratings) as a ragged [user rows, (rated)] table."""
        return tf.RaggedTensor.from_row_splits(values, self.row_splits, validate=False)

    def split(self, user_rows: tf.Tensor, drop_rate: float) -> HistorySplit:
        """Each user's history split at random: a share ``drop_rate`` held out, the rest input.

        The denoising of Mult-DAE (Liang et al. 2018): the query learns to find a user's
        movies from a random part of the others, as serving finds unseen movies from the seen.
        """
        user_rows = self._rows(user_rows)
        rated = tf.gather(self._table(self.values), user_rows)
        movies = tf.cast(rated.values, tf.int64)
        kept = tf.cast(self.noise.uniform(tf.shape(movies)) >= drop_rate, tf.float32)
        return HistorySplit(rated.value_rowids(), movies, kept, tf.shape(user_rows, tf.int64)[0])

    def _pool_split(self, split: HistorySplit) -> tf.Tensor:
        """[users, embedding_dim]: the mean embedding of each user's input movies."""
        if self.centred_ratings is not None:
            raise ValueError("a split history pools the plain mean; this pooling is rating-weighted")
        sums = users_by_catalog_product(tf.stack([split.rowids, split.movies], axis=1), split.kept,
                                        split.num_users, self.embedding.embeddings)
        count = tf.math.unsorted_segment_sum(split.kept, split.rowids, split.num_users)
        return sums / tf.maximum(count, 1.0)[:, tf.newaxis]

    def pool_given(self, movies: tf.RaggedTensor, ratings: Optional[tf.RaggedTensor] = None) -> tf.Tensor:
        """What ``call`` pools for a user, from a history given instead of the baked-in one
        (a request that carries the user's rated movies).

        Args:
          movies: ragged [users, (rated)] catalog positions.
          ratings: ragged [users, (rated)] their ratings; needed when ``rating_weighted`` (NaN:
            not known, weighted as the history's mean rating, i.e. not at all).

        Returns:
          [users, embedding_dim], or [users, 2 * embedding_dim] when ``rating_weighted``.
        """
        if not self.built:
            self.build(None)
        tables = [(self.embedding.embeddings, None)]
        if self.centred_ratings is not None:
            if ratings is None:
                raise ValueError("this pooling is rating-weighted: the given history needs its ratings")
            rated = tf.cast(ratings.values, tf.float32)
            tables.append((self.rating_embedding.embeddings, tf.where(tf.math.is_nan(rated), 0.0, rated - self.centre)))
        sums, count = self._given_sums(movies, tables)
        return tf.concat(sums, axis=1) / tf.maximum(count, 1.0)[:, tf.newaxis]

    @staticmethod
    def _given_sums(movies: tf.RaggedTensor, tables: list) -> tuple[list, tf.Tensor]:
        """Each user's (weighted) sums of each table's rows over ragged [users, (rated)] catalog
        positions, and their counts [users].

        ``tables``: (a [catalog, dim] table, [pairs] weights of ``movies.values`` or None).
        """
        positions, rowids = tf.cast(movies.values, tf.int64), movies.value_rowids()
        users = tf.cast(movies.nrows(), tf.int32)
        sums = []
        for table, weights in tables:
            rows = tf.gather(table, positions)
            sums.append(tf.math.unsorted_segment_sum(rows if weights is None else weights[:, tf.newaxis] * rows,
                                                     rowids, users))
        return sums, tf.cast(movies.row_lengths(), tf.float32)

    def _baked_sums(self, user_rows: tf.Tensor, tables: list) -> tuple[list, tf.Tensor]:
        """Each user's (weighted) sums of each table's rows over their baked-in history, and
        their counts [users]; each distinct user of the batch is pooled once (a batch repeats
        its users many times).

        ``tables``: (a [catalog, dim] table, a history-aligned weight variable or None).
        """
        unique_rows, back = tf.unique(user_rows)
        rated = tf.gather(self._table(self.values), unique_rows)
        segments, num_users = rated.value_rowids(), tf.size(unique_rows)
        indices = tf.stack([segments, tf.cast(rated.values, tf.int64)], axis=1)
        sums = []
        for table, weights in tables:
            weight = tf.ones_like(segments, tf.float32) if weights is None else \
                tf.gather(self._table(weights), unique_rows).values
            pooled = users_by_catalog_product(indices, weight, num_users, table, batch_size=user_rows.shape[0])
            sums.append(tf.gather(pooled, back))
        return sums, tf.cast(tf.gather(rated.row_lengths(), back), tf.float32)

    def pool_table(self, table: tf.Tensor, user_rows: Optional[tf.Tensor] = None,
                   given: Optional[tf.RaggedTensor] = None) -> tf.Tensor:
        """Each user's sum of another [catalog, dim] table's rows over their rated movies,
        divided by the square root of their count (Mult-VAE's normalised history).

        For a fixed item table read the way the embeddings are: over the baked-in history of
        ``user_rows``, or over the ``given`` ragged [users, (rated)] catalog positions.

        Returns:
          [users, dim].
        """
        sums, count = self._given_sums(given, [(table, None)]) if given is not None else \
            self._baked_sums(self._rows(user_rows), [(table, None)])
        return sums[0] / tf.sqrt(tf.maximum(count, 1.0))[:, tf.newaxis]

    def call(self, user_rows: tf.Tensor, target_ids: Optional[tf.Tensor] = None,
             split: Optional[HistorySplit] = None) -> tf.Tensor:
        if split is not None:  # the input part of each user's split history (``split``)
            return self._pool_split(split)
        user_rows = self._rows(user_rows)
        if self.sample and target_ids is not None:
            return self._sampled(user_rows, target_ids)
        tables = [(self.embedding.embeddings, None)]
        if self.centred_ratings is not None:
            tables.append((self.rating_embedding.embeddings, self.centred_ratings))
        sums, count = self._baked_sums(user_rows, tables)
        if target_ids is not None:
            target = self._target_rows(target_ids)
            key = user_rows * self.num_movies + target
            keys = tf.concat([self.pair_keys, tf.constant([-1], tf.int64)], axis=0)  # -1 matches no pair
            at = tf.minimum(tf.searchsorted(self.pair_keys, key, out_type=tf.int64), tf.size(self.pair_keys, tf.int64))
            in_history = tf.cast(tf.equal(tf.gather(keys, at), key) & (target >= 0), tf.float32)
            target = tf.maximum(target, 0)
            sums[0] -= in_history[:, tf.newaxis] * tf.gather(self.embedding.embeddings, target)
            if self.centred_ratings is not None:
                weight = in_history * tf.gather(tf.concat([self.centred_ratings, [0.0]], axis=0), at)
                sums[1] -= weight[:, tf.newaxis] * tf.gather(self.rating_embedding.embeddings, target)
            count -= in_history
        return tf.concat(sums, axis=1) / tf.maximum(tf.expand_dims(count, 1), 1.0)
