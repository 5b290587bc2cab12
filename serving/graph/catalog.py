"""The catalog inside the serving graph: movie id -> position, the cold-start scores, and the
ids and titles of positions; shared by both export kinds."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def constant_variable(value, name: str) -> tf.Variable:
    """A variable the graph only reads (saved with the export, never trained)."""
    return tf.Variable(value, trainable=False, name=name)


def movie_row_table(movie_ids: np.ndarray) -> tf.lookup.StaticHashTable:
    """Movie id -> catalog position (-1: not in the catalog)."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(movie_ids.astype(object)),
                                            tf.range(len(movie_ids), dtype=tf.int32)), default_value=-1)


def cold_start_tables(popularity: np.ndarray, max_depth: int) -> tuple:
    """Cold-start scores: the whole catalog's log-popularity for the exact index, and the most
    popular movies in order (positions, scores) for an index that returns neighbours (no sort
    per request)."""
    log_popularity = np.log1p(popularity).astype(np.float32)
    order = np.argsort(-popularity, kind="stable")[:max_depth]
    return (constant_variable(log_popularity, "log_popularity"),
            constant_variable(order.astype(np.int32), "popular_positions"),
            constant_variable(log_popularity[order], "popular_scores"))


def movies_at(movie_ids: tf.Variable, titles: tf.Variable, positions, scores) -> dict:
    """movie_id and title of positions; "" where the score is -inf (nothing left to return)."""
    missing = tf.math.is_inf(scores)
    return {"movie_id": tf.where(missing, "", tf.gather(movie_ids, positions)),
            "title": tf.where(missing, "", tf.gather(titles, positions))}
