import numpy as np
import pytest

from twostage.data import ConfigError, SplitConfig, split
from twostage.data.splits import split_indices


def test_random_split_is_exactly_the_tutorial_permutation(small_data):
    ratings = small_data.ratings
    n = len(ratings)
    train, test = split_indices(ratings, SplitConfig("random", 42, 0.2))
    order = np.random.default_rng(42).permutation(n)
    cut = round(0.8 * n)
    np.testing.assert_array_equal(train, order[:cut])
    np.testing.assert_array_equal(test, order[cut:])


def test_temporal_split_holds_out_each_users_latest(small_data):
    train, test = split(small_data.ratings, SplitConfig("temporal", test_fraction=0.25))
    assert len(train) + len(test) == len(small_data.ratings)
    for user in np.unique(test.user_id)[:50]:
        assert train.timestamp[train.user_id == user].max() <= test.timestamp[test.user_id == user].min()
        n = np.sum(small_data.ratings.user_id == user)
        assert np.sum(test.user_id == user) == round(0.25 * n)


def test_validation_part_is_carved_from_training_only(small_data):
    config = SplitConfig()
    train, test = split(small_data.ratings, config)
    fit, validation = split(train, config.for_validation(0.1))
    assert len(fit) + len(validation) == len(train)
    assert not (validation.pairs() & test.pairs())
    assert validation.pairs() <= train.pairs()


@pytest.mark.parametrize("kwargs,message", [({"method": "by-date"}, "unknown split"),
                                            ({"test_fraction": 1.5}, "between 0 and 1")])
def test_bad_split_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SplitConfig(**kwargs)
