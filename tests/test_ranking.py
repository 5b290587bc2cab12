import numpy as np
import tensorflow as tf

from twostage.data import SplitConfig, split
from twostage.ranking.config import RankingConfig
from twostage.ranking.model import RatingModel
from twostage.ranking.train import rating_errors, train_ranking


def test_the_designs_architecture():
    model = RatingModel(["1"], ["a"], embedding_dim=32)
    out = model({"user_id": tf.constant(["1", "x"]), "movie_id": tf.constant(["a", "a"])})
    assert out.shape == (2, 1)
    assert [layer.units for layer in model.rating_head.layers] == [256, 64, 1]
    assert [layer.activation.__name__ for layer in model.rating_head.layers] == ["relu", "relu", "linear"]
    assert isinstance(model.task._loss, tf.keras.losses.MeanSquaredError)
    assert [m.name for m in model.task._ranking_metrics] == ["root_mean_squared_error"]


def test_trained_model_beats_the_global_mean(small_data):
    train, test = split(small_data.ratings, SplitConfig())
    fit, validation = split(train, SplitConfig().for_validation(0.1))
    result = train_ranking(train, fit, validation, small_data.movies, RankingConfig(epochs=10, batch_size=256))
    baseline = float(np.sqrt(np.mean((test.rating - train.rating.mean()) ** 2)))
    errors = rating_errors(result.model, test)
    assert errors["rmse"] < baseline - 0.05, (errors, baseline)
    assert [h["epoch"] for h in result.fit.history] == list(range(1, len(result.fit.history) + 1))
