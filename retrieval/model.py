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


LOSSES = ("full-softmax", "in-batch")


class TwoTowerModel(tfrs.Model):
    """TFRS retrieval model with a softmax over negatives.

    Two kinds of negatives:

    * ``in-batch``: the other positives of the batch (``tfrs.tasks.Retrieval``), with the
      logQ correction (popular movies are over-sampled as negatives, so their logits are
      lowered by log of their sampling probability) and accidental hits removed (a batch
      positive equal to the query's own positive is not a negative).
    * ``full-softmax``: every catalog movie, exact when the catalog is small enough to
      embed once per step.

    Top-K metrics are deliberately not computed while training (they score the whole
    catalog every step, which is what makes the TFRS tutorial slow); evaluation does that
    once, with matrix ops, after training.

    Args:
      query_tower: users -> embeddings.
      candidate_tower: movies -> embeddings.
      loss: "full-softmax" or "in-batch".
      catalog_ids: all catalog movie ids (full-softmax: the classes, in order).
      temperature: logits are divided by it (None: 1).
      l2: penalty on the squared norms of the batch's query and positive embeddings
        (only rows in use: a whole-matrix penalty would shrink rarely rated movies every step).
    """

    def __init__(self, query_tower: QueryTower, candidate_tower: CandidateTower, loss: str = "full-softmax",
                 catalog_ids: Optional[Sequence[str]] = None, temperature: Optional[float] = None,
                 l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"unknown retrieval loss {loss!r}; use one of {LOSSES}")
        if loss == "full-softmax" and catalog_ids is None:
            raise ValueError("the full-softmax loss needs the catalog ids")
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.loss_kind = loss
        self.temperature = temperature
        self.l2 = l2
        self.task = tfrs.tasks.Retrieval(temperature=temperature, remove_accidental_hits=True)
        if catalog_ids is not None:
            self.catalog_ids = tf.constant(list(catalog_ids))
            self.catalog_lookup = keras.layers.StringLookup(vocabulary=list(catalog_ids), mask_token=None,
                                                            num_oov_indices=0)

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query = self.query_tower(features)
        if self.loss_kind == "full-softmax":
            catalog = self.candidate_tower({"movie_id": self.catalog_ids})
            logits = tf.matmul(query, catalog, transpose_b=True)
            if self.temperature:
                logits = logits / self.temperature
            labels = self.catalog_lookup(features["movie_id"])
            positive = tf.gather(catalog, labels)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        else:
            positive = self.candidate_tower(features)
            loss = self.task(query, positive, candidate_sampling_probability=features.get("sampling_probability"),
                             candidate_ids=features["movie_id"], compute_metrics=False)
        if self.l2:
            loss += self.l2 * (tf.reduce_sum(tf.square(query)) + tf.reduce_sum(tf.square(positive)))
        return loss
