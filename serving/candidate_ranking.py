"""The ranking stage of a request: each user's candidates -> final scores.

A candidate's final score is its retrieval score + blend_weight * its predicted rating
(serving.blend). ``CandidateRanking`` rates every candidate (``rank_all``), or, for a batch,
only those that can still reach a user's top k (``first_ratings``, then ``rank_later``). The
first k are rated, and the lowest of their final scores is a floor the user's top k cannot
fall under. A later candidate is rated only if its retrieval score plus the weight times the
highest rating the scale allows reaches it. The others are strictly below k candidates
already, so the top k is the same for a fraction of the rating work (about a quarter of it
on ml-100k).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from twostage.serving.blend import blend


class CandidateRanking:
    """The rating model and the blend, applied to [batch, n] candidates.

    Candidates come best retrieval score first; a -inf retrieval score means no movie was
    left. User rows are 1..n for known users, 0 for a user the models have never seen.

    Args:
      rating_scorer: ``rate(user_id, user_rows, positions)`` for [n] pairs and ``rate_lists``
        for [users, n] positions (ranking.scorers).
      blend_weight: final score = retrieval score + blend_weight * predicted rating.
      rating_range: [lowest, highest] rating the scorer can predict, or None (unbounded:
        only ``rank_all`` applies).
    """

    def __init__(self, rating_scorer, blend_weight, rating_range):
        self.rating_scorer = rating_scorer
        self.blend_weight = blend_weight
        self.rating_range = rating_range

    def final_scores(self, rows, retrieval_scores, predicted):
        """The blend of both stages' scores ([batch, n]).

        The rating model has not seen users new to it: they keep retrieval's order. A -inf
        retrieval score (no movie left) stays -inf: predicted ratings are finite.
        """
        return tf.where((rows > 0)[:, tf.newaxis], blend(retrieval_scores, predicted, self.blend_weight),
                        retrieval_scores)

    def best_final_scores(self, rows, retrieval_scores):
        """The highest final score candidates with these retrieval scores can get, whatever
        the rating model says of them (float rounding is monotone, so the bound holds as
        computed, and the rating range is a hair wider than the scale)."""
        low, high = self.rating_range[0], self.rating_range[1]
        best = tf.maximum(blend(retrieval_scores, low, self.blend_weight),
                          blend(retrieval_scores, high, self.blend_weight))
        return tf.where((rows > 0)[:, tf.newaxis], best, retrieval_scores)

    def rank_all(self, user_id, rows, retrieval_scores, positions):
        """Final scores and predicted ratings of every candidate ([batch, n] each)."""
        predicted = self.rating_scorer.rate_lists(user_id, rows, positions)
        return self.final_scores(rows, retrieval_scores, predicted), predicted

    def first_ratings(self, user_id, rows, retrieval_scores, positions, k):
        """The first k candidates' predicted ratings ([batch, k]), and the lowest of their final
        scores ([batch, 1]): a floor the user's top k cannot fall under."""
        first = self.rating_scorer.rate_lists(user_id, rows, positions[:, :k])
        return first, self.floor(rows, retrieval_scores, first)

    def floor(self, rows, retrieval_scores, first):
        """[batch, 1] the lowest final score of the first candidates, rated ``first`` ([batch, k])."""
        k = tf.shape(first)[1]
        return tf.reduce_min(self.final_scores(rows, retrieval_scores[:, :k], first), axis=1, keepdims=True)

    def rank_later(self, user_id, rows, retrieval_scores, positions, k, first, floor):
        """``rank_all``'s scores for every candidate that can reach the top k, -inf for the rest
        (whose predicted ratings are left 0), given the first k's ratings and their floor.

        The later candidates whose best final score reaches the floor are rated as one flat
        list of pairs for the whole batch.
        """
        known = (rows > 0)[:, tf.newaxis]
        width = tf.shape(positions)[1]
        column = tf.range(width)[tf.newaxis]
        later = (column >= k) & known & (self.best_final_scores(rows, retrieval_scores) >= floor)
        pairs = tf.where(later)
        users = pairs[:, 0]
        rated_later = self.rating_scorer.rate(tf.gather(user_id, users), tf.gather(rows, users),
                                              tf.gather_nd(positions, pairs))
        predicted = tf.tensor_scatter_nd_update(tf.pad(first, [[0, 0], [0, width - tf.shape(first)[1]]]), pairs,
                                                rated_later)
        score = self.final_scores(rows, retrieval_scores, predicted)
        return tf.where((column < k) | later, score, tf.constant(-np.inf, score.dtype)), predicted
