import numpy as np
import pytest

from twostage.data import HeldOutEvaluator, Ratings
from twostage.retrieval.availability import choose_availability

CATALOG = np.asarray(["old", "new", "other", "held"])


def _ratings(rows):
    users, movies, times = zip(*rows)
    return Ratings.from_rows(users, movies, [4.0] * len(rows), times)


# Both users rated last at 100; "new" arrives at 500. Validation: each user's "held".
FIT = _ratings([("u1", "old", 100), ("u2", "old", 50), ("u2", "other", 100), ("u3", "new", 500),
                ("u3", "held", 40), ("u3", "other", 30)])
VALIDATION = _ratings([("u1", "held", 600), ("u2", "held", 600)])


def _scorer(order):
    return lambda users: np.tile(np.asarray(order, np.float32), (len(users), 1))


def test_lists_are_asked_as_of_the_last_rating_when_validation_says_so():
    evaluator = HeldOutEvaluator(CATALOG, FIT, VALIDATION)
    # "new" tops every list but nobody could have rated it by their last rating.
    choice, chosen, (columns, _) = choose_availability(evaluator, CATALOG, FIT, _scorer([0, 3, 1, 2]), depth=2)
    assert choice.as_of_last_rating and not choice.forced
    assert choice.figures["on"]["ndcg@10"] > choice.figures["off"]["ndcg@10"]
    assert chosen.request_times is not None and 1 not in columns  # catalog position 1: "new"
    np.testing.assert_array_equal(columns[:, 0], [3, 3])


def test_it_is_not_taken_when_it_does_not_help_or_is_switched_off():
    evaluator = HeldOutEvaluator(CATALOG, FIT, VALIDATION)
    # "held" tops every list: leaving "new" out changes nothing at the head.
    choice, chosen, _ = choose_availability(evaluator, CATALOG, FIT, _scorer([0, 2, 1, 3]), depth=2)
    assert not choice.as_of_last_rating and chosen is evaluator
    forced, chosen, (columns, _) = choose_availability(evaluator, CATALOG, FIT, _scorer([0, 3, 1, 2]), depth=2,
                                                       forced=False)
    assert not forced.as_of_last_rating and forced.forced and chosen is evaluator and 1 in columns
    assert forced.record()["validation"]["on"]["ndcg@10"] == pytest.approx(1.0)
