"""Training the rating model and measuring its error."""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import numpy as np
import tensorflow as tf

from twostage.data.prepared import Prepared
from twostage.data.schema import Ratings
from twostage.modeling.examples import ExampleBatches, ExampleTables, ShardedBatches, repeated_for_steps
from twostage.modeling.pooling import DENSE_POOLING_CELLS
from twostage.modeling.optimizers import make_optimizer
from twostage.modeling.training import EpochSchedule, FitResult, TrainingRun, fit_choosing_epochs
from twostage.ranking.config import RankingConfig
from twostage.ranking.architectures import build_rating_model
from twostage.ranking.autorec import AutoRecBlend, ItemAutoRec, rating_matrix
from twostage.ranking.model import AveragedRatingModel, RatingTaskModel

log = logging.getLogger("twostage")


@dataclasses.dataclass
class TrainedRanking:
    """A trained rating model with what produced it.

    Attributes:
      model: the final model (with ``average_refit``, the mean of the refit and the
        best-epoch model; with ``autorec``, averaged with the item autoencoder).
      fit: the fit history (and the best-epoch model of the fit part).
      inputs: joins the model's features onto (user, movie) rows.
      validation_predictions: the fit-part model's ratings for the pairs asked for (before
        its history input saw the validation part), or None.
      config: the settings it was trained with, "auto" ones chosen.
      autorec_fit: the item autoencoder's fit history, when it is averaged in.
      autorec_weight: its weight in the average, chosen on the validation part.
    """

    model: RatingTaskModel
    fit: FitResult
    inputs: "RatingInputs"
    validation_predictions: Optional[np.ndarray] = None
    config: Optional[RankingConfig] = None
    autorec_fit: Optional[FitResult] = None
    autorec_weight: Optional[float] = None


class RatingInputs:
    """Feeds (user, movie) rows to a rating model: integer rows per example, the features
    gathered per batch from per-user and per-movie tables (modeling.examples).

    Args:
      prepared: the data the model was built from (its catalog, users and vocabularies).
    """

    def __init__(self, prepared: Prepared):
        self.prepared = prepared
        # id(model) -> (model, its tables, its traced prediction, its kept passes: (id(ratings),
        # batch size) -> (ratings, their pass))
        self._per_model = {}

    def _for(self, model: RatingTaskModel) -> tuple:
        key = id(model)
        if key not in self._per_model:
            tables = ExampleTables(model.index_features, self.prepared.user_row_columns, self.prepared.movie_columns)
            predict = tf.function(lambda features: model(features)[:, 0], autograph=False, reduce_retracing=True)
            self._per_model[key] = (model, tables, predict, {})
        return self._per_model[key]

    def tables(self, model: RatingTaskModel) -> ExampleTables:
        """The feature tables in ``model``'s input form (built once per model)."""
        return self._for(model)[1]

    def predictor(self, model: RatingTaskModel):
        """features -> [batch] predicted ratings, traced once per model (validation calls it
        every epoch)."""
        return self._for(model)[2]

    def batches(self, model: RatingTaskModel, ratings: Ratings, batch_size: int, with_labels: bool = False,
                shuffle_seed: Optional[int] = None, user_chunk: Optional[int] = None) -> ExampleBatches:
        """Batches of ``model``'s features for the rows of ``ratings`` (in order unless
        shuffled; shuffled in chunks of a user's rows with ``user_chunk``)."""
        return ExampleBatches(self.prepared.example_rows(ratings, with_labels), batch_size, shuffle_seed,
                              drop_remainder=shuffle_seed is not None, expand=self.tables(model).expand,
                              user_chunk=user_chunk)

    def kept_pass(self, model: RatingTaskModel, ratings: Ratings, batch_size: int) -> tf.data.Dataset:
        """One in-order pass over ``ratings`` in ``model``'s input form, built once per model and kept:
        validation reads the same rows every epoch, and building and tracing a new pipeline costs more
        than a small validation part's pass."""
        passes = self._for(model)[3]
        key = (id(ratings), batch_size)
        if key not in passes:
            passes[key] = (ratings, self.batches(model, ratings, batch_size).dataset())
        return passes[key][1]


def predict_ratings(model: RatingTaskModel, inputs: RatingInputs, ratings: Ratings, batch_size: int = 8192,
                    keep_pass: bool = False) -> np.ndarray:
    """Predicted ratings for the (user, movie) pairs of ``ratings``, in order (``keep_pass``: through
    the pass RatingInputs.kept_pass keeps, for rows predicted again and again)."""
    predict = inputs.predictor(model)
    batches = inputs.kept_pass(model, ratings, batch_size) if keep_pass else \
        inputs.batches(model, ratings, batch_size).dataset()
    return np.concatenate([predict(batch).numpy() for batch in batches])


def _errors(predicted: np.ndarray, ratings: Ratings) -> dict:
    error = predicted - ratings.rating
    return {"rmse": float(np.sqrt(np.mean(error ** 2))), "mae": float(np.mean(np.abs(error)))}


def rating_errors(model: RatingTaskModel, inputs: RatingInputs, ratings: Ratings) -> dict:
    """RMSE and MAE of the model on ``ratings``."""
    return _errors(predict_ratings(model, inputs, ratings), ratings)


def _validator(inputs: RatingInputs, ratings: Ratings, most: int, seed: int):
    """model -> RMSE and MAE on ``ratings``, or on a seeded sample of ``most`` of them (0: all)."""
    if most and len(ratings) > most:
        log.info("ranking: validating each epoch on %d of the %d validation ratings (a seeded sample)", most,
                 len(ratings))
        ratings = ratings.take(np.sort(np.random.default_rng(seed).choice(len(ratings), most, replace=False)))
    return lambda model: _errors(predict_ratings(model, inputs, ratings, keep_pass=True), ratings)


# Fewest steps in an item autoencoder's epoch (a small catalog's movies are repeated).
MIN_AUTOREC_STEPS = 6
# Weights of the item autoencoder in the average tried on the validation part.
AUTOREC_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))


def _rating_matrix(prepared: Prepared, ratings: Ratings) -> np.ndarray:
    rows = prepared.example_rows(ratings, with_labels=True)
    return rating_matrix(rows["movie_id"], rows["user_id"], rows["rating"], len(prepared.movies) + 1,
                         len(prepared.vocabularies.user_ids) + 1)


def train_autorec(prepared: Prepared, config: RankingConfig, run: Optional[TrainingRun] = None) -> FitResult:
    """Trains the item autoencoder on the fit part, its epochs chosen on validation RMSE.

    Its codes read the fit part's ratings (``set_ratings`` swaps in the whole training part's).
    """
    fit_matrix = _rating_matrix(prepared, prepared.fit)
    catalog = np.arange(1, fit_matrix.shape[0], dtype=np.int64)
    batch_size = config.autorec_batch_size
    movies = {"movie_id": repeated_for_steps(catalog, batch_size, MIN_AUTOREC_STEPS)}
    validation = prepared.example_rows(prepared.validation)

    def build(refit: bool) -> ItemAutoRec:
        tf.keras.utils.set_random_seed(config.seed)
        model = ItemAutoRec(prepared.vocabularies, fit_matrix, config.autorec_hidden, config.autorec_l2,
                            prepared.rating_scale, name="item_autorec")
        model.batch_share.assign(batch_size / len(catalog))  # the penalty is per pass over the catalog
        # An epoch is a handful of small steps: one call into the runtime for all of them.
        model.compile(optimizer=make_optimizer("adam", config.autorec_learning_rate, 0.0),
                      steps_per_execution=max(1, len(movies["movie_id"]) // batch_size))
        return model

    def validate(model: ItemAutoRec) -> dict:
        model.update_codes()
        return _errors(autorec_ratings(model, validation), prepared.validation)

    return fit_choosing_epochs(
        "ranking autorec", build,
        lambda model: ExampleBatches(movies, batch_size, shuffle_seed=config.seed, drop_remainder=True),
        validate, EpochSchedule(config.autorec_epochs, "rmse", config.autorec_patience, higher_is_better=False,
                                refit=False), run=run)


def autorec_ratings(model: ItemAutoRec, rows: dict, batch_size: int = 65_536) -> np.ndarray:
    """The autoencoder's ratings of (user, movie) rows (data.prepared.example_rows)."""
    return np.concatenate([model.rate(tf.constant(rows["user_id"][start:start + batch_size]),
                                      tf.constant(rows["movie_id"][start:start + batch_size])).numpy()
                           for start in range(0, len(rows["user_id"]), batch_size)] or [np.zeros(0, np.float32)])


def choose_autorec_weight(base: np.ndarray, autorec: np.ndarray, known: np.ndarray, ratings: np.ndarray,
                          weights=AUTOREC_WEIGHTS) -> tuple[float, dict]:
    """The weight of the autoencoder's rating with the lowest RMSE, and {weight: RMSE}.

    Args:
      base, autorec: [n] the two models' ratings of the validation pairs.
      known: [n] 1 where the autoencoder can rate the pair (else the base rating alone counts).
      ratings: [n] the true ratings.
    """
    figures = {}
    for weight in weights:
        share = weight * known
        figures[float(weight)] = float(np.sqrt(np.mean(((1 - share) * base + share * autorec - ratings) ** 2)))
    return min(figures, key=figures.get), figures


def train_ranking(prepared: Prepared, config: RankingConfig, validation_pairs: Optional[Ratings] = None,
                  run: Optional[TrainingRun] = None) -> TrainedRanking:
    """Trains the rating model, choosing the epoch count on validation RMSE.

    Args:
      prepared: the data: the fit part is trained on while choosing epochs, the validation
        part chooses them, the whole training part is refitted on; the catalog and the user
        vocabulary are the model's.
      config: model and training settings.
      validation_pairs: (user, movie) pairs of validation users to predict with the model
        chosen on the fit part (e.g. retrieval's validation candidates).
      run: the strategy, backups and TensorBoard folder (default: this process alone).

    Returns:
      The trained model and its fit history.
    """
    train, fit = prepared.train, prepared.fit
    run = run or TrainingRun()
    matrix_cells = (len(prepared.movies) + 1) * (len(prepared.vocabularies.user_ids) + 1)  # the autoencoder's
    config, chosen = config.for_data(len(fit), len(prepared.movies), DENSE_POOLING_CELLS, rating_cells=matrix_cells,
                                     parameter_servers=run.cluster.coordinated,
                                     several_workers=run.cluster.several_workers)
    if chosen:
        log.info("ranking: %d training examples, %d movies: %s (automatic; set them to override)", len(fit),
                 len(prepared.movies), ", ".join(f"{name} {value}" for name, value in chosen.items()))
    inputs = RatingInputs(prepared)

    def build(refit: bool) -> RatingTaskModel:
        tf.keras.utils.set_random_seed(config.seed)
        part = train if refit else fit  # what the model may know: never the validation part
        # build_rating_model knows which architectures read the history.
        history = prepared.history(part, config.history_ratings) if config.use_history else None
        model = build_rating_model(config.architecture, prepared.vocabularies, prepared.rating_scale,
                                   float(part.rating.mean()), history, config)
        model.compile(optimizer=make_optimizer("adam", config.learning_rate, config.weight_averaging),
                      steps_per_execution=config.steps_per_execution)
        return model

    def examples(ratings: Ratings, part: str):
        if prepared.shards is not None:  # rows and labels from the part's shard files
            return lambda model: ShardedBatches(prepared.shards.parts[part], config.batch_size, config.seed,
                                                expand=inputs.tables(model).expand)
        return lambda model: inputs.batches(model, ratings, config.batch_size, with_labels=True,
                                            shuffle_seed=config.seed, user_chunk=config.user_chunk or None)

    def pool_whole_training_part(model: RatingTaskModel) -> None:
        model.set_history(prepared.history(train, config.history_ratings))

    result = fit_choosing_epochs(
        "ranking", build, examples(fit, "fit"),
        _validator(inputs, prepared.validation, config.validation_ratings, config.seed),
        EpochSchedule(config.epochs, "rmse", config.patience, higher_is_better=False, refit=config.refit),
        full_data=examples(train, "train") if config.refit else None,
        run=run,
        # The refit differs from the fit only in the history pooled (and keeps the fit
        # part's global mean, a constant the biases absorb).
        refit_in_place=pool_whole_training_part,
    )
    validation_model, autorec_fit, weight = result.validation_model, None, None
    if config.autorec:
        autorec_fit = train_autorec(prepared, config, run)
        autorec = autorec_fit.model
        rows = prepared.example_rows(prepared.validation)
        weight, figures = choose_autorec_weight(
            predict_ratings(validation_model, inputs, prepared.validation, keep_pass=True), autorec_ratings(autorec, rows),
            autorec.known({name: tf.constant(rows[name]) for name in ("user_id", "movie_id")}).numpy(),
            prepared.validation.rating)
        log.info("ranking: rating = %.2f x the rating model's + %.2f x the item autoencoder's (validation RMSE "
                 "%.4f; rating model alone %.4f, autoencoder wherever it can rate %.4f)", 1 - weight, weight,
                 figures[weight], figures[0.0], figures[1.0])
        validation_model = AutoRecBlend(validation_model, autorec, weight)
    predictions = None
    if validation_pairs is not None:
        predictions = predict_ratings(validation_model, inputs, validation_pairs)
    model = result.model
    if config.refit and config.average_refit:
        model = AveragedRatingModel([result.validation_model, result.model])
    if not config.refit or config.average_refit:
        # Chosen on the fit part; at serving time the history input may pool every training
        # rating, validation ones included: they are the user's real history.
        pool_whole_training_part(result.validation_model)
    if config.autorec:
        # Likewise, each movie's code then reads every training rating it has.
        autorec.set_ratings(_rating_matrix(prepared, train))
        model = AutoRecBlend(model, autorec, weight)
    return TrainedRanking(model=model, fit=result, inputs=inputs, validation_predictions=predictions, config=config,
                          autorec_fit=autorec_fit, autorec_weight=weight)
