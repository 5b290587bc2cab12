"""The request and response shapes shared by every client of an exported model.

The in-process ``Recommender`` and the TF Serving clients (REST and gRPC) validate a
request the same way, build the same named input arrays, and turn the same output
columns into results, so that ``recommend(...)`` means one thing wherever it runs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Union

import numpy as np

from twostage.data.errors import TwostageError
from twostage.data.features import USER_FEATURES, zip_prefix
from twostage.data.schema import age_bucket


class RequestError(TwostageError):
    """A request is malformed (empty ids, k out of range, ...)."""


class UnknownMovieError(RequestError):
    """A movie id the model's catalog does not hold."""


# What a caller may say about a user the model has never seen (cold start).
USER_FEATURE_ARGUMENTS = ("age", "gender", "occupation", "zip_code")

Ids = Union[str, int, Sequence[Union[str, int]]]


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
class Candidate:
    """One of retrieval's candidates, before ranking.

    Attributes:
      movie_id, title: the movie.
      retrieval_score: the two-tower score.
    """

    movie_id: str
    title: str
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


def is_single(ids) -> bool:
    return isinstance(ids, (str, bytes, int, np.integer))


def _strings(values) -> np.ndarray:
    return np.asarray(values, dtype=object)


def id_array(ids: Ids, what: str) -> np.ndarray:
    """[n] ids as strings; a clear error for none or an empty one."""
    if is_single(ids):
        ids = [ids]
    ids = [i.decode("utf-8") if isinstance(i, bytes) else str(i) for i in ids]
    if not ids:
        raise RequestError(f"no {what} ids given")
    if any(not i for i in ids):
        raise RequestError(f"empty {what} id")
    return _strings(ids)


def user_feature_values(features: Optional[dict]) -> dict:
    """The model's user-feature inputs (one value each) from what a caller knows of a new user.

    Args:
      features: any of age (years), gender ("M"/"F"), occupation, zip_code.

    Returns:
      user_age, user_gender, user_occupation, user_zip strings ("" when not given).
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
    return {
        "user_age": age or "",
        "user_gender": str(features.get("gender") or "").upper(),
        "user_occupation": str(features.get("occupation") or ""),
        "user_zip": zip_prefix(str(features.get("zip_code") or "")),
    }


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """What an export allows a request (from its metadata).

    Attributes:
      max_k: the most recommendations (and related movies) per call.
      num_candidates: the most retrieval candidates per user.
      max_exclusions: the most extra excluded movies per user.
    """

    max_k: int
    num_candidates: int
    max_exclusions: int

    @classmethod
    def from_metadata(cls, metadata: dict) -> "RequestLimits":
        return cls(int(metadata["serving"]["max_k"]), int(metadata["index"]["num_candidates"]),
                   int(metadata["serving"].get("max_exclusions", 0)))

    def k(self, k, largest: Optional[int] = None) -> np.ndarray:
        largest = largest or self.max_k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= largest:
            raise RequestError(f"k must be a whole number from 1 to {largest} (fixed at export), got {k!r}")
        return np.asarray(k, np.int32)

    def exclusions(self, exclude, users: int) -> np.ndarray:
        """[rows, n] movie ids ("" pads): none, one list for every user, or one list per user."""
        if exclude is None or (not is_single(exclude) and len(exclude) == 0):
            return np.zeros((0, 0), dtype=object)
        if is_single(exclude):
            raise RequestError("exclude must be a list of movie ids (or one list per user), not a single id")
        rows = [exclude] if all(is_single(m) for m in exclude) else [list(row) for row in exclude]
        if len(rows) not in (1, users):
            raise RequestError(f"exclude has {len(rows)} lists for {users} users; give one list, or one per user")
        rows = [[str(m) for m in row] for row in rows]
        longest = max(len(row) for row in rows)
        if longest > self.max_exclusions:
            raise RequestError(f"at most {self.max_exclusions} excluded movies per user (fixed at export), "
                               f"got {longest}")
        return np.asarray([row + [""] * (longest - len(row)) for row in rows], dtype=object).reshape(len(rows),
                                                                                                     longest)

    def recommend(self, user_id: Ids, k: int, features: Optional[dict] = None, exclude=None,
                  include_seen: bool = False, retrieve: bool = False) -> dict:
        """The named inputs of the ``serving_default`` (or ``retrieve``) signature, every one given."""
        ids = id_array(user_id, "user")
        inputs = {"user_id": ids, "k": self.k(k, self.num_candidates if retrieve else self.max_k),
                  "exclude_movie_ids": self.exclusions(exclude, len(ids)),
                  "include_seen": np.asarray(bool(include_seen))}
        values = user_feature_values(features) if features else {}
        for name in USER_FEATURES:
            inputs[name] = _strings([values[name]] if values else [])
        return inputs

    def related(self, movie_id: Ids, k: int) -> dict:
        """The inputs of ``similar_movies`` and ``also_liked``."""
        return {"movie_id": id_array(movie_id, "movie"), "k": self.k(k)}

    @staticmethod
    def ratings(user_ids: Ids, movie_ids: Ids) -> dict:
        """The inputs of ``predict_rating``: one user and one movie per pair."""
        users, movies = id_array(user_ids, "user"), id_array(movie_ids, "movie")
        if len(users) != len(movies):
            raise RequestError(f"{len(users)} user ids but {len(movies)} movie ids; give one of each per pair")
        return {"user_id": users, "movie_id": movies}


def string_array(values: np.ndarray) -> np.ndarray:
    """UTF-8 bytes from TensorFlow -> a numpy str array of the same shape."""
    if not values.size:
        return values.astype(str)
    # Decoding each object is a third of what np.char.decode costs (which first copies them
    # into a fixed-width bytes array): a tenth of a 1,000-user batch call.
    return np.array([value.decode("utf-8") for value in values.ravel().tolist()]).reshape(values.shape)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _rows(values) -> list:
    return [[_text(v) for v in row] for row in np.asarray(values, dtype=object).tolist()]


def _floats(values) -> list:
    return np.asarray(values, np.float64).tolist()


def recommendations(outputs: dict) -> list[list[Recommendation]]:
    """``serving_default`` outputs -> one list per user, best first ("" / -inf padding dropped)."""
    columns = (_rows(outputs["movie_id"]), _rows(outputs["title"]), _floats(outputs["score"]),
               _floats(outputs["predicted_rating"]), _floats(outputs["retrieval_score"]))
    return [[Recommendation(*movie) for movie in zip(*user) if math.isfinite(movie[2])] for user in zip(*columns)]


def candidates(outputs: dict) -> list[list[Candidate]]:
    """``retrieve`` outputs -> one list per user, in retrieval order."""
    columns = _rows(outputs["movie_id"]), _rows(outputs["title"]), _floats(outputs["retrieval_score"])
    return [[Candidate(*movie) for movie in zip(*user) if math.isfinite(movie[2])] for user in zip(*columns)]


def related_movies(outputs: dict) -> list[Optional[list[RelatedMovie]]]:
    """``similar_movies`` / ``also_liked`` outputs -> one list per movie, None for unknown movies."""
    columns = _rows(outputs["movie_id"]), _rows(outputs["title"]), _floats(outputs["score"])
    known = np.asarray(outputs["known_movie"]).reshape(-1).tolist()
    return [[RelatedMovie(*movie) for movie in zip(*movie_row) if math.isfinite(movie[2])] if is_known else None
            for movie_row, is_known in zip(zip(*columns), known)]


def one_or_all(ids, results: list):
    """The single result for a single id (UnknownMovieError for an unknown movie), else all."""
    if not is_single(ids):
        return results
    if results[0] is None:
        raise UnknownMovieError(f"movie {ids} is not in this model's catalog")
    return results[0]


class ModelClient:
    """The calls every client of an exported model answers the same way.

    Subclasses say how a signature is run: ``_call(signature, inputs) -> outputs`` with
    numpy arrays in and out (in process, TF Serving's REST API, or its gRPC API).

    Args:
      limits: what the export allows a request.
    """

    def __init__(self, limits: RequestLimits):
        self.limits = limits
        self.max_k = limits.max_k

    def _call(self, signature: str, inputs: dict) -> dict:
        raise NotImplementedError

    def recommend(self, user_id: Ids, k: int = 10, features: Optional[dict] = None, exclude=None,
                  include_seen: bool = False):
        """Top-k movies for one user (a list) or for several (a list of lists).

        Users the model was trained with are served from what it learned of them. A user it
        has never seen gets recommendations from ``features`` when given (cold start), else
        the most popular movies. The movies a user rated in training never come back unless
        ``include_seen``.

        Args:
          user_id: a user id, or a sequence of them.
          k: results per user, 1..max_k (fixed at export).
          features: for users never seen: any of age (years), gender, occupation, zip_code.
          exclude: movie ids never to return: one list for every user, or one list per user.
          include_seen: let the user's training movies come back too.

        Returns:
          [Recommendation, ...] best first; one such list per user when given a sequence.
        """
        inputs = self.limits.recommend(user_id, k, features, exclude, include_seen)
        return one_or_all(user_id, recommendations(self._call("serving_default", inputs)))

    def retrieve(self, user_id: Ids, k: int = 10, features: Optional[dict] = None, exclude=None,
                 include_seen: bool = False):
        """Retrieval's candidates alone, in retrieval order (k up to the candidates per user).

        Same arguments as :meth:`recommend`; returns Candidate lists.
        """
        inputs = self.limits.recommend(user_id, k, features, exclude, include_seen, retrieve=True)
        return one_or_all(user_id, candidates(self._call("retrieve", inputs)))

    def similar_movies(self, movie_id: Ids, k: int = 10):
        """"More like this": the k movies nearest by cosine of candidate embeddings.

        Args:
          movie_id: a movie id, or a sequence of them.
          k: results per movie, 1..max_k.

        Returns:
          [RelatedMovie, ...] best first (the movie itself excluded). For a sequence, one list
          per movie, None for ids not in the catalog; a single unknown id raises
          UnknownMovieError.
        """
        return one_or_all(movie_id, related_movies(self._call("similar_movies", self.limits.related(movie_id, k))))

    def also_liked(self, movie_id: Ids, k: int = 10):
        """People who liked this also liked: what the movie's fans (users who rated it highly
        in training) would be recommended together. Same shape as :meth:`similar_movies`.
        """
        return one_or_all(movie_id, related_movies(self._call("also_liked", self.limits.related(movie_id, k))))

    def predict_rating(self, user_ids: Ids, movie_ids: Ids) -> np.ndarray:
        """Predicted rating of each (user_ids[i], movie_ids[i]) pair."""
        return np.asarray(self._call("predict_rating", self.limits.ratings(user_ids, movie_ids))["rating"],
                          np.float32)
