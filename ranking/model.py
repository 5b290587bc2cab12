"""The ranking model: predicts the rating a user would give a movie."""

from __future__ import annotations

from typing import Dict, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from twostage.data.tf_setup import require_legacy_keras

keras = require_legacy_keras()


class RatingModel(tfrs.models.Model):
    """User and movie embeddings concatenated -> Dense 256 -> Dense 64 -> Dense 1.

    Trained with ``tfrs.tasks.Ranking``: mean squared error loss, RMSE metric.

    Args:
      user_ids: user vocabulary (unknown users share one embedding).
      movie_ids: movie vocabulary (the catalog).
      embedding_dim: width of each embedding.
      hidden_units: the relu layers before the output unit.

    Call args:
      features: dict with "user_id" and "movie_id" string tensors of one shape [batch].

    Returns:
      [batch, 1] predicted ratings.
    """

    def __init__(self, user_ids: Sequence[str], movie_ids: Sequence[str], embedding_dim: int = 32,
                 hidden_units: Sequence[int] = (256, 64), **kwargs):
        super().__init__(**kwargs)
        self.user_embedding = keras.Sequential([
            keras.layers.StringLookup(vocabulary=list(user_ids), mask_token=None),
            keras.layers.Embedding(len(user_ids) + 1, embedding_dim),
        ], name="user_embedding")
        self.movie_embedding = keras.Sequential([
            keras.layers.StringLookup(vocabulary=list(movie_ids), mask_token=None),
            keras.layers.Embedding(len(movie_ids) + 1, embedding_dim),
        ], name="movie_embedding")
        self.rating_head = keras.Sequential(
            [keras.layers.Dense(units, activation="relu") for units in hidden_units] + [keras.layers.Dense(1)],
            name="rating_head")
        self.task = tfrs.tasks.Ranking(loss=keras.losses.MeanSquaredError(),
                                       metrics=[keras.metrics.RootMeanSquaredError()])

    def call(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        joined = tf.concat([self.user_embedding(features["user_id"]),
                            self.movie_embedding(features["movie_id"])], axis=1)
        return self.rating_head(joined)

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.task(labels=features["rating"], predictions=self(features))
