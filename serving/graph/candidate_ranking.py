"""The ranking stage of a request: each user's candidates -> final scores.

A candidate's final score is its retrieval score + a weight times its predicted rating + a
per-movie term (``FinalBlend``; both fitted on validation data at training time, twostage.blend).
``CandidateRanking`` rates every candidate (``rank_all``), or, for a batch, only those that can
still reach a user's top k (``first_ratings``, then ``rank_later``). The first candidates (k and
half as many again) are rated, and the k-th best of their final scores is a floor the user's
top k cannot fall under. A later candidate is rated only if its retrieval score plus its movie's
term plus the weight times the highest rating the user can get (the highest the scorer gives
them anywhere in the catalog, where it keeps it; else the scale's top) reaches it. The others
are strictly below k candidates already, so the top k is the same for a fraction of the rating
work (docs/serving.md has the figures).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from twostage.data.features import UNKNOWN_USER_ROW


# A batch's first candidates are rated in this many slices of its users, so that each slice's
# hidden layer stays in cache (the same ratings, bit for bit; docs/serving.md).
RATING_SLICES = 4


def blend(retrieval_scores, predicted_ratings, weight, movie_terms=0.0):
    """The final score of candidates (numpy arrays or tensors): retrieval score + weight x
    rating + each candidate's movie term."""
    return retrieval_scores + weight * predicted_ratings + movie_terms


@dataclasses.dataclass(frozen=True)
class FinalBlend:
    """How an export turns both stages' scores into the final one (in served units).

    Attributes:
      rating_weight: the predicted rating's weight.
      movie_terms: [catalog] float32, what each movie adds to its final score.
    """

    rating_weight: float
    movie_terms: np.ndarray

    @classmethod
    def rating_only(cls, rating_weight: float, num_movies: int) -> "FinalBlend":
        """The blend of exports from before the movie terms: the same term for every movie."""
        return cls(float(rating_weight), np.zeros(num_movies, np.float32))


class CandidateRanking:
    """The rating model and the blend, applied to [batch, n] candidates.

    Candidates come best retrieval score first; a -inf retrieval score means no movie was
    left. User rows are 1..n for known users, UNKNOWN_USER_ROW for a user the models have never seen.

    Args:
      rating_scorer: ``rate(user_id, user_rows, positions)`` for [n] pairs and ``rate_lists``
        for [users, n] positions (ranking.scorers).
      blend_weight: the predicted rating's weight in the final score.
      movie_terms: [catalog] what each movie adds to its final score (FinalBlend).
      rating_range: [lowest, highest] rating the scorer can predict, or None (unbounded:
        only ``rank_all`` applies).
      highest_ratings: [user rows] the highest rating the scorer gives each user, or None
        (the range's top).
    """

    def __init__(self, rating_scorer, blend_weight, movie_terms, rating_range, highest_ratings=None):
        self.rating_scorer = rating_scorer
        self.blend_weight = blend_weight
        self.movie_terms = movie_terms
        self.rating_range = rating_range
        self.highest_ratings = highest_ratings

    def final_scores(self, rows, retrieval_scores, predicted, positions):
        """The blend of both stages' scores ([batch, n]) of the candidates at ``positions``.

        The rating model has not seen users new to it: they keep retrieval's order. A -inf
        retrieval score (no movie left) stays -inf: predicted ratings and movie terms are finite.
        """
        final = blend(retrieval_scores, predicted, self.blend_weight, tf.gather(self.movie_terms, positions))
        return tf.where((rows > UNKNOWN_USER_ROW)[:, tf.newaxis], final, retrieval_scores)

    def best_final_scores(self, rows, retrieval_scores, positions=None):
        """The highest final score candidates with these retrieval scores can get, whatever
        the rating model says of them (float rounding is monotone, so the bound holds as
        computed, and the rating bounds are a hair wider than what the scorer gives).
        ``positions`` None: movies anywhere in the catalog (the largest movie term)."""
        low, high = self.rating_range[0], self.rating_range[1]
        if self.highest_ratings is not None:
            high = tf.gather(self.highest_ratings, rows)[:, tf.newaxis]
        terms = tf.reduce_max(self.movie_terms) if positions is None else tf.gather(self.movie_terms, positions)
        best = tf.maximum(blend(retrieval_scores, low, self.blend_weight, terms),
                          blend(retrieval_scores, high, self.blend_weight, terms))
        return tf.where((rows > UNKNOWN_USER_ROW)[:, tf.newaxis], best, retrieval_scores)

    def rank_all(self, user_id, rows, retrieval_scores, positions):
        """Final scores and predicted ratings of every candidate ([batch, n] each)."""
        predicted = self.rating_scorer.rate_lists(user_id, rows, positions)
        return self.final_scores(rows, retrieval_scores, predicted, positions), predicted

    @staticmethod
    def first_count(k, width):
        """How many candidates are rated first: k and half as many again (at most ``width``).

        The floor is then the k-th best of more ratings, and rules out more later candidates
        (docs/serving.md compares the choices).
        """
        return tf.minimum(k + (k + 1) // 2, width)

    def first_ratings(self, user_id, rows, positions, k):
        """The first candidates' predicted ratings ([batch, first_count(k, n)])."""
        first = positions[:, :self.first_count(k, tf.shape(positions)[1])]
        users = tf.shape(rows)[0]
        bounds = [users * i // RATING_SLICES for i in range(RATING_SLICES + 1)]
        return tf.concat([self.rating_scorer.rate_lists(user_id[a:b], rows[a:b], first[a:b])
                          for a, b in zip(bounds, bounds[1:])], axis=0)

    def floor(self, rows, retrieval_scores, positions, first, k):
        """[batch, 1] the k-th best final score of the first candidates, rated ``first``
        ([batch, m], m >= k): a floor the user's top k cannot fall under."""
        rated = tf.shape(first)[1]
        final = self.final_scores(rows, retrieval_scores[:, :rated], first, positions[:, :rated])
        return tf.math.top_k(final, k=k).values[:, -1:]

    def rank_later(self, user_id, rows, retrieval_scores, positions, first, floor):
        """``rank_all``'s scores for every candidate that can reach the top k, -inf for the rest
        (whose predicted ratings are left 0), given the first candidates' ratings
        (``first_ratings``) and their floor.

        The later candidates whose best final score reaches the floor are rated as one flat
        list of pairs for the whole batch.
        """
        known = (rows > UNKNOWN_USER_ROW)[:, tf.newaxis]
        width = tf.shape(positions)[1]
        column = tf.range(width)[tf.newaxis]
        rated_first = tf.shape(first)[1]
        later = (column >= rated_first) & known & (self.best_final_scores(rows, retrieval_scores, positions) >= floor)
        pairs = tf.where(later)
        users = pairs[:, 0]
        rated_later = self.rating_scorer.rate(tf.gather(user_id, users), tf.gather(rows, users),
                                              tf.gather_nd(positions, pairs))
        predicted = tf.tensor_scatter_nd_update(tf.pad(first, [[0, 0], [0, width - rated_first]]), pairs, rated_later)
        score = self.final_scores(rows, retrieval_scores, predicted, positions)
        return tf.where((column < rated_first) | later, score, tf.constant(-np.inf, score.dtype)), predicted
