"""One run's data, split and carved once, shared by both trainers, evaluation and benchmarks."""

import numpy as np

from twostage.data import DataConfig, SplitConfig, prepare, split


def test_the_parts_are_the_splits_twostage_train_makes(small_data, small_prepared):
    train, test = split(small_data.ratings, SplitConfig())
    fit, validation = split(train, SplitConfig().for_validation(0.1))
    for got, expected in ((small_prepared.train, train), (small_prepared.test, test),
                          (small_prepared.fit, fit), (small_prepared.validation, validation)):
        np.testing.assert_array_equal(got.user_id, expected.user_id)
        np.testing.assert_array_equal(got.movie_id, expected.movie_id)
    assert small_prepared.vocabularies.user_ids == tuple(np.unique(train.user_id))
    assert small_prepared.vocabularies is small_prepared.vocabularies  # built once


def test_tuning_never_sees_the_test_part(small_prepared):
    tuning = small_prepared.for_tuning()
    assert tuning.train is small_prepared.fit and tuning.test is small_prepared.validation
    assert tuning.vocabularies.user_ids == tuple(np.unique(small_prepared.fit.user_id))
    nested = small_prepared.for_tuning(nested=True)
    assert nested.train is small_prepared.fit and nested.test is small_prepared.validation
    assert len(nested.fit) + len(nested.validation) == len(small_prepared.fit)
    held_out = small_prepared.test.pairs()
    for part in (tuning.train, tuning.fit, tuning.validation, nested.fit, nested.validation):
        assert not part.pairs() & held_out - small_prepared.train.pairs()


def test_columns_and_history_come_from_the_prepared_parts(small_prepared):
    rows = small_prepared.example_rows(small_prepared.fit, with_labels=True)
    assert {name: len(values) for name, values in rows.items()} == dict.fromkeys(("user_id", "movie_id", "rating"),
                                                                                 len(small_prepared.fit))
    vocabulary = ("",) + small_prepared.vocabularies.user_ids
    assert [vocabulary[row] for row in rows["user_id"][:20]] == small_prepared.fit.user_id[:20].tolist()
    catalog = small_prepared.movies.movie_id
    assert catalog[rows["movie_id"][:20] - 1].tolist() == small_prepared.fit.movie_id[:20].tolist()
    unknown = small_prepared.example_rows(small_prepared.test.take(np.arange(0)))["user_id"]
    assert len(unknown) == 0
    users = small_prepared.user_row_columns
    assert all(len(values) == len(vocabulary) and values[0] == "" for values in users.values())
    history = small_prepared.history(small_prepared.train)
    assert len(history.row_splits) == len(small_prepared.vocabularies.user_ids) + 2  # unknown user first
    assert history.row_splits[1] == 0  # the unknown user's row is empty
    assert set(small_prepared.movie_columns) == {"movie_id", "movie_genres", "movie_title", "movie_year"}


def test_prepare_loads_when_not_given_data():
    from twostage.data import SyntheticConfig

    config = DataConfig(source="synthetic", synthetic=SyntheticConfig(num_users=30, num_movies=40,
                                                                      mean_ratings_per_user=8, seed=1))
    prepared = prepare(config)
    assert len(prepared.train) + len(prepared.test) == len(prepared.data.ratings)
