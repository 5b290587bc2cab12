"""Training the two-tower model and scoring it against held-out ratings."""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from twostage.data.classic import row_finder
from twostage.data.metrics import HeldOutEvaluator
from twostage.data.history import RaggedTable
from twostage.data.prepared import Prepared
from twostage.data.schema import Ratings
from twostage.data.metrics import rating_counts
from twostage.modeling.examples import ExampleBatches, ExampleTables, ShardedBatches, repeated_for_steps
from twostage.modeling.pooling import DENSE_POOLING_CELLS
from twostage.modeling.optimizers import make_optimizer
from twostage.modeling.training import EpochSchedule, FitResult, TrainingRun, fit_choosing_epochs
from twostage.retrieval.availability import CHOICE_METRIC, AvailabilityChoice, RatingTimes, choose_availability
from twostage.retrieval.config import RetrievalConfig
from twostage.retrieval.ease_towers import SPREAD_USERS, EaseChoice, EaseFactors, choose_ease, training_factors
from twostage.retrieval.model import CandidateTower, QueryTower, TwoTowerModel
from twostage.retrieval.partner import build_partner, train_partner

log = logging.getLogger("twostage")
# Fewest batches in an epoch of whole users (the multinomial loss).
MIN_USER_STEPS = 50


@dataclasses.dataclass(frozen=True)
class ValidationCandidates:
    """What the model chosen on validation retrieves for the validation users.

    Attributes:
      user_ids: the validation users.
      columns: [users, depth] catalog positions, best first, fit-part movies excluded (-1 pads),
        and movies not yet available where the lists are asked as of the last rating.
      scores: [users, depth] their retrieval scores.
      evaluator: scores lists of these users against the validation part.
    """

    user_ids: np.ndarray
    columns: np.ndarray
    scores: np.ndarray
    evaluator: HeldOutEvaluator


@dataclasses.dataclass
class TrainedRetrieval:
    """A trained two-tower model with what produced it.

    Attributes:
      model: the trained model.
      fit: the fit history.
      validation_candidates: its candidates for the validation users (for choosing how the
        ranking stage reorders them, on validation data only).
      config: the settings it was trained with, "auto" ones chosen.
      ease: EASE's setting in the towers (None: not added).
      availability: whether lists are asked as of each user's last training rating (the
        validation candidates are).
      partners: the towers' partners (RetrievalConfig.partner), each {"seed", "epochs", "scale"};
        empty without them.
      score_spread: the served model's scores' standard deviation over the validation
        candidates' model's (validation users x catalog). A weight chosen on the candidates'
        scores is multiplied by it to weigh the same against the served scores, which sum
        the partners' and pool the whole training part.
    """

    model: TwoTowerModel
    fit: FitResult
    validation_candidates: ValidationCandidates
    config: RetrievalConfig
    ease: Optional[EaseChoice] = None
    availability: Optional[AvailabilityChoice] = None
    partners: tuple = ()
    score_spread: float = 1.0

    @property
    def query_tower(self) -> QueryTower:
        return self.model.query_tower

    @property
    def candidate_tower(self) -> CandidateTower:
        return self.model.candidate_tower


def candidate_embeddings(candidate_tower: CandidateTower, movie_columns: Dict[str, np.ndarray],
                         batch_size: int = 4096) -> np.ndarray:
    """[num movies, dim] embeddings of the whole catalog, in catalog order.

    Args:
      candidate_tower: the trained candidate tower.
      movie_columns: the catalog's feature columns (Prepared.movie_columns).
      batch_size: movies per call.
    """
    size = len(next(iter(movie_columns.values())))
    # Plain slices, not a tf.data pipeline: every epoch's validation embeds the catalog, and
    # building a pipeline cost more than embedding ml-100k's 1,682 movies.
    return np.concatenate([candidate_tower({name: tf.constant(values[start:start + batch_size])
                                            for name, values in movie_columns.items()}).numpy()
                           for start in range(0, max(1, size), batch_size)], axis=0)


def query_embeddings(query_tower: QueryTower, user_inputs: Callable, user_ids: np.ndarray,
                     batch_size: int = 8192) -> np.ndarray:
    """[users, dim] query embeddings; ``user_inputs`` maps ids to the tower's input columns.

    Users are encoded ``batch_size`` at a time: one call for every user of an ML-25M-size
    vocabulary held 4.3 GB more at the export (pooling 20M history pairs at once).
    """
    return np.concatenate([
        query_tower({k: tf.constant(v) for k, v in user_inputs(user_ids[start:start + batch_size]).items()}).numpy()
        for start in range(0, max(1, len(user_ids)), batch_size)])


def catalog_scorer(model: TwoTowerModel, prepared: Prepared, users: Optional[np.ndarray] = None):
    """Returns user ids -> [users, catalog] dot-product scores, for HeldOutEvaluator.

    Args:
      model: the two-tower model.
      prepared: the data it was trained on (catalog features, user feature columns).
      users: the only users it will be asked about, embedded once here, for a scorer called
        many times over the same users (choosing EASE's setting); None: each call embeds its own.
    """
    catalog = candidate_embeddings(model.candidate_tower, prepared.movie_columns)
    if users is None:
        return lambda user_ids: query_embeddings(model.query_tower, prepared.user_inputs, user_ids) @ catalog.T
    queries, rows_of = query_embeddings(model.query_tower, prepared.user_inputs, users), row_finder(users)

    def score(user_ids: np.ndarray) -> np.ndarray:
        rows = rows_of(user_ids)
        if np.any(rows < 0):
            raise ValueError("this scorer embedded other users: build it with these")
        return queries[rows] @ catalog.T

    return score


def sampling_probabilities(prepared: Prepared, ratings: Ratings) -> np.ndarray:
    """[catalog] each movie's share of the examples in ``ratings`` (how often it is a batch negative)."""
    counts = rating_counts(prepared.movies.movie_id, ratings)
    return (counts / max(1, counts.sum())).astype(np.float32)


def training_rows(prepared: Prepared, ratings: Ratings, sampling_probability: np.ndarray) -> dict:
    """Training examples as integer rows (modeling.examples); each carries its movie's
    sampling probability (for the logQ correction)."""
    rows = prepared.example_rows(ratings)
    rows["sampling_probability"] = sampling_probability[np.maximum(rows["movie_id"] - 1, 0)]
    return rows


def with_sampling_probability(tables: ExampleTables, probability: np.ndarray):
    """Batch of shard rows -> the retrieval features, each example's sampling probability
    gathered from its movie's (as ``training_rows`` adds it to in-memory rows)."""
    probability = tf.constant(probability)

    def expand(rows):
        features = tables.expand({name: values for name, values in rows.items() if name != "rating"})
        features["sampling_probability"] = tf.gather(probability, tf.maximum(rows["movie_id"] - 1, 0))
        return features

    return expand


def users_with_history(history: RaggedTable) -> np.ndarray:
    """The rows of ``history`` that hold at least one movie (the multinomial loss's examples)."""
    return np.flatnonzero(np.diff(history.row_splits) > 0)


def ratings_per_user(history: RaggedTable) -> float:
    """How many ratings one multinomial example (a user with a history) covers, on average."""
    return len(history.values) / max(1, len(users_with_history(history)))


def user_epoch_rows(history: RaggedTable, batch_size: int) -> np.ndarray:
    """The user rows of one epoch of the multinomial loss: every user with a history, as
    often as makes an epoch of at least ``MIN_USER_STEPS`` batches."""
    return repeated_for_steps(users_with_history(history), batch_size, MIN_USER_STEPS).astype(np.int64)


def example_tables(model: TwoTowerModel, prepared: Prepared) -> ExampleTables:
    """Both towers' features of every user row and catalog movie, looked up once."""
    def index(features):
        return {**model.query_tower.index_features(features), **model.candidate_tower.index_features(features)}

    return ExampleTables(index, prepared.user_row_columns, prepared.movie_columns)


def train_retrieval(prepared: Prepared, config: RetrievalConfig, candidates: int = 100,
                    run: Optional[TrainingRun] = None) -> TrainedRetrieval:
    """Trains the two-tower model, choosing the epoch count on validation.

    Args:
      prepared: the data: the fit part is trained on while choosing epochs, the validation
        part chooses them, the whole training part is refitted on (and pooled by the
        queries), the catalog is the candidate vocabulary.
      config: model and training settings.
      candidates: how many candidates per validation user to record.
      run: the strategy, backups and TensorBoard folder (default: this process alone).

    Returns:
      The trained model, its fit history and its validation candidates.
    """
    train, fit = prepared.train, prepared.fit
    config, chosen = config.for_data(len(fit), len(prepared.movies), DENSE_POOLING_CELLS,
                                     num_users=len(prepared.vocabularies.user_ids),
                                     parameter_servers=run is not None and run.cluster.coordinated)
    if chosen:
        log.info("retrieval: %d training ratings, %d movies: %s (automatic; set them to override)", len(fit),
                 len(prepared.movies), ", ".join(f"{name} {value}" for name, value in chosen.items()))
    evaluator = HeldOutEvaluator(prepared.movies.movie_id, fit, prepared.validation, config.validation_users,
                                 config.seed)
    if len(evaluator.user_ids) < evaluator.all_users:
        log.info("retrieval: validating each epoch on %d of the %d validation users (a seeded sample)",
                 len(evaluator.user_ids), evaluator.all_users)
    loss = config.loss
    probability = sampling_probabilities(prepared, train)
    histories = {}

    def history_of(part: Ratings) -> RaggedTable:  # built once per part (seconds at 25M ratings)
        if id(part) not in histories:
            histories[id(part)] = prepared.history(part)
        return histories[id(part)]

    def build(refit: bool, seed: int = config.seed, prefix: str = "") -> TwoTowerModel:
        tf.keras.utils.set_random_seed(seed)
        # The history the tower pools is that of the part it is trained on: the fit part's
        # while choosing epochs, so that validation ratings never leak into the queries.
        history = history_of(train if refit else fit) if config.use_history else None
        query = QueryTower(prepared.vocabularies, config.embedding_dim, config.feature_dim, config.use_user_features,
                           config.id_dropout, history, config.history_sample or None, config.use_user_id,
                           config.history_hidden, name=f"{prefix}query_tower")
        candidate = CandidateTower(prepared.vocabularies, config.embedding_dim, config.feature_dim,
                                   config.use_movie_features, config.id_dropout, name=f"{prefix}candidate_tower")
        times = None
        if config.timed_negatives and loss == "multinomial":
            times = RatingTimes.of(prepared.movies.movie_id, np.asarray(prepared.vocabularies.user_ids),
                                   train if refit else fit)
        model = TwoTowerModel(query, candidate, loss=loss, catalog=prepared.movie_columns,
                              temperature=config.temperature, l2=config.l2, history_dropout=config.history_dropout,
                              history_targets=config.history_targets, logits_dtype=config.logits_dtype,
                              rating_times=times)
        model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate, config.weight_averaging),
                      steps_per_execution=config.steps_per_execution)
        return model

    def validate(model: TwoTowerModel) -> dict:
        return evaluator.score_metrics(catalog_scorer(model, prepared), ks=(10, 100))

    def examples(ratings: Ratings, part: str, seed: int = config.seed):
        if loss == "multinomial":  # whole users: their histories are in the model already
            rows = {"user_id": user_epoch_rows(history_of(ratings), config.batch_size)}
            return lambda model: ExampleBatches(rows, config.batch_size, shuffle_seed=seed,
                                                drop_remainder=True, expand=example_tables(model, prepared).expand)
        if prepared.shards is not None:  # rows from the part's shard files, probabilities added per batch
            return lambda model: ShardedBatches(prepared.shards.parts[part], config.batch_size, seed,
                                                expand=with_sampling_probability(example_tables(model, prepared),
                                                                                 probability))
        rows = training_rows(prepared, ratings, probability)
        return lambda model: ExampleBatches(rows, config.batch_size, shuffle_seed=seed, drop_remainder=True,
                                            expand=example_tables(model, prepared).expand)

    def pool_whole_training_part(model: TwoTowerModel) -> None:
        if config.use_history:
            model.query_tower.set_history(history_of(train))

    partners = []  # (name, seed, model, examples)
    partner_run = run or TrainingRun()
    for number in range(1, (config.partners if config.partner else 0) + 1):
        # Their examples only then: for per-rating losses they are a copy of every training row.
        seed, suffix = config.seed + number, "" if number == 1 else f" {number}"
        partner_examples = examples(train, "train", seed)
        prefix = "partner_" if number == 1 else f"partner{number}_"
        partner = build_partner(lambda: build(True, seed, prefix=prefix), partner_examples, partner_run)
        partners.append((f"retrieval partner{suffix}", seed, partner, partner_examples))
    result = fit_choosing_epochs(
        "retrieval", build, examples(fit, "fit"), validate,
        EpochSchedule(config.epochs, config.monitor, config.patience, higher_is_better=True, refit=config.refit),
        full_data=examples(train, "train") if config.refit else None,
        run=run,
        # The refit differs from the fit only in the history pooled (build(True) against build(False)).
        refit_in_place=pool_whole_training_part,
    )
    served_partners = []  # (model, its record)
    for name, seed, partner, partner_examples in partners:
        train_partner(result.model, partner, partner_examples, result.best_epoch, partner_run, name)
        scale = spread_ratio(result.model, partner, prepared, evaluator.user_ids[:SPREAD_USERS])
        served_partners.append((partner, {"seed": seed, "epochs": result.best_epoch, "scale": scale}))
    if loss == "multinomial" and result.examples_per_second:
        # An example is a user and covers their whole history: reported as ratings, the unit
        # of the per-rating losses, so that the two compare.
        per_user = ratings_per_user(history_of(fit))
        log.info("retrieval: %.0f users/s, %.0f ratings/s (%.1f ratings per user)", result.examples_per_second,
                 result.examples_per_second * per_user, per_user)
        result.examples_per_second *= per_user
    ease = None
    if config.ease:
        ease, fit_factors = choose_ease(prepared.movies.movie_id, fit, evaluator,
                                        catalog_scorer(result.validation_model, prepared, evaluator.user_ids),
                                        config.ease_rank)
        attach_ease(result.validation_model, fit_factors)
    # Embedded once: the candidates and the spread the blend weight is chosen on read the same scores.
    validation_scorer = catalog_scorer(result.validation_model, prepared, evaluator.user_ids)
    availability, chosen_evaluator, (columns, scores) = choose_availability(
        evaluator, prepared.movies.movie_id, fit, validation_scorer, candidates, config.as_of_last_rating)
    log.info("retrieval: lists %s as of each user's last training rating (validation %s %.4f with, %.4f without)",
             "asked" if availability.as_of_last_rating else "not asked", CHOICE_METRIC,
             availability.figures["on"][CHOICE_METRIC], availability.figures["off"][CHOICE_METRIC])
    validation_candidates = ValidationCandidates(evaluator.user_ids, columns, scores, chosen_evaluator)
    spread_users = evaluator.user_ids[:SPREAD_USERS]
    validation_spread = float(np.std(validation_scorer(spread_users)))
    if not config.refit:
        # The weights were chosen on the fit part; the queries may still pool every
        # training rating, validation ones included: they are the user's real history.
        pool_whole_training_part(result.model)
    for partner, record in served_partners:
        result.model.query_tower.attach_partner(partner.query_tower, record["scale"])
        result.model.candidate_tower.attach_partner(partner.candidate_tower)
        log.info("retrieval: served with a partner (seed %d, %d epochs on the whole training part, its scores "
                 "times %.3f)", record["seed"], record["epochs"], record["scale"])
    members = 1 + len(served_partners)
    if ease is not None:  # what is served: EASE of the whole training part, as much beside each member
        input_factors, output_factors = training_factors(prepared.movies.movie_id, train, ease)
        attach_ease(result.model, (input_factors * np.float32(members), output_factors))
    served_spread = score_spread(result.model, prepared, spread_users)
    return TrainedRetrieval(model=result.model, fit=result, validation_candidates=validation_candidates,
                            config=config, ease=ease, availability=availability,
                            partners=tuple(record for _, record in served_partners),
                            score_spread=served_spread / max(validation_spread, 1e-12))


def score_spread(model: TwoTowerModel, prepared: Prepared, users: np.ndarray) -> float:
    """The standard deviation of ``model``'s scores over these users x the catalog."""
    return float(np.std(catalog_scorer(model, prepared)(users)))


def spread_ratio(model: TwoTowerModel, partner: TwoTowerModel, prepared: Prepared, users: np.ndarray) -> float:
    """``model``'s score spread over ``partner``'s, on these users x the catalog (the factor that
    puts the partner's scores on the model's spread)."""
    return score_spread(model, prepared, users) / max(score_spread(partner, prepared, users), 1e-12)


def attach_ease(model: TwoTowerModel, factors: tuple):
    """Widens both towers by EASE's (weighted input, output) factors, or replaces those they have."""
    if model.query_tower.ease is not None:
        model.query_tower.ease.set_factors(*factors)
        return
    layer = EaseFactors(*factors, name="ease_factors")
    model.query_tower.attach_ease(layer)
    model.candidate_tower.attach_ease(layer)
