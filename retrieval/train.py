"""Training the two-tower model and scoring it against held-out ratings."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from twostage.data.metrics import HeldOutEvaluator
from twostage.data.schema import Movies, Ratings
from twostage.data.training import EpochSchedule, FitResult, fit_choosing_epochs, make_dataset
from twostage.retrieval.config import RetrievalConfig
from twostage.retrieval.model import CandidateTower, QueryTower, TwoTowerModel


@dataclasses.dataclass
class TrainedRetrieval:
    """A trained two-tower model with what produced it."""

    model: TwoTowerModel
    fit: FitResult

    @property
    def query_tower(self) -> QueryTower:
        return self.model.query_tower

    @property
    def candidate_tower(self) -> CandidateTower:
        return self.model.candidate_tower


def candidate_embeddings(candidate_tower: CandidateTower, movies: Movies, batch_size: int = 4096) -> np.ndarray:
    """[num movies, dim] embeddings of the whole catalog, in catalog order."""
    dataset = tf.data.Dataset.from_tensor_slices({"movie_id": movies.movie_id}).batch(batch_size)
    return np.concatenate([candidate_tower(batch).numpy() for batch in dataset], axis=0)


def catalog_scorer(model: TwoTowerModel, movies: Movies):
    """Returns user ids -> [users, catalog] dot-product scores, for HeldOutEvaluator."""
    catalog = tf.constant(candidate_embeddings(model.candidate_tower, movies))

    def score(user_ids: np.ndarray) -> np.ndarray:
        queries = model.query_tower({"user_id": tf.constant(user_ids)})
        return tf.matmul(queries, catalog, transpose_b=True).numpy()

    return score


def _columns(ratings: Ratings, sampling_probability: dict) -> dict:
    """Training examples; each carries its movie's in-batch sampling probability (logQ)."""
    probability = np.fromiter((sampling_probability[m] for m in ratings.movie_id.tolist()), np.float32, len(ratings))
    return {"user_id": ratings.user_id, "movie_id": ratings.movie_id, "sampling_probability": probability}


def sampling_probabilities(ratings: Ratings) -> dict:
    """Movie id -> share of training examples with that movie (how often it is a batch negative)."""
    movies, counts = np.unique(ratings.movie_id, return_counts=True)
    return dict(zip(movies.tolist(), (counts / counts.sum()).tolist()))


def train_retrieval(train: Ratings, fit: Ratings, validation: Ratings, movies: Movies, config: RetrievalConfig,
                    strategy: Optional[tf.distribute.Strategy] = None) -> TrainedRetrieval:
    """Trains the two-tower model, choosing the epoch count on validation.

    Args:
      train: the whole training part (used for the refit and the user vocabulary).
      fit: the training part minus the validation part.
      validation: the validation part carved from the training part.
      movies: the catalog (the candidate vocabulary and the index).
      config: model and training settings.
      strategy: tf.distribute strategy (default: the current one).

    Returns:
      The trained model and its fit history.
    """
    user_ids = np.unique(train.user_id)
    evaluator = HeldOutEvaluator(movies.movie_id, fit, validation)

    loss = config.loss_for(len(movies))
    probability = sampling_probabilities(train)

    def build() -> TwoTowerModel:
        tf.keras.utils.set_random_seed(config.seed)
        model = TwoTowerModel(QueryTower(user_ids, config.embedding_dim, name="query_tower"),
                              CandidateTower(movies.movie_id, config.embedding_dim, name="candidate_tower"),
                              loss=loss, catalog_ids=movies.movie_id, temperature=config.temperature, l2=config.l2)
        optimizer = (tf.keras.optimizers.Adagrad(config.learning_rate) if config.optimizer == "adagrad"
                     else tf.keras.optimizers.Adam(config.learning_rate))
        model.compile(optimizer=optimizer)
        return model

    def validate(model: TwoTowerModel) -> dict:
        return evaluator.score_metrics(catalog_scorer(model, movies), ks=(10, 100))

    result = fit_choosing_epochs(
        "retrieval", build,
        make_dataset(_columns(fit, probability), config.batch_size, shuffle_seed=config.seed),
        validate,
        EpochSchedule(config.epochs, config.monitor, config.patience, higher_is_better=True, refit=config.refit),
        full_data=make_dataset(_columns(train, probability), config.batch_size, shuffle_seed=config.seed),
        strategy=strategy,
    )
    return TrainedRetrieval(model=result.model, fit=result)
