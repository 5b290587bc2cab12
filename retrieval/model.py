"""The two-tower retrieval model: a query tower for users, a candidate tower for movies."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

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


class QueryTower(keras.Model):
    """Embeds a query (a user).

    Args:
      user_ids: the user vocabulary (training users).
      embedding_dim: output width.

    Call args:
      features: a dict with "user_id" (string tensor [batch]).

    Returns:
      [batch, embedding_dim] query embeddings.
    """

    def __init__(self, user_ids: Sequence[str], embedding_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.user = IdEmbedding(user_ids, embedding_dim, name="user_id")

    def call(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        return self.user(features["user_id"])


class CandidateTower(keras.Model):
    """Embeds a candidate (a movie).

    Args:
      movie_ids: the movie vocabulary (the whole catalog).
      embedding_dim: output width.

    Call args:
      features: a dict with "movie_id" (string tensor [batch]).

    Returns:
      [batch, embedding_dim] candidate embeddings.
    """

    def __init__(self, movie_ids: Sequence[str], embedding_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.movie = IdEmbedding(movie_ids, embedding_dim, name="movie_id")

    def call(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        return self.movie(features["movie_id"])


class TwoTowerModel(tfrs.Model):
    """TFRS retrieval model trained with an in-batch softmax.

    Top-K metrics are deliberately not computed while training (they score the whole
    catalog every step, which is what makes the TFRS tutorial slow); evaluation does that
    once, with matrix ops, after training.

    Args:
      query_tower: users -> embeddings.
      candidate_tower: movies -> embeddings.
      temperature: softmax temperature (None: 1).
    """

    def __init__(self, query_tower: QueryTower, candidate_tower: CandidateTower,
                 temperature: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.task = tfrs.tasks.Retrieval(temperature=temperature)

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query = self.query_tower(features)
        candidate = self.candidate_tower(features)
        return self.task(query, candidate, compute_metrics=False)
