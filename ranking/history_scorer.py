"""The rating model for users given by their features and rated movies, not by a user row.

An export whose requests carry the user's history keeps no per-user table: the share of the
first dense layer that ``PrecomputedRatingScorer`` looks up per user is computed per
request here, from the request's user features and rated movies; the per-movie share is
still computed once, at export.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

from twostage.data.features import USER_FEATURES
from twostage.ranking.model import RatingTaskModel, squashed_rating
from twostage.ranking.scorers import _movie_inputs, _rating_range, _split_members, _SplitRatingHead

# What a request gives of each user: features ("" unknown), movies (catalog positions) and ratings.
HISTORY_RATE_SIGNATURE = [
    {name: tf.TensorSpec([None], tf.string, name=name) for name in USER_FEATURES},
    tf.RaggedTensorSpec([None, None], tf.int64, ragged_rank=1),
    tf.RaggedTensorSpec([None, None], tf.float32, ragged_rank=1),
    tf.TensorSpec([None, None], tf.int32, name="positions")]


class HistoryRatingScorer(tf.Module):
    """Ratings of candidates for users who are their features and history alone.

    Args:
      model: a trained RatingModel without user ids (``use_user_id`` False), or the mean of
        several.
      movie_columns: the catalog's feature columns, position order.
    """

    def __init__(self, model: RatingTaskModel, movie_columns: Dict[str, np.ndarray]):
        super().__init__(name="history_ratings")
        members = _split_members(model)
        if members is None or any(member.use_user_id or member.rated_movies is None for member in members):
            raise ValueError("rating users by their history needs the default rating model with a history and "
                             "without user ids (RankingConfig use_user_id=False)")
        self.members = members
        nobody = {"user_id": np.asarray([""], object)}
        nobody.update({name: np.asarray([""], object) for name in members[0].user_feature_names})
        movie_inputs = _movie_inputs(movie_columns)
        self.heads = [_SplitRatingHead(member, nobody, movie_inputs) for member in members]
        self.user_kernels = [tf.Variable(member.rating_head.layers[0].kernel.numpy()[:head.user_width],
                                         trainable=False, name="user_kernel")
                             for member, head in zip(members, self.heads)]
        self.first_biases = [tf.Variable(member.rating_head.layers[0].bias.numpy(), trainable=False, name="first_bias")
                             for member in members]
        self.scale = self.heads[0].scale
        self.constant = tf.Variable(np.float32([head.output_bias + head.offset for head in self.heads]),
                                    trainable=False, name="output_constant")
        self.movie_bias = tf.Variable(np.stack([head.movie_bias for head in self.heads], axis=1).astype(np.float32),
                                      trainable=False, name="movie_bias")
        self.unknown_movie = len(movie_inputs["movie_id"]) - 1
        self.rating_range = _rating_range(model)

    @tf.function(autograph=False, input_signature=HISTORY_RATE_SIGNATURE)
    def rate_lists(self, features, movies, ratings, positions):
        """[users, n] predicted ratings of [users, n] catalog positions (-1: not in the catalog)
        for users given by ``features`` and their rated ``movies`` with ``ratings``."""
        movie_rows = tf.where(positions >= 0, positions, self.unknown_movie)
        raws = []
        for member, head, kernel, bias in zip(self.members, self.heads, self.user_kernels, self.first_biases):
            user_hidden = tf.matmul(member.user_side(features, given_history=(movies, ratings)), kernel) + bias
            raws.append(head.raw_of(user_hidden[:, tf.newaxis], movie_rows))
        raw = tf.concat(raws, axis=1)  # [users * n, heads]
        bias = tf.gather(self.movie_bias, movie_rows) + self.constant
        ratings_out = squashed_rating(tf.reshape(raw, tf.shape(bias)) + bias, *self.scale)
        return tf.reduce_mean(ratings_out, axis=-1)

