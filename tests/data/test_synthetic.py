from collections import Counter

import numpy as np

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
