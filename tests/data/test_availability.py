import numpy as np
import pytest

from twostage.data import HeldOutEvaluator, Ratings
from twostage.data.availability import ALWAYS, NO_TIME, first_rated, last_rated, unavailable


def _ratings(rows):
    users, movies, times = zip(*rows)
    return Ratings.from_rows(users, movies, [4.0] * len(rows), times)


TRAIN = _ratings([("u1", "a", 100), ("u1", "b", 300), ("u2", "b", 200), ("u2", "c", 500), ("u1", "a", 50)])


def test_first_and_last_ratings_by_hand():
    np.testing.assert_array_equal(first_rated(np.asarray(["c", "a", "x", "b"]), TRAIN), [500, 50, ALWAYS, 200])
    np.testing.assert_array_equal(last_rated(np.asarray(["u2", "u9", "u1"]), TRAIN), [500, NO_TIME, 300])


def test_a_movie_is_unavailable_only_after_the_request_time():
    available_from = np.asarray([100, 200, ALWAYS, 300])
    mask = unavailable(available_from, np.asarray([200, NO_TIME, 99]))
    np.testing.assert_array_equal(mask, [[False, False, False, True], [False] * 4, [True, True, False, True]])


def test_an_evaluator_asked_at_a_time_leaves_out_later_movies_as_it_does_seen_ones():
    catalog = np.asarray(["a", "b", "c", "d"])
    test = _ratings([("u1", "c", 900), ("u1", "d", 900), ("u2", "a", 900)])
    plain = HeldOutEvaluator(catalog, TRAIN, test)
    scores = lambda users: np.tile([4.0, 3.0, 2.0, 1.0], (len(users), 1))  # noqa: E731
    np.testing.assert_array_equal(plain.top_unseen(scores, 3)[0], [[2, 3, -1], [0, 3, -1]])
    # u1 asks at 300: c (first rated at 500) is not yet available; u2 asks at 500, as late as
    # c; d, never rated in training, is available at any time.
    timed = plain.as_of(first_rated(catalog, TRAIN), last_rated(plain.user_ids, TRAIN))
    np.testing.assert_array_equal(timed.top_unseen(scores, 3)[0], [[3, -1, -1], [0, 3, -1]])
    assert plain.top_unseen(scores, 3)[0][0, 0] == 2  # the untimed evaluator is left as it was
    # The held-out movies count in the denominator either way: u1's c is a miss, not dropped.
    assert plain.score_metrics(scores, ks=(2,))["recall@2"] == pytest.approx(1.0)
    assert timed.score_metrics(scores, ks=(2,))["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
    with pytest.raises(ValueError, match="expected 2 request times"):
        plain.as_of(first_rated(catalog, TRAIN), np.asarray([1]))
