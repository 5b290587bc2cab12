"""``twostage evaluate``: scores an exported model on the held-out part of its split."""

from __future__ import annotations

import abc
import dataclasses
import logging
from typing import Optional

import numpy as np

from twostage.data import HeldOutEvaluator, Ratings, TwostageError
from twostage.data.availability import first_rated, last_rated
from twostage.data.classic import CLASSICS, unavailable
from twostage.data.metrics import popularity_scorer
from twostage.data.prepared import Prepared, prepare
from twostage.data.splits import SplitConfig
from twostage.pipeline import data_config_from_record
from twostage.data.features import USER_FEATURES
from twostage.serving.clients.recommender import USER_FEATURE_ARGUMENTS, Recommender

log = logging.getLogger("twostage")

RETRIEVAL_KS = (10, 50, 100)
TWO_STAGE_KS = (10,)


class EvaluationError(TwostageError):
    """The evaluation asked for cannot give an honest figure."""


def evaluate(model_path: str, source: Optional[str] = None, method: Optional[str] = None,
             seed: Optional[int] = None, test_fraction: Optional[float] = None, batch_size: int = 1024,
             sample_users: Optional[int] = None) -> dict:
    """Scores a model on the test part of a split (by default the one it was trained with).

    Args:
      model_path: the export (root, model or version folder).
      source: data source (default: the one recorded at training).
      method, seed, test_fraction: the split; each one not given is the one recorded at training.
      batch_size: users per batch.
      sample_users: score a seeded sample of this many test users (all when None); the
        JSON's "data" says how many were scored of how many.

    Returns:
      {"rmse", "retrieval": {...}, "two_stage": {...}, "train_seconds",
       "baselines": {"popularity": {...}}, "data": {...}}.

    Raises:
      EvaluationError: the test part holds ratings the model was trained on.
    """
    recommender = Recommender.load(model_path)
    prepared, evaluator = held_out(recommender, source, method, seed, test_fraction, sample_users)
    train_part, split_config = prepared.train, prepared.config.split
    test_part = prepared.test.of_users(evaluator.user_ids)
    catalog_ids = evaluator.catalog_ids
    sampled = f" (a seeded sample of the {evaluator.all_users})" if len(evaluator.user_ids) < evaluator.all_users else ""
    log.info("evaluating on %d held-out ratings of %d users%s", len(test_part), len(evaluator.user_ids), sampled)
    requests = export_requests(recommender, prepared)
    request_times = None
    if recommender.metadata.get("availability", {}).get("as_of_last_rating"):
        # Chosen on validation at training: every list (baselines' too) is asked as of the
        # user's last training rating, leaving out movies nobody had rated by then.
        request_times = last_rated(evaluator.user_ids, train_part)
        evaluator = evaluator.as_of(first_rated(catalog_ids, train_part), request_times)
        log.info("lists asked as of each user's last training rating (chosen on validation at training)")
    retrieval = evaluator.score_metrics(
        requests.retrieval_scores, ks=RETRIEVAL_KS, accuracy_k=100, batch_size=batch_size,
        progress=lambda done, total: log.info("retrieval: %d/%d users scored", done, total))
    popularity = evaluator.score_metrics(popularity_scorer(catalog_ids, train_part), ks=RETRIEVAL_KS, accuracy_k=100,
                                         batch_size=batch_size)
    classics = {name: _classic_figures(name, fit, prepared, evaluator, batch_size) for name, fit in CLASSICS.items()}
    ranked = []
    for start in range(0, len(evaluator.user_ids), batch_size):
        users = evaluator.user_ids[start:start + batch_size]
        times = None if request_times is None else request_times[start:start + batch_size]
        ranked.append(evaluator.column_of(requests.top_k(users, max(TWO_STAGE_KS), times)))
    two_stage = evaluator.ranked_list_metrics(np.concatenate(ranked), TWO_STAGE_KS)
    predicted = requests.predicted_ratings(test_part, batch_size)
    rmse = float(np.sqrt(np.mean((predicted - test_part.rating) ** 2)))
    return {
        "rmse": rmse,
        "retrieval": _retrieval_figures(retrieval),
        "two_stage": {f"{m}@{k}": two_stage[f"{m}@{k}"] for k in TWO_STAGE_KS for m in ("recall", "ndcg")},
        "train_seconds": recommender.metadata["train_seconds"],
        "baselines": {"popularity": _retrieval_figures(popularity), **classics},
        "data": {"source": prepared.config.source, "split": split_config.method, "seed": split_config.seed,
                 "test_fraction": split_config.test_fraction, "test_ratings": len(test_part),
                 "test_users": len(evaluator.user_ids), "test_users_in_split": evaluator.all_users,
                 "as_of_last_rating": request_times is not None},
    }


def held_out(recommender: Recommender, source: Optional[str] = None, method: Optional[str] = None,
             seed: Optional[int] = None, test_fraction: Optional[float] = None,
             sample_users: Optional[int] = None) -> tuple[Prepared, HeldOutEvaluator]:
    """The data and split a model is scored on (by default the ones it was trained with).

    Returns:
      The prepared data (its test part is what is scored) and a HeldOutEvaluator of its test
      part against its training part.

    Raises:
      EvaluationError: the test part holds ratings the model was trained on.
    """
    trained = data_config_from_record(recommender.metadata["data"])
    split_config = SplitConfig(method or trained.split.method, trained.split.seed if seed is None else seed,
                               trained.split.test_fraction if test_fraction is None else test_fraction)
    prepared = prepare(dataclasses.replace(trained, source=source or trained.source, split=split_config),
                       for_training=False)
    catalog_ids, _ = recommender.catalog()
    evaluator = HeldOutEvaluator(catalog_ids, prepared.train, prepared.test, sample_users, split_config.seed)
    if recommender.metadata["serving"].get("request_history"):
        # No training history is kept to check another split against: only the recorded one is honest.
        if split_config != trained.split:
            raise EvaluationError(f"{recommender.path} keeps no training history (its requests carry it), so a split "
                                  f"other than the one it was trained with cannot be checked for training ratings; "
                                  f"evaluate on that split (--split {trained.split.method} --seed {trained.split.seed} "
                                  f"--test-fraction {trained.split.test_fraction})")
    else:
        _refuse_training_ratings(recommender, evaluator.user_ids, prepared.test, split_config)
    return prepared, evaluator


class ExportRequests(abc.ABC):
    """What scoring an export asks of it, for users of the split it is scored on, sent the way
    its clients send them (by id, or as the history its requests carry).

    Args:
      recommender: the loaded export.
      prepared: the split it is scored on.
    """

    def __init__(self, recommender: Recommender, prepared: Prepared):
        self.recommender, self.prepared = recommender, prepared

    @abc.abstractmethod
    def retrieval_scores(self, user_ids: np.ndarray) -> np.ndarray:
        """[users, catalog] exact two-tower scores (HeldOutEvaluator's scorer)."""

    @abc.abstractmethod
    def recommend(self, user_ids: np.ndarray, k: int, request_times: Optional[np.ndarray] = None) -> list:
        """[[Recommendation, ...] per user], the final lists (asked at ``request_times``, one per user: None, now)."""

    def top_k(self, user_ids: np.ndarray, k: int, request_times: Optional[np.ndarray] = None) -> np.ndarray:
        """[users, k] the final lists' movie ids ("" past the movies left)."""
        lists = self.recommend(user_ids, k, request_times)
        return np.asarray([[r.movie_id for r in row] + [""] * (k - len(row)) for row in lists], dtype=object)

    @abc.abstractmethod
    def predicted_ratings(self, ratings: Ratings, batch_size: int) -> np.ndarray:
        """[rows] the predicted rating of each row of ``ratings``."""


class IdRequests(ExportRequests):
    """Scores an id-keyed export: each user sent by id."""

    def retrieval_scores(self, user_ids: np.ndarray) -> np.ndarray:
        return self.recommender.retrieval_scores(user_ids)

    def recommend(self, user_ids: np.ndarray, k: int, request_times: Optional[np.ndarray] = None) -> list:
        return self.recommender.recommend(list(user_ids), k=k, request_time=request_times)

    def top_k(self, user_ids: np.ndarray, k: int, request_times: Optional[np.ndarray] = None) -> np.ndarray:
        # Arrays: no objects per movie.
        return self.recommender.recommend_arrays(user_ids, k=k, request_time=request_times)["movie_id"]

    def predicted_ratings(self, ratings: Ratings, batch_size: int, pairs: int = 65536) -> np.ndarray:
        return np.concatenate([np.zeros(0, np.float32)] + [
            self.recommender.predict_rating(ratings.user_id[i:i + pairs], ratings.movie_id[i:i + pairs])
            for i in range(0, len(ratings), pairs)])


def export_requests(recommender: Recommender, prepared: Prepared) -> ExportRequests:
    """How to score ``recommender``: by id, or with requests that carry each user's history."""
    if recommender.metadata["serving"].get("request_history"):
        return RequestHistories(recommender, prepared)
    return IdRequests(recommender, prepared)


class RequestHistories(ExportRequests):
    """Scores a history export (``twostage train --request-history``) as its clients call it:
    each evaluated user is sent as a request carrying their training-part ratings and
    features, never by id.
    """

    def __init__(self, recommender: Recommender, prepared: Prepared):
        super().__init__(recommender, prepared)
        # The table the models pooled in training: one (user, movie) pair each, with its rating.
        self.table = prepared.history(prepared.train, with_ratings=True)
        self.row_of = {user: row for row, user in enumerate(prepared.vocabularies.user_ids, 1)}
        known = recommender.limits.feature_values or {}
        # Values the model never saw (a user outside its vocabulary) go as "not given".
        self.known = {name: set(values) for name, values in known.items()}

    def histories(self, user_ids: np.ndarray) -> list[dict]:
        """Each user's training movies, {movie id: rating}."""
        movie_ids, splits, out = self.prepared.movies.movie_id, self.table.row_splits, []
        for user in np.asarray(user_ids, dtype=str).tolist():
            row = self.row_of.get(user, 0)  # row 0: a user training never saw, empty
            pairs = slice(splits[row], splits[row + 1])
            out.append(dict(zip(movie_ids[self.table.values[pairs]].tolist(), self.table.weights[pairs].tolist())))
        return out

    def features(self, user_ids: np.ndarray) -> Optional[list]:
        """Each user's features, as a request gives them (None: the data has none)."""
        columns = self.prepared.user_inputs(np.asarray(user_ids, dtype=str))
        names = [(name, argument) for name, argument in zip(USER_FEATURES, USER_FEATURE_ARGUMENTS) if name in columns]
        if not names:
            return None
        return [{argument: value for name, argument in names
                 if (value := str(columns[name][row])) and (name not in self.known or value in self.known[name])}
                for row in range(len(user_ids))]

    def retrieval_scores(self, user_ids: np.ndarray) -> np.ndarray:
        return self.recommender.retrieval_scores_from_history(self.histories(user_ids), self.features(user_ids))

    def recommend(self, user_ids: np.ndarray, k: int, request_times: Optional[np.ndarray] = None) -> list:
        return self.recommender.recommend_from_history(self.histories(user_ids), k=k, features=self.features(user_ids),
                                                       request_time=request_times)

    def predicted_ratings(self, ratings: Ratings, batch_size: int) -> np.ndarray:
        """Each user's movies are rated in one request."""
        if len(ratings) == 0:
            return np.zeros(0, np.float32)
        order = np.argsort(ratings.users.codes, kind="stable")
        codes = ratings.users.codes[order]
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(codes)) + 1, [len(order)]])
        movie_ids = ratings.movies.ids[ratings.movies.codes[order]]
        predicted = np.empty(len(ratings), np.float32)
        for first in range(0, len(bounds) - 1, batch_size):
            groups = list(zip(bounds[first:first + batch_size + 1][:-1], bounds[first + 1:first + batch_size + 1]))
            users = ratings.users.ids[codes[[start for start, _ in groups]]]
            rated = self.recommender.predict_ratings_from_history(
                self.histories(users), [movie_ids[start:end].tolist() for start, end in groups], self.features(users))
            for (start, end), values in zip(groups, rated):
                predicted[order[start:end]] = values
        return predicted


def _classic_figures(name: str, fit, prepared: Prepared, evaluator: HeldOutEvaluator, batch_size: int) -> dict:
    """A classic baseline's test figures (its setting chosen on the validation part), or why it was skipped."""
    reason = unavailable(name, len(evaluator.catalog_ids))
    if reason:
        log.info("baseline %s skipped: %s", name, reason)
        return {"skipped": reason}
    log.info("baseline %s: choosing its setting on the validation part", name)
    model = fit(prepared)
    figures = _retrieval_figures(evaluator.score_metrics(model.score, ks=RETRIEVAL_KS, accuracy_k=100,
                                                         batch_size=min(batch_size, 512)))
    return {**figures, "setting": model.setting}


def _retrieval_figures(metrics: dict) -> dict:
    return {**{f"recall@{k}": metrics[f"recall@{k}"] for k in RETRIEVAL_KS}, "ndcg@10": metrics["ndcg@10"],
            "top_100_categorical_accuracy": metrics["top_100_categorical_accuracy"]}


def _refuse_training_ratings(recommender: Recommender, users: np.ndarray, test_part, split_config: SplitConfig,
                             most_users: int = 2000):
    """Raises when test ratings are in the model's baked-in training history.

    Checked on at most ``most_users`` test users (a seeded sample): a split or data that is
    not the model's shows in any few thousand users, and the whole check at 160k users
    would read every user's history back through the model.
    """
    if len(users) > most_users:
        users = users[np.sort(np.random.default_rng(0).choice(len(users), most_users, replace=False))]
    test_part = test_part.of_users(users)
    trained_pairs = set()
    for start in range(0, len(users), 4096):
        batch = users[start:start + 4096]
        for user, movies in zip(batch.tolist(), recommender.training_history(batch)):
            trained_pairs.update((user, m) for m in movies)
    overlap = sum(1 for pair in zip(test_part.user_id.tolist(), test_part.movie_id.tolist()) if pair in trained_pairs)
    if overlap:
        recorded = recommender.metadata["data"]["split"]
        if (split_config.method, split_config.seed, split_config.test_fraction) == (
                recorded["method"], recorded["seed"], recorded["test_fraction"]):
            raise EvaluationError(
                f"{overlap} of {len(test_part)} test ratings checked are in this model's training history although the "
                f"split is the one it was trained with: the data is not what it was trained on (ratings added "
                f"or changed since); evaluate on that data or retrain")
        raise EvaluationError(
            f"{overlap} of {len(test_part)} test ratings checked ({split_config.method} split, seed {split_config.seed}, "
            f"test fraction {split_config.test_fraction}) were used to train this model; evaluate on the split it "
            f"was trained with (--split {recorded['method']} --seed {recorded['seed']} "
            f"--test-fraction {recorded['test_fraction']}) or retrain")
