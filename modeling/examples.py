"""Training examples as integer rows, their features gathered per batch from small tables.

A rating's features are its user's and its movie's: joining them onto every row costs a
string (or a ragged token list) per rating per feature, gigabytes at 25M ratings. Here the
examples hold only integer rows (``user_id``: the user-vocabulary row, 0 for an unknown
user; ``movie_id``: the catalog row, position + 1, as ``IdEmbedding.index`` gives them) and
labels; every batch gathers its features from one table per user row and one per catalog
movie, in the form the model reads (looked up once, when the tables are built).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

Columns = Dict[str, np.ndarray]


class ExampleTables:
    """Per-user and per-movie model inputs, gathered by the rows of each batch.

    Args:
      index: feature columns (string tensors) -> the model's input form for the features
        it reads (its ``index_features``); features it does not read are left out.
      user_columns: feature name -> one value per user-vocabulary row (row 0: unknown user).
      movie_columns: feature name -> one value per catalog movie, in catalog order.
    """

    def __init__(self, index: Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]], user_columns: Columns,
                 movie_columns: Columns):
        def tables(columns: Columns, id_name: str) -> Dict[str, tf.Tensor]:
            features = {name: tf.constant(values) for name, values in columns.items() if name != id_name}
            return index(features) if features else {}

        self.user = tables(user_columns, "user_id")
        self.movie = tables(movie_columns, "movie_id")

    def expand(self, rows: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """A batch of example rows -> the model's features ([batch] each, ragged for token lists)."""
        features = dict(rows)
        movie_positions = tf.maximum(rows["movie_id"] - 1, 0)
        for name, table in self.user.items():
            features[name] = tf.gather(table, rows["user_id"])
        for name, table in self.movie.items():
            features[name] = tf.gather(table, movie_positions)
        return features


def example_batches(rows: Columns, batch_size: int, shuffle_seed: Optional[int] = None,
                    drop_remainder: bool = False,
                    expand: Optional[Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]] = None
                    ) -> tf.data.Dataset:
    """A batched ``tf.data`` pipeline over in-memory columns, without a copy per epoch.

    Args:
      rows: column name -> array (or tensor), all of the same length.
      batch_size: examples per batch.
      shuffle_seed: a new permutation every epoch from this seed; None keeps the order.
      drop_remainder: when shuffling, drop the last, smaller batch (one batch shape means one
        trace of the train step; every epoch drops other rows).
      expand: batch of rows -> features (ExampleTables.expand), run in the pipeline.

    Returns:
      A dataset of feature dicts.
    """
    tensors = {name: values if isinstance(values, (tf.Tensor, tf.RaggedTensor)) else tf.constant(values)
               for name, values in rows.items()}
    size = int(next(iter(tensors.values())).shape[0])
    if shuffle_seed is not None:
        # One permutation per epoch, cut into batches: shuffling row numbers one element at
        # a time through tf.data costs seconds per million rows, and memory per element.
        full = size // batch_size if drop_remainder and size >= batch_size else -(-size // batch_size)

        def epoch(seed):
            order = tf.random.experimental.stateless_shuffle(tf.range(size, dtype=tf.int64), seed=[seed, 0])
            if full * batch_size <= size:
                return tf.data.Dataset.from_tensor_slices(tf.reshape(order[:full * batch_size], [full, batch_size]))
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        # A new seed each time the dataset is iterated again (every epoch), from one seed.
        seeds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).take(1)
        batches = seeds.flat_map(epoch).apply(tf.data.experimental.assert_cardinality(full))
    else:
        batches = tf.data.Dataset.range(-(-size // batch_size)).map(
            lambda b: tf.range(b * batch_size, tf.minimum((b + 1) * batch_size, size)))

    def gather(index):
        batch = {name: tf.gather(t, index) for name, t in tensors.items()}
        return expand(batch) if expand else batch

    batches = batches.map(gather, num_parallel_calls=2, deterministic=True)
    # Fixed parallelism, no autotuning: tearing down an autotuned iterator stalled ``fit``
    # by up to ten seconds at its end on a 2-core machine.
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(2).with_options(options)
