import numpy as np
import pytest
import tensorflow as tf
from string_features import string_features

from twostage.data.history import training_history
from twostage.ranking.config import RankingConfig
from twostage.ranking.model import AveragedRatingModel, RatingModel
from twostage.ranking.train import RatingInputs, predict_ratings, rating_errors, train_ranking


@pytest.fixture(scope="module")
def parts(small_prepared):
    p = small_prepared
    return p.train, p.test, p.fit, p.validation, p.vocabularies


def test_the_designs_dense_stack_and_task(parts):
    vocabularies = parts[4]
    model = RatingModel(vocabularies, (1.0, 5.0), 3.5, embedding_dim=32)
    assert [layer.units for layer in model.rating_head.layers] == [256, 64, 1]
    assert [layer.activation.__name__ for layer in model.rating_head.layers] == ["relu", "relu", "linear"]
    assert isinstance(model.task._loss, tf.keras.losses.MeanSquaredError)
    assert [m.name for m in model.task._ranking_metrics] == ["root_mean_squared_error"]
    assert model.feature_names == ("movie_genres", "movie_title", "movie_year", "user_age", "user_gender",
                                   "user_occupation", "user_zip")


def test_indexed_features_give_the_same_ratings_as_strings(parts, small_data, small_prepared):
    train, test, _, _, vocabularies = parts
    history = training_history(train, vocabularies.user_ids, small_data.movies, with_ratings=True)
    model = RatingModel(vocabularies, (1.0, 5.0), 3.5, history=history, history_ratings=True)
    features = string_features(small_prepared, test.take(np.arange(50)))
    indexed = model.index_features(features)
    assert indexed["user_id"].dtype == tf.int64 and isinstance(indexed["movie_title"], tf.RaggedTensor)
    np.testing.assert_allclose(model(indexed).numpy(), model(features).numpy(), rtol=1e-6)
    np.testing.assert_allclose(model.compute_loss({**indexed, "rating": tf.constant(test.rating[:50])}).numpy(),
                               model.compute_loss({**features, "rating": tf.constant(test.rating[:50])}).numpy(),
                               rtol=1e-6)


@pytest.mark.parametrize("output", ["sigmoid", "clip"])
def test_predictions_stay_inside_the_rating_scale(parts, small_data, small_prepared, output):
    train, _, _, _, vocabularies = parts
    model = RatingModel(vocabularies, (1.0, 5.0), 3.5, history=training_history(train, vocabularies.user_ids,
                                                                              small_data.movies), output=output)
    inputs = string_features(small_prepared, train.take(np.arange(64)))
    # Push the dense stack far out of range: the output must still be a rating.
    head = model.rating_head
    model(inputs)
    head.layers[-1].bias.assign([100.0])
    high = model(inputs).numpy()
    head.layers[-1].bias.assign([-100.0])
    low = model(inputs).numpy()
    assert high.max() <= 5.0 and low.min() >= 1.0 and high.min() > 4.9 and low.max() < 1.1


def test_zero_output_predicts_the_global_mean(parts):
    model = RatingModel(parts[4], (1.0, 5.0), 3.7, use_features=False, biases=False)
    model({"user_id": tf.constant(["1"]), "movie_id": tf.constant(["1"])})
    for layer in model.rating_head.layers:
        layer.kernel.assign(tf.zeros_like(layer.kernel))
        layer.bias.assign(tf.zeros_like(layer.bias))
    assert model({"user_id": tf.constant(["1"]), "movie_id": tf.constant(["1"])}).numpy()[0, 0] == pytest.approx(3.7)


@pytest.mark.slow
def test_trained_model_beats_the_global_mean(parts, small_prepared):
    train, test, fit, validation, vocabularies = parts
    result = train_ranking(small_prepared, RankingConfig(epochs=10, batch_size=256, refit=True, average_refit=False))
    baseline = float(np.sqrt(np.mean((test.rating - train.rating.mean()) ** 2)))
    errors = rating_errors(result.model, result.inputs, test)
    assert errors["rmse"] < baseline - 0.05, (errors, baseline)
    assert [h["epoch"] for h in result.fit.history] == list(range(1, len(result.fit.history) + 1))
    # The validation model is the fit part's best epoch, distinct from the refitted one.
    assert result.fit.validation_model is not result.model
    best = min(h["validation"]["rmse"] for h in result.fit.history)
    assert rating_errors(result.fit.validation_model, result.inputs, validation)["rmse"] == pytest.approx(best, 1e-4)
    predicted = predict_ratings(result.model, result.inputs, test)
    assert predicted.min() >= 1.0 and predicted.max() <= 5.0


@pytest.mark.slow
def test_without_refit_the_best_model_is_kept_and_validation_is_predicted_before_the_history_grows(
        parts, small_prepared):
    train, _, fit, validation, vocabularies = parts
    result = train_ranking(small_prepared, RankingConfig(epochs=6, batch_size=256, refit=False, autorec=False),
                           validation_pairs=validation)
    assert result.fit.validation_model is result.model
    best = min(h["validation"]["rmse"] for h in result.fit.history)
    # Predicted with the fit part's history: exactly the RMSE the epoch was chosen by.
    rmse = float(np.sqrt(np.mean((result.validation_predictions - validation.rating) ** 2)))
    assert rmse == pytest.approx(best, rel=1e-4)
    # Afterwards the history input pools the whole training part, validation included.
    assert result.model.rated_movies.values.numpy().size == len(np.unique(train.user_id + "/" + train.movie_id))


@pytest.mark.slow
def test_average_refit_serves_the_mean_of_the_refit_and_the_best_epoch_model(parts, small_prepared):
    train, test, fit, validation, vocabularies = parts
    result = train_ranking(small_prepared, RankingConfig(epochs=4, batch_size=256, refit=True, average_refit=True,
                                                         autorec=False),
                           validation_pairs=validation)
    assert isinstance(result.model, AveragedRatingModel)
    best_epoch_model, refitted = result.model.members
    assert best_epoch_model is result.fit.validation_model and refitted is not best_epoch_model
    # The validation pairs were predicted by the best-epoch model alone, before it saw more history.
    best = min(h["validation"]["rmse"] for h in result.fit.history)
    rmse = float(np.sqrt(np.mean((result.validation_predictions - validation.rating) ** 2)))
    assert rmse == pytest.approx(best, 1e-4)
    members = [predict_ratings(m, result.inputs, test) for m in (best_epoch_model, refitted)]
    np.testing.assert_allclose(predict_ratings(result.model, result.inputs, test), np.mean(members, axis=0),
                               rtol=1e-5)
    assert not np.allclose(members[0], members[1])


def test_the_rating_range_serving_prunes_with(parts):
    """A bounded output's range (a hair wider), the widest of an average's members, none when
    unbounded: serving may only rule candidates out with bounds no rating crosses."""
    from twostage.ranking.scorers import _rating_range

    vocabularies = parts[4]
    clipped = RatingModel(vocabularies, (1.0, 5.0), 3.5, embedding_dim=8, output="clip")
    sigmoid = RatingModel(vocabularies, (0.5, 5.0), 3.5, embedding_dim=8, output="sigmoid")
    linear = RatingModel(vocabularies, (1.0, 5.0), 3.5, embedding_dim=8, output="linear")
    low, high = _rating_range(clipped).numpy()
    assert 1.0 - 1e-3 < low < 1.0 and 5.0 < high < 5.0 + 1e-3
    low, high = _rating_range(AveragedRatingModel([clipped, sigmoid])).numpy()
    assert 0.5 - 1e-3 < low < 0.5 and 5.0 < high < 5.0 + 1e-3
    assert _rating_range(linear) is None
    assert _rating_range(AveragedRatingModel([clipped, linear])) is None


def test_validation_on_a_seeded_sample_of_the_ratings(parts, monkeypatch):
    from twostage.ranking import train as ranking_train

    validation = parts[3]
    seen = []
    monkeypatch.setattr(ranking_train, "predict_ratings", lambda model, inputs, ratings, **_: seen.append(ratings) or
                        np.full(len(ratings), 3.0))
    half = len(validation) // 2
    for _ in range(2):
        ranking_train._validator(None, validation, half, seed=7)(None)
    first, again = seen
    assert len(first) == half and np.array_equal(first.rating, again.rating)  # the same sample every epoch
    pairs = set(zip(validation.user_id, validation.movie_id))
    assert set(zip(first.user_id, first.movie_id)) <= pairs
    ranking_train._validator(None, validation, 0, seed=7)(None)  # 0: every rating
    assert len(seen[-1]) == len(validation)


def test_a_kept_pass_is_built_once_and_predicts_what_a_new_one_does(parts, small_prepared):
    train, test, _, validation, vocabularies = parts
    model = RatingModel(vocabularies, (1.0, 5.0), 3.5, history=small_prepared.history(train))
    inputs = RatingInputs(small_prepared)
    first = inputs.kept_pass(model, validation, 64)
    assert inputs.kept_pass(model, validation, 64) is first  # validation reads it every epoch
    assert inputs.kept_pass(model, test, 64) is not first and inputs.kept_pass(model, validation, 32) is not first
    kept = predict_ratings(model, inputs, validation, 64, keep_pass=True)
    np.testing.assert_array_equal(kept, predict_ratings(model, inputs, validation, 64))
    assert len(kept) == len(validation)
