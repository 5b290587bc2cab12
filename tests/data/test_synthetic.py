from collections import Counter

import numpy as np
import pytest

from twostage.data import SyntheticConfig, generate


def test_generator_is_deterministic():
    config = SyntheticConfig(num_users=50, num_movies=60, seed=9)
    a, b = generate(config).data, generate(config).data
    np.testing.assert_array_equal(a.ratings.movie_id, b.ratings.movie_id)
    np.testing.assert_array_equal(a.ratings.rating, b.ratings.rating)
    assert not np.array_equal(generate(SyntheticConfig(num_users=50, num_movies=60, seed=10)).data.ratings.rating,
                              a.ratings.rating)


def test_schema_is_movielens_shaped(small_data):
    data = small_data
    assert data.rating_scale == (1.0, 5.0)
    assert set(np.unique(data.ratings.rating).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert np.all(np.diff(data.ratings.timestamp) >= 0)  # a log, in time order
    assert set(data.ratings.movie_id) <= set(data.movies.movie_id)
    assert set(data.ratings.user_id) <= set(data.users.user_id)
    assert len(set(data.movies.title)) == len(data.movies)
    assert all(data.movies.genres) and np.all(data.movies.year > 1900)
    assert set(data.users.gender) <= {"M", "F"}


def test_users_mostly_rate_and_like_their_planted_taste(small_synthetic):
    data, movie_taste, user_taste = small_synthetic.data, small_synthetic.movie_taste, small_synthetic.user_taste
    same = np.asarray([movie_taste[m] == user_taste[u] for u, m in zip(data.ratings.user_id, data.ratings.movie_id)])
    # Eight tastes: by chance about 1/8 of ratings would match.
    assert same.mean() > 0.3
    assert data.ratings.rating[same].mean() > data.ratings.rating[~same].mean() + 0.5
    assert Counter(user_taste.values()).most_common()[-1][1] > 5  # every taste has users


def test_generator_takes_its_size_and_scales_with_the_ratings():
    from twostage.data.synthetic import EXACT_SAMPLING_CELLS

    config = SyntheticConfig.parse("users=3000,movies=20000,ratings=90000,seed=4")
    assert config.num_users * config.num_movies > EXACT_SAMPLING_CELLS  # the proposal sampler
    generated = generate(config)
    ratings = generated.data.ratings
    assert 0.9 * 90000 <= len(ratings) <= 1.02 * 90000
    assert len(ratings.latest_per_pair()[0]) == len(ratings)  # one rating per (user, movie)
    assert len(ratings.users.used()) == 3000 and len(generated.data.movies) == 20000
    assert np.all(np.diff(ratings.timestamp) >= 0)
    assert set(np.unique(ratings.rating).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    users, movies = ratings.user_id, ratings.movie_id
    same = np.asarray([generated.movie_taste[m] == generated.user_taste[u] for u, m in zip(users, movies)])
    assert same.mean() > 0.3  # the planted tastes hold in the sampled path too
    counts = np.bincount(ratings.movies.codes, minlength=len(ratings.movies.ids))
    assert counts.max() > 20 * np.median(counts)  # a popularity long tail


def test_generator_size_errors_are_config_errors():
    from twostage.data import ConfigError

    for spec, message in (("users=10,films=5", "cannot read 'films=5'"), ("users=ten", "cannot read 'users=ten'"),
                          ("users=0", "num_users must be at least 1")):
        with pytest.raises(ConfigError, match=message):
            SyntheticConfig.parse(spec)
