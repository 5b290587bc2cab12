"""Keras layers that turn the features of data/ into vectors; both stages' models use them."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from twostage.data.history import RaggedTable
from twostage.data.tf_setup import require_legacy_keras

keras = require_legacy_keras()


class IdEmbedding(keras.layers.Layer):
    """A string id -> embedding lookup with a vocabulary fixed at construction.

    Ids outside the vocabulary share one out-of-vocabulary row (index 0).

    Args:
      vocabulary: the known ids.
      embedding_dim: embedding width.
    """

    def __init__(self, vocabulary: Sequence[str], embedding_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.lookup = keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None)
        self.embedding = keras.layers.Embedding(len(vocabulary) + 1, embedding_dim)

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        """Returns [..., embedding_dim] embeddings of string ids."""
        return self.embedding(self.lookup(ids))


class PooledTokens(keras.layers.Layer):
    """Mean of the embeddings of a string's tokens (genres split on "|", title words on spaces).

    An empty string pools to zeros rather than NaN.

    Args:
      vocabulary: known tokens.
      embedding_dim: width.
      separator: token separator.
    """

    def __init__(self, vocabulary: Sequence[str], embedding_dim: int, separator: str, **kwargs):
        super().__init__(**kwargs)
        self.separator = separator
        if separator == " ":
            # Titles: the text-tower of the seed systems, as TextVectorization -> pooled embeddings.
            self.tokens = keras.layers.TextVectorization(standardize=None, split="whitespace",
                                                         vocabulary=list(vocabulary), ragged=True)
        else:
            self.tokens = None
            self.lookup = keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None)
        self.embedding = keras.layers.Embedding(len(vocabulary) + 2, embedding_dim)

    def call(self, text: tf.Tensor) -> tf.Tensor:
        """[batch] strings -> [batch, embedding_dim]."""
        if self.tokens is not None:
            ids = self.tokens(text)
        else:
            tokens = tf.strings.split(text, sep=self.separator)
            # split("") is [""], not []: a movie without genres must pool to zeros.
            ids = self.lookup(tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, "")))
        vectors = self.embedding(ids)  # ragged [batch, (tokens), dim]
        count = tf.cast(tf.expand_dims(ids.row_lengths(), 1), vectors.dtype)
        return tf.reduce_sum(vectors, axis=1) / tf.maximum(count, 1.0)


class RatedMoviesPooling(keras.layers.Layer):
    """The mean embedding of the movies a user rated in training (the SVD++ / YouTube-DNN idea).

    The history is baked in as a ragged table (row = user vocabulary index, row 0 for unknown
    users, empty). In training the example's own movie is left out of its history, or the
    model would learn to find movies by looking them up in the history.

    Args:
      history: user rows -> catalog positions (data.history.training_history).
      catalog_ids: the catalog, in position order.
      embedding_dim: width.
    """

    def __init__(self, history: RaggedTable, catalog_ids: Sequence[str], embedding_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_movies = len(catalog_ids)
        # Variables of open shape, so the history can be swapped for a larger one after
        # training (and is saved with the weights, not as a graph constant).
        self.values = tf.Variable(np.zeros(0, np.int32), shape=[None], trainable=False, name="history_values")
        self.row_splits = tf.Variable(np.zeros(1, np.int64), shape=[None], trainable=False, name="history_row_splits")
        self.pair_keys = tf.Variable(np.zeros(0, np.int64), shape=[None], trainable=False, name="history_pair_keys")
        self.set_history(history)
        self.catalog_lookup = keras.layers.StringLookup(vocabulary=list(catalog_ids), mask_token=None)
        self.embedding = keras.layers.Embedding(len(catalog_ids), embedding_dim)

    def set_history(self, history: RaggedTable):
        """Replaces the pooled history (e.g. the fit part's by the whole training part's)."""
        rows = np.repeat(np.arange(len(history.row_splits) - 1), np.diff(history.row_splits))
        # (row, movie) pairs as row * catalog + movie: sorted, so membership is a binary search.
        self.values.assign(history.values)
        self.row_splits.assign(history.row_splits)
        self.pair_keys.assign(rows * self.num_movies + history.values.astype(np.int64))

    def build(self, input_shape):
        self.embedding.build(None)
        super().build(input_shape)

    def call(self, user_rows: tf.Tensor, target_ids: Optional[tf.Tensor] = None) -> tf.Tensor:
        """[batch] user rows (and, in training, [batch] target movie ids) -> [batch, dim]."""
        user_rows = tf.clip_by_value(user_rows, 0, tf.shape(self.row_splits, tf.int64)[0] - 2)
        # Pool each distinct user of the batch once (a batch repeats its users many times).
        unique_rows, back = tf.unique(user_rows)
        table = tf.RaggedTensor.from_row_splits(self.values, self.row_splits, validate=False)
        rated = tf.gather(table, unique_rows)
        vectors = self.embedding.embeddings
        sums = tf.math.unsorted_segment_sum(tf.gather(vectors, rated.values), rated.value_rowids(),
                                            tf.size(unique_rows))
        sums = tf.gather(sums, back)
        count = tf.cast(tf.gather(rated.row_lengths(), back), tf.float32)
        if target_ids is not None:
            target = self.catalog_lookup(target_ids) - 1  # -1: not in the catalog
            key = user_rows * self.num_movies + target
            keys = tf.concat([self.pair_keys, tf.constant([-1], tf.int64)], axis=0)  # -1 matches no pair
            at = tf.minimum(tf.searchsorted(self.pair_keys, key, out_type=tf.int64), tf.size(self.pair_keys, tf.int64))
            in_history = tf.cast(tf.equal(tf.gather(keys, at), key) & (target >= 0), tf.float32)
            sums -= tf.expand_dims(in_history, 1) * tf.gather(vectors, tf.maximum(target, 0))
            count -= in_history
        return sums / tf.maximum(tf.expand_dims(count, 1), 1.0)
