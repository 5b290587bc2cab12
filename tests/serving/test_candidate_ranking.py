"""serving.candidate_ranking: rating only the candidates that can reach a user's top k."""

import numpy as np
import tensorflow as tf

from twostage.serving.graph.candidate_ranking import CandidateRanking


class _TableScorer:
    """A rating scorer reading a fixed [users + 1, catalog] table, counting the pairs it rates."""

    def __init__(self, ratings):
        self.table = tf.constant(ratings, tf.float32)
        self.rating_range = tf.constant([1.0, 5.0])
        self.pairs_rated = 0

    def rate(self, user_id, user_rows, positions):
        self.pairs_rated += int(tf.size(positions))
        return tf.gather_nd(self.table, tf.stack([user_rows, tf.cast(positions, tf.int64)], axis=1))

    def rate_lists(self, user_id, user_rows, positions):
        self.pairs_rated += int(tf.size(positions))
        return tf.gather(tf.gather(self.table, user_rows), positions, batch_dims=1)


def test_ranking_only_the_reachable_candidates_keeps_every_top_k():
    """Rating the first candidates, then the later ones that can beat their floor, rates a
    fraction of them and returns the top k that rating all of them gives, for unknown users,
    lists cut short by -inf, ties, any blend weight, with or without movie terms, and with
    each user's highest rating as the bound (fewer rated still) or the scale's top."""
    rng = np.random.default_rng(3)
    users, catalog, width = 40, 300, 100
    ratings = np.round(rng.uniform(1, 5, size=(users + 1, catalog)) * 2) / 2  # half stars: ties
    ratings = np.minimum(ratings, rng.choice([3.0, 4.0, 4.5, 5.0], size=(users + 1, 1)))  # some never rate 5
    highest = ratings.max(axis=1)
    highest[0] = 5.0
    positions = np.stack([rng.permutation(catalog)[:width] for _ in range(users)]).astype(np.int32)
    scores = -np.sort(-np.round(rng.normal(size=(users, width)), 1), axis=1).astype(np.float32)
    scores[0, 30:] = -np.inf  # the catalog ran out
    rows = np.arange(1, users + 1)
    rows[5] = 0  # a user never seen
    user_id = tf.constant([str(r) for r in rows])
    args = (user_id, tf.constant(rows, tf.int64), tf.constant(scores), tf.constant(positions))
    movie_terms = np.round(rng.normal(scale=0.5, size=catalog), 1).astype(np.float32)
    for weight, terms in ((0.0, 0.0), (0.2, 0.0), (0.2, 1.0), (1.0, 1.0), (1000.0, 0.0)):
        for k in (1, 10, 40):
            pairs_rated = []
            for bound in (None, tf.constant(highest, tf.float32)):
                scorer = _TableScorer(ratings)
                ranking = CandidateRanking(scorer, tf.constant(weight, tf.float32), tf.constant(movie_terms * terms),
                                           scorer.rating_range, bound)
                everything, _ = ranking.rank_all(*args)
                known = rows > 0
                blended = scores + weight * ratings[rows[:, None], positions] + terms * movie_terms[positions]
                np.testing.assert_allclose(everything.numpy()[known], blended[known], rtol=1e-6, atol=1e-5)
                all_pairs, scorer.pairs_rated = scorer.pairs_rated, 0
                first = ranking.first_ratings(args[0], args[1], args[3], k)
                floor = ranking.floor(args[1], args[2], args[3], first, k)
                reachable, predicted = ranking.rank_later(*args, first, floor)
                expected_scores, expected_order = tf.math.top_k(everything, k)
                got_scores, got_order = tf.math.top_k(reachable, k)
                np.testing.assert_array_equal(got_order.numpy(), expected_order.numpy())
                np.testing.assert_array_equal(got_scores.numpy(), expected_scores.numpy())
                rated = np.take_along_axis(predicted.numpy(), got_order.numpy(), axis=1)
                wanted = np.take_along_axis(ratings[rows[:, None], positions], got_order.numpy(), axis=1)
                np.testing.assert_array_equal(rated[rows > 0], wanted[rows > 0])
                assert all_pairs == users * width
                pairs_rated.append(scorer.pairs_rated)
            assert pairs_rated[1] <= pairs_rated[0]
            if weight == 0.2 and k == 10 and not terms:
                assert pairs_rated[1] < pairs_rated[0] < all_pairs / 2, pairs_rated
