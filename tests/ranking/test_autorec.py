import numpy as np
import pytest
import tensorflow as tf

from twostage.data.features import FeatureVocabularies
from twostage.ranking import train as ranking_train
from twostage.ranking.architectures import build_rating_model
from twostage.ranking.autorec import AutoRecBlend, ItemAutoRec, rating_matrix
from twostage.ranking.config import RankingConfig
from twostage.ranking.train import RatingInputs, choose_autorec_weight, predict_ratings, train_ranking


def test_rating_matrix_places_each_rating_and_leaves_unknown_rows_out():
    matrix = rating_matrix(np.array([1, 2, 0, 2]), np.array([1, 3, 2, 0]), np.array([4.0, 2.5, 5.0, 1.0]), 3, 4)
    expected = np.zeros((3, 4), np.float32)
    expected[1, 1], expected[2, 3] = 4.0, 2.5
    np.testing.assert_array_equal(matrix, expected)
    with pytest.raises(ValueError, match="every rating must be above it"):
        rating_matrix(np.array([1]), np.array([1]), np.array([0.0]), 2, 2)


@pytest.fixture(scope="module")
def tiny():
    """Three users, three movies; user u3 and movie m3 have no ratings."""
    vocabularies = FeatureVocabularies(user_ids=("u1", "u2", "u3"), movie_ids=("m1", "m2", "m3"), user_features={},
                                       genres=(), title_tokens=(), years=())
    ratings = rating_matrix(np.array([1, 1, 2]), np.array([1, 2, 1]), np.array([5.0, 3.0, 1.0]), 4, 4)
    tf.keras.utils.set_random_seed(0)
    model = ItemAutoRec(vocabularies, ratings, hidden=2, l2=0.5, rating_scale=(1.0, 5.0))
    return vocabularies, ratings, model


def _by_hand(model, ratings):
    encoder_kernel, encoder_bias = (w.numpy() for w in model.encoder.weights)
    decoder_kernel, decoder_bias = (w.numpy() for w in model.decoder.weights)
    codes = 1 / (1 + np.exp(-(ratings @ encoder_kernel + encoder_bias)))
    return codes, codes @ decoder_kernel + decoder_bias, encoder_kernel, decoder_kernel


def test_loss_counts_only_existing_ratings_plus_the_batch_share_of_the_penalty(tiny):
    _, ratings, model = tiny
    model.batch_share.assign(0.5)
    loss = model.compute_loss({"movie_id": tf.constant([1, 2], tf.int64)}, training=True).numpy()
    _, rebuilt, encoder_kernel, decoder_kernel = _by_hand(model, ratings)
    rated = ratings[1:3] > 0
    expected = np.sum(np.where(rated, ratings[1:3] - rebuilt[1:3], 0.0) ** 2)
    expected += 0.5 * 0.5 / 2 * (np.sum(encoder_kernel ** 2) + np.sum(decoder_kernel ** 2))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_ratings_are_code_times_the_users_decoder_row_clipped_and_known_only_where_rated(tiny):
    _, ratings, model = tiny
    model.update_codes()
    codes, rebuilt, _, _ = _by_hand(model, ratings)
    np.testing.assert_allclose(model.codes.numpy(), codes, rtol=1e-5)
    features = {"user_id": tf.constant(["u1", "u2", "u3", "u1", "stranger"]),
                "movie_id": tf.constant(["m1", "m2", "m1", "m3", "m1"])}
    expected = np.clip([rebuilt[1, 1], rebuilt[2, 2], rebuilt[1, 3], rebuilt[3, 1], rebuilt[1, 0]], 1.0, 5.0)
    np.testing.assert_allclose(model(features)[:, 0].numpy(), expected, rtol=1e-5)
    np.testing.assert_array_equal(model.known(features).numpy(), [1, 1, 0, 0, 0])
    rows = {"user_id": tf.constant([1, 2], tf.int64), "movie_id": tf.constant([1, 2], tf.int64)}  # ids as rows
    np.testing.assert_allclose(model.rate(rows["user_id"], rows["movie_id"]).numpy(), expected[:2], rtol=1e-5)


def test_new_ratings_change_codes_and_who_is_known(tiny):
    vocabularies, ratings, _ = tiny
    model = ItemAutoRec(vocabularies, ratings, hidden=2, l2=0.5, rating_scale=(1.0, 5.0))
    more = ratings.copy()
    more[3, 3] = 4.0
    model.set_ratings(more)
    assert model.known({"user_id": tf.constant(["u3"]), "movie_id": tf.constant(["m3"])}).numpy()[0] == 1
    np.testing.assert_allclose(model.codes.numpy(), _by_hand(model, more)[0], rtol=1e-5)
    with pytest.raises(ValueError, match="the vocabularies need"):
        ItemAutoRec(vocabularies, ratings[:2], hidden=2, l2=0.5, rating_scale=(1.0, 5.0))


def test_blend_weights_the_autoencoder_where_it_knows_the_pair_else_keeps_the_base(tiny):
    vocabularies, ratings, model = tiny
    model.update_codes()
    base = build_rating_model("rsvd", vocabularies, (1.0, 5.0), 3.0, None, RankingConfig(architecture="rsvd"))
    features = {"user_id": tf.constant(["u1", "u2", "u3"]), "movie_id": tf.constant(["m1", "m2", "m1"])}
    base_ratings, autorec_ratings = base(features)[:, 0].numpy(), model(features)[:, 0].numpy()
    blended = AutoRecBlend(base, model, 0.25)(features)[:, 0].numpy()
    np.testing.assert_allclose(blended[:2], 0.75 * base_ratings[:2] + 0.25 * autorec_ratings[:2], rtol=1e-5)
    np.testing.assert_allclose(blended[2], base_ratings[2], rtol=1e-6)  # u3 has no ratings
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        AutoRecBlend(base, model, 1.5)


def test_weight_choice_finds_the_lowest_error_and_ignores_unknown_pairs():
    rng = np.random.default_rng(0)
    base, autorec = rng.normal(3, 1, 400), rng.normal(3, 1, 400)
    known = np.ones(400)
    known[:100] = 0
    truth = np.where(known > 0, 0.3 * base + 0.7 * autorec, base)
    weight, figures = choose_autorec_weight(base, autorec, known, truth)
    assert weight == 0.7 and figures[0.7] < 1e-6 and figures[0.0] > 0.1


@pytest.mark.slow
def test_trained_blend_beats_either_model_and_never_sees_the_test_part(small_prepared, monkeypatch):
    test_pairs = small_prepared.test.pairs() - small_prepared.train.pairs()
    chosen_on = []
    original = ranking_train.choose_autorec_weight

    def spy(base, autorec, known, ratings, *args):
        chosen_on.append(len(ratings))
        return original(base, autorec, known, ratings, *args)

    def no_test_part(name):
        def matrix(prepared, ratings):
            assert not (ratings.pairs() & test_pairs), f"the {name} matrix holds test ratings"
            return real(prepared, ratings)
        return matrix

    real = ranking_train._rating_matrix
    monkeypatch.setattr(ranking_train, "choose_autorec_weight", spy)
    monkeypatch.setattr(ranking_train, "_rating_matrix", no_test_part("autoencoder"))
    trained = train_ranking(small_prepared, RankingConfig(epochs=6, autorec_epochs=40))
    assert trained.config.autorec and not trained.config.refit
    assert chosen_on == [len(small_prepared.validation)]
    assert isinstance(trained.model, AutoRecBlend) and trained.model.weight == trained.autorec_weight
    inputs = RatingInputs(small_prepared)
    truth = small_prepared.test.rating
    rmse = {}
    for name, model in (("blend", trained.model), ("base", trained.model.base)):
        rmse[name] = float(np.sqrt(np.mean((predict_ratings(model, inputs, small_prepared.test) - truth) ** 2)))
    autorec = trained.model.autorec
    rows = small_prepared.example_rows(small_prepared.test)
    rmse["autorec"] = float(np.sqrt(np.mean((ranking_train.autorec_ratings(autorec, rows) - truth) ** 2)))
    assert rmse["blend"] <= min(rmse["base"], rmse["autorec"]) + 1e-3, rmse
    assert rmse["autorec"] < float(np.std(truth)), rmse  # it learned something: below the mean's error
