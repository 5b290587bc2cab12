"""The Python client of an exported model: ``Recommender.load(path).recommend("42", k=10)``."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from twostage.data.errors import TwostageError
from twostage.data.features import zip_prefix
from twostage.data.schema import age_bucket
from twostage.serving.export import METADATA_FILE, versions


class ModelError(TwostageError):
    """The exported model is missing, incomplete or cannot be loaded here."""


class RequestError(TwostageError):
    """A request is malformed (empty ids, k out of range, ...)."""


class UnknownMovieError(RequestError):
    """A movie id the model's catalog does not hold."""


# What a caller may say about a user the model has never seen (cold start).
USER_FEATURE_ARGUMENTS = ("age", "gender", "occupation", "zip_code")


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One recommended movie.

    Attributes:
      movie_id: the movie's id in the catalog.
      title: its title.
      score: the final ranking score (higher first).
      predicted_rating: the rating model's prediction for this user.
      retrieval_score: the two-tower score that made it a candidate.
    """

    movie_id: str
    title: str
    score: float
    predicted_rating: float
    retrieval_score: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RelatedMovie:
    """A movie related to another ("similar movies", "people who liked this also liked").

    Attributes:
      movie_id: the related movie.
      title: its title.
      score: cosine similarity (similar movies) or the fans' mean query score (also liked).
    """

    movie_id: str
    title: str
    score: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def user_feature_inputs(count: int, features: Optional[dict]) -> dict:
    """The model's user-feature inputs from what a caller knows of a new user.

    Args:
      count: users in the request (the same features go with each).
      features: any of age (years), gender ("M"/"F"), occupation, zip_code.

    Returns:
      user_age, user_gender, user_occupation, user_zip string tensors of length ``count``.
    """
    features = dict(features or {})
    unknown = set(features) - set(USER_FEATURE_ARGUMENTS)
    if unknown:
        raise RequestError(f"unknown user feature(s) {', '.join(sorted(unknown))}; "
                           f"use {', '.join(USER_FEATURE_ARGUMENTS)}")
    age = features.get("age")
    if age not in (None, ""):
        try:
            age = str(age_bucket(int(age)))
        except (TypeError, ValueError):
            raise RequestError(f"age must be a whole number of years, got {age!r}") from None
    values = {
        "user_age": age or "",
        "user_gender": str(features.get("gender") or "").upper(),
        "user_occupation": str(features.get("occupation") or ""),
        "user_zip": zip_prefix(str(features.get("zip_code") or "")),
    }
    return {name: tf.constant([value] * count, tf.string) for name, value in values.items()}


def _strings(values: np.ndarray) -> np.ndarray:
    """UTF-8 bytes from TensorFlow -> a numpy str array of the same shape."""
    return np.vectorize(lambda b: b.decode("utf-8"), otypes=[str])(values) if values.size else values.astype(str)


def resolve_model_path(path: str) -> str:
    """The SavedModel folder that ``path`` means.

    Accepts a version folder, a model folder (DIR/<model_name>) or the export root given to
    ``--out`` holding one model; the newest complete version is picked.
    """
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if not os.path.isdir(path):
        raise ModelError(f"{path}: no such model folder")
    found = versions(path)
    if found:
        return os.path.join(path, str(found[-1]))
    models = [name for name in sorted(os.listdir(path)) if versions(os.path.join(path, name))]
    if len(models) == 1:
        return resolve_model_path(os.path.join(path, models[0]))
    if models:
        raise ModelError(f"{path} holds several models ({', '.join(models)}); name one of them")
    raise ModelError(f"{path}: no exported model here (expected saved_model.pb, or <model>/<version>/ folders)")


class Recommender:
    """An exported two-stage model, loaded in this process.

    Calls are thread-safe: the concrete functions are stateless and TensorFlow runs them
    concurrently.

    Args:
      loaded: the object ``tf.saved_model.load`` returned.
      path: where it was loaded from.
      metadata: the training facts saved with it.
    """

    def __init__(self, loaded, path: str, metadata: dict):
        self._loaded = loaded
        self.path = path
        self.metadata = metadata
        self._recommend = loaded.signatures["serving_default"]
        self.max_k = int(metadata["serving"]["max_k"])
        self._catalog = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str) -> "Recommender":
        """Loads the newest version under ``path`` (see :func:`resolve_model_path`).

        ScaNN's TensorFlow ops are registered first when the model holds a ScaNN index.
        """
        version_dir = resolve_model_path(path)
        try:
            with open(os.path.join(version_dir, "assets.extra", METADATA_FILE)) as f:
                metadata = json.load(f)
        except (OSError, ValueError) as err:
            raise ModelError(f"{version_dir}: not a twostage export ({METADATA_FILE} unreadable: {err})") from None
        if metadata.get("index", {}).get("kind") == "scann":
            try:
                import scann  # noqa: F401  registers the Scann>... ops the graph uses
            except ImportError:
                raise ModelError(f"{version_dir} holds a ScaNN index: install scann[tf]==1.4.2 to load it, "
                                 "or export with --index brute-force") from None
        try:
            loaded = tf.saved_model.load(version_dir)
        except (tf.errors.OpError, OSError, ValueError) as err:
            raise ModelError(f"{version_dir}: cannot load the SavedModel: {str(err).splitlines()[0]}") from None
        return cls(loaded, version_dir, metadata)

    @staticmethod
    def _ids(ids: Union[str, Sequence[str]], what: str) -> tf.Tensor:
        if isinstance(ids, (str, bytes, int, np.integer)):
            ids = [ids]
        ids = [str(i) for i in ids]
        if not ids:
            raise RequestError(f"no {what} ids given")
        if any(not i for i in ids):
            raise RequestError(f"empty {what} id")
        return tf.constant(ids, dtype=tf.string)

    def _check_k(self, k) -> tf.Tensor:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.max_k:
            raise RequestError(f"k must be a whole number from 1 to {self.max_k} (fixed at export), got {k!r}")
        return tf.constant(k, tf.int32)

    def recommend(self, user_id: Union[str, Sequence[str]], k: int = 10, features: Optional[dict] = None):
        """Top-k movies for one user (a list) or for several (a list of lists).

        Users the model was trained with are served from what it learned of them. A user it
        has never seen gets recommendations from ``features`` when given (cold start), else
        the most popular movies.

        Args:
          user_id: a user id, or a sequence of them.
          k: results per user, 1..max_k (fixed at export).
          features: for users never seen: any of age (years), gender, occupation, zip_code.

        Returns:
          [Recommendation, ...] best first; one such list per user when given a sequence.
        """
        single = isinstance(user_id, (str, bytes, int, np.integer))
        ids, k = self._ids(user_id, "user"), self._check_k(k)
        if features:
            out = self._loaded.signatures["recommend_with_features"](
                user_id=ids, k=k, **user_feature_inputs(int(ids.shape[0]), features))
        else:
            out = self._recommend(user_id=ids, k=k)
        columns = {name: value.numpy() for name, value in out.items()}
        columns["movie_id"], columns["title"] = _strings(columns["movie_id"]), _strings(columns["title"])
        results = []
        for row in range(columns["movie_id"].shape[0]):
            results.append([
                Recommendation(movie_id=str(columns["movie_id"][row, j]), title=str(columns["title"][row, j]),
                               score=float(columns["score"][row, j]),
                               predicted_rating=float(columns["predicted_rating"][row, j]),
                               retrieval_score=float(columns["retrieval_score"][row, j]))
                for j in range(columns["movie_id"].shape[1])
                if np.isfinite(columns["score"][row, j])
            ])
        return results[0] if single else results

    def recommend_arrays(self, user_ids: Sequence[str], k: int = 10) -> dict:
        """Batch recommendations as numpy arrays ([users, k] each), for bulk scoring."""
        out = self._recommend(user_id=self._ids(user_ids, "user"), k=self._check_k(k))
        arrays = {name: value.numpy() for name, value in out.items()}
        arrays["movie_id"], arrays["title"] = _strings(arrays["movie_id"]), _strings(arrays["title"])
        return arrays

    def _related(self, signature: str, movie_id, k: int):
        single = isinstance(movie_id, (str, bytes, int, np.integer))
        ids = self._ids(movie_id, "movie")
        out = self._loaded.signatures[signature](movie_id=ids, k=self._check_k(k))
        movies, titles = _strings(out["movie_id"].numpy()), _strings(out["title"].numpy())
        scores, known = out["score"].numpy(), out["known_movie"].numpy()
        results = []
        for row in range(len(known)):
            if not known[row]:
                results.append(None)
                continue
            results.append([RelatedMovie(str(movies[row, j]), str(titles[row, j]), float(scores[row, j]))
                            for j in range(movies.shape[1]) if np.isfinite(scores[row, j])])
        if single:
            if results[0] is None:
                raise UnknownMovieError(f"movie {movie_id} is not in this model's catalog")
            return results[0]
        return results

    def similar_movies(self, movie_id: Union[str, Sequence[str]], k: int = 10):
        """"More like this": the k movies nearest by cosine of candidate embeddings.

        Args:
          movie_id: a movie id, or a sequence of them.
          k: results per movie, 1..max_k.

        Returns:
          [RelatedMovie, ...] best first (the movie itself excluded). For a sequence, one list
          per movie, None for ids not in the catalog; a single unknown id raises
          UnknownMovieError.
        """
        return self._related("similar_movies", movie_id, k)

    def also_liked(self, movie_id: Union[str, Sequence[str]], k: int = 10):
        """People who liked this also liked: what the movie's fans (users who rated it highly
        in training) would be recommended together. Same shape as :meth:`similar_movies`.
        """
        return self._related("also_liked", movie_id, k)

    def predict_rating(self, user_ids: Sequence[str], movie_ids: Sequence[str]) -> np.ndarray:
        """Predicted rating of each (user_ids[i], movie_ids[i]) pair."""
        users, movies = self._ids(user_ids, "user"), self._ids(movie_ids, "movie")
        if users.shape[0] != movies.shape[0]:
            raise RequestError(f"{users.shape[0]} user ids but {movies.shape[0]} movie ids; give one of each per pair")
        return self._loaded.signatures["predict_rating"](user_id=users, movie_id=movies)["rating"].numpy()

    def retrieval_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        """Exact two-tower scores, [users, catalog size], in :meth:`catalog` order."""
        return self._loaded.signatures["retrieval_scores"](user_id=self._ids(user_ids, "user"))["scores"].numpy()

    def catalog(self) -> tuple[np.ndarray, np.ndarray]:
        """(movie ids, titles) of every movie the model can recommend."""
        with self._lock:
            if self._catalog is None:
                out = self._loaded.signatures["catalog"]()
                self._catalog = (_strings(out["movie_id"].numpy()), _strings(out["title"].numpy()))
        return self._catalog

    def training_history(self, user_ids: Sequence[str]) -> list[list[str]]:
        """Each user's training movies (what recommendations exclude)."""
        out = self._loaded.signatures["training_history"](user_id=self._ids(user_ids, "user"))
        ids, lengths = _strings(out["movie_id"].numpy()), out["length"].numpy()
        return [row[:n].tolist() for row, n in zip(ids, lengths)]
