"""Every selectable ranking architecture builds, trains, saves, reloads and stays in scale."""

import numpy as np
import pytest
import tensorflow as tf

from twostage.data.errors import ConfigError
from twostage.ranking.architectures import ARCHITECTURES, build_rating_model
from twostage.ranking.config import RankingConfig
from twostage.ranking.train import RatingInputs, predict_ratings
from string_features import string_features


@pytest.fixture(scope="module")
def setup(small_prepared):
    train = small_prepared.train
    return train, small_prepared.vocabularies, RatingInputs(small_prepared), small_prepared.history(train)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_architecture_trains_saves_and_reloads(architecture, setup, tmp_path):
    train, vocabularies, inputs, history = setup
    config = RankingConfig(architecture=architecture)

    def build():
        tf.keras.utils.set_random_seed(1)
        model = build_rating_model(architecture, vocabularies, (1.0, 5.0), float(train.rating.mean()), history,
                                   config)
        model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
        return model

    model = build()
    batches = inputs.batches(model, train, 512, with_labels=True, shuffle_seed=0)
    losses = model.fit(batches.epochs(), steps_per_epoch=batches.steps_per_epoch, epochs=3, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    sample = string_features(inputs.prepared, train.take(np.arange(200)))
    predicted = model(sample).numpy()
    # The rows-and-tables form training feeds predicts what the strings do.
    np.testing.assert_allclose(predict_ratings(model, inputs, train.take(np.arange(200))), predicted[:, 0],
                               rtol=1e-5, atol=1e-5)
    assert predicted.shape == (200, 1) and predicted.min() >= 1.0 and predicted.max() <= 5.0
    assert set(model.feature_names) <= set(sample) - {"user_id", "movie_id"}
    _serving_scorer_agrees(model, setup, train.take(np.arange(200)), predicted[:, 0])
    model.save_weights(str(tmp_path / "weights"))
    reloaded = build()
    reloaded(sample)
    reloaded.load_weights(str(tmp_path / "weights"))
    np.testing.assert_allclose(reloaded(sample).numpy(), predicted, rtol=1e-5)


def _serving_scorer_agrees(model, setup, pairs, predicted):
    """The export's scorer (precomputed tables, or the model on baked features) rates as the model does."""
    from twostage.ranking.scorers import PrecomputedRatingScorer, build_rating_scorer

    _, vocabularies, inputs, _ = setup
    prepared = inputs.prepared
    user_ids = np.asarray(vocabularies.user_ids)
    scorer = build_rating_scorer(model, user_ids, prepared.user_inputs(user_ids), prepared.movie_columns)
    rows = {u: i + 1 for i, u in enumerate(user_ids.tolist())}
    positions = {m: i for i, m in enumerate(prepared.movies.movie_id.tolist())}
    user_rows = tf.constant([rows[u] for u in pairs.user_id.tolist()], tf.int64)
    movie_positions = tf.constant([positions[m] for m in pairs.movie_id.tolist()], tf.int32)
    rated = scorer.rate(tf.constant(pairs.user_id), user_rows, movie_positions).numpy()
    np.testing.assert_allclose(rated, predicted, rtol=1e-4, atol=1e-4)
    lists = scorer.rate_lists(tf.constant(pairs.user_id[:10]), user_rows[:10],
                              tf.tile(movie_positions[tf.newaxis, :5], [10, 1])).numpy()
    assert lists.shape == (10, 5) and lists.min() >= 1.0 and lists.max() <= 5.0
    highest = scorer.highest_ratings
    assert (highest is not None) == isinstance(scorer, PrecomputedRatingScorer)
    if highest is not None:  # each user's bound: just above the best rating the catalog gets
        catalog = tf.range(len(positions))[tf.newaxis]
        every = scorer.rate_lists(tf.constant(user_ids), tf.range(1, len(user_ids) + 1, dtype=tf.int64),
                                  tf.tile(catalog, [len(user_ids), 1])).numpy()
        highest = highest.numpy()
        assert highest[0] == scorer.rating_range.numpy()[1]
        assert np.all(highest[1:] >= every.max(axis=1)) and np.all(highest[1:] - every.max(axis=1) <= 1e-3)


def test_unknown_architecture(setup):
    train, vocabularies, _, history = setup
    with pytest.raises(ConfigError, match="unknown ranking architecture 'xgboost'"):
        build_rating_model("xgboost", vocabularies, (1, 5), 3.5, history, RankingConfig())
    with pytest.raises(ConfigError, match="unknown ranking architecture 'xgboost'"):
        RankingConfig(architecture="xgboost")


def test_the_export_scorer_rates_an_autorec_blend_as_the_blend_does(setup, small_prepared):
    from twostage.ranking.autorec import AutoRecBlend, ItemAutoRec
    from twostage.ranking.scorers import PrecomputedRatingScorer, build_rating_scorer
    from twostage.ranking.train import _rating_matrix

    train, vocabularies, inputs, history = setup
    tf.keras.utils.set_random_seed(2)
    base = build_rating_model("default", vocabularies, (1.0, 5.0), float(train.rating.mean()), history,
                              RankingConfig())
    # The fit part's matrix: users and movies with no fit ratings fall back to the base model.
    autorec = ItemAutoRec(vocabularies, _rating_matrix(small_prepared, small_prepared.fit), 8, 1.0, (1.0, 5.0))
    autorec.update_codes()
    blend = AutoRecBlend(base, autorec, 0.4)
    pairs = train.take(np.arange(300))
    predicted = blend(string_features(inputs.prepared, pairs))[:, 0].numpy()
    assert not np.allclose(predicted, base(string_features(inputs.prepared, pairs))[:, 0].numpy())
    _serving_scorer_agrees(blend, setup, pairs, predicted)
    user_ids = np.asarray(vocabularies.user_ids)
    scorer = build_rating_scorer(blend, user_ids, small_prepared.user_inputs(user_ids), small_prepared.movie_columns)
    assert isinstance(scorer, PrecomputedRatingScorer)
    # A user the export does not know (row 0) and a movie outside the catalog get the base model's rating.
    unknown = scorer.rate(tf.constant(["", ""]), tf.constant([0, 1], tf.int64), tf.constant([0, -1], tf.int32))
    alone = build_rating_scorer(base, user_ids, small_prepared.user_inputs(user_ids), small_prepared.movie_columns)
    np.testing.assert_allclose(unknown.numpy(), alone.rate(tf.constant(["", ""]), tf.constant([0, 1], tf.int64),
                                                           tf.constant([0, -1], tf.int32)).numpy(), rtol=1e-5)
