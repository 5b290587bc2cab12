"""The query tower behind a fixed input signature, for serving (and exporting again)."""

from __future__ import annotations

import tensorflow as tf

from twostage.data.features import USER_FEATURES
from twostage.retrieval.model import QueryTower


class QueryEncoder(tf.Module):
    """The query tower behind a fixed input signature (``encode``), for serving.

    A SavedModel that holds it can be loaded and exported again, with another index, from
    the SavedModel alone: the restored ``encode`` is a plain function of named tensors.

    Args:
      tower: the trained query tower (its history input pooling the whole training part).
    """

    def __init__(self, tower: QueryTower):
        super().__init__(name="query_encoder")
        self.tower = tower
        self.feature_names = tuple(tower.feature_names)

    # Traced without AutoGraph, as the serving signatures that call it (serving.module).
    @tf.function(autograph=False, input_signature=[{name: tf.TensorSpec([None], tf.string, name=name)
                                   for name in ("user_id",) + USER_FEATURES}])
    def encode(self, inputs):
        """Query embeddings [batch, dim] of users (every user feature given, "" when unknown)."""
        return self.tower({name: inputs[name] for name in ("user_id",) + self.feature_names})

    @tf.function(autograph=False, input_signature=[
        {name: tf.TensorSpec([None], tf.string, name=name) for name in USER_FEATURES},
        tf.RaggedTensorSpec([None, None], tf.int64, ragged_rank=1)])
    def encode_history(self, features, movies):
        """Query embeddings [batch, dim] of users given by their features ("" when unknown) and
        their rated movies (ragged [batch, (rated)] catalog positions), not by their id."""
        user_id = tf.fill(tf.shape(movies.row_lengths()), "")
        return self.tower({"user_id": user_id, **{name: features[name] for name in self.feature_names}},
                          given_history=movies)
