"""Training the rating model and measuring its error."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from twostage.data.schema import Movies, Ratings
from twostage.data.training import EpochSchedule, FitResult, fit_choosing_epochs, make_dataset
from twostage.ranking.config import RankingConfig
from twostage.ranking.model import RatingModel


@dataclasses.dataclass
class TrainedRanking:
    """A trained rating model with what produced it."""

    model: RatingModel
    fit: FitResult


def _columns(ratings: Ratings) -> dict:
    return {"user_id": ratings.user_id, "movie_id": ratings.movie_id, "rating": ratings.rating}


def predict_ratings(model: RatingModel, ratings: Ratings, batch_size: int = 8192) -> np.ndarray:
    """Predicted ratings for the (user, movie) pairs of ``ratings``, in order."""
    dataset = make_dataset({"user_id": ratings.user_id, "movie_id": ratings.movie_id}, batch_size)
    return np.concatenate([model(batch).numpy()[:, 0] for batch in dataset])


def rating_errors(model: RatingModel, ratings: Ratings) -> dict:
    """RMSE and MAE of the model on ``ratings``."""
    error = predict_ratings(model, ratings) - ratings.rating
    return {"rmse": float(np.sqrt(np.mean(error ** 2))), "mae": float(np.mean(np.abs(error)))}


def train_ranking(train: Ratings, fit: Ratings, validation: Ratings, movies: Movies, config: RankingConfig,
                  strategy: Optional[tf.distribute.Strategy] = None) -> TrainedRanking:
    """Trains the rating model, choosing the epoch count on validation RMSE.

    Args:
      train: the whole training part (refit data and user vocabulary).
      fit: the training part minus the validation part.
      validation: the validation part carved from the training part.
      movies: the catalog (movie vocabulary).
      config: model and training settings.
      strategy: tf.distribute strategy (default: the current one).

    Returns:
      The trained model and its fit history.
    """
    user_ids = np.unique(train.user_id)

    def build(refit: bool) -> RatingModel:
        tf.keras.utils.set_random_seed(config.seed)
        model = RatingModel(user_ids, movies.movie_id, config.embedding_dim, config.hidden_units,
                            name="rating_model")
        model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
        return model

    result = fit_choosing_epochs(
        "ranking", build,
        make_dataset(_columns(fit), config.batch_size, shuffle_seed=config.seed,
                            drop_remainder=True),
        lambda model: rating_errors(model, validation),
        EpochSchedule(config.epochs, "rmse", config.patience, higher_is_better=False, refit=config.refit),
        full_data=make_dataset(_columns(train), config.batch_size, shuffle_seed=config.seed,
                            drop_remainder=True),
        strategy=strategy,
    )
    return TrainedRanking(model=result.model, fit=result)
