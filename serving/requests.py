"""The requests every client of an exported model sends, validated one way.

The in-process ``Recommender`` and the TF Serving clients (REST and gRPC) validate a
request the same way and build the same named input arrays (serving.responses turns the
outputs into results), so that ``recommend(...)`` means one thing wherever it runs.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Optional, Sequence, Union

import numpy as np

from twostage.data.errors import TwostageError
from twostage.data.features import USER_FEATURES, zip_prefix
from twostage.data.schema import age_bucket


class RequestError(TwostageError):
    """A request is malformed (empty ids, k out of range, ...)."""


class UnknownMovieError(RequestError):
    """A movie id the model's catalog does not hold."""


# What an export's requests carry to say who the user is (its metadata's index.requests).
USER_ID_REQUESTS, HISTORY_REQUESTS = "user_id", "history"
# What a caller may say about a user the model has never seen (cold start).
USER_FEATURE_ARGUMENTS = ("age", "gender", "occupation", "zip_code")

Ids = Union[str, int, Sequence[Union[str, int]]]


def _seconds(value) -> int:
    """A request time as whole seconds since 1970 (RequestError for anything else)."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise RequestError(f"request_time {value.isoformat()} has no timezone; give an aware datetime "
                               f"(e.g. tzinfo=datetime.timezone.utc) or seconds since 1970")
        return int(value.timestamp())
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise RequestError(f"request_time must be whole seconds since 1970 or a datetime, got {value!r}")
    if not np.iinfo(np.int64).min <= int(value) <= np.iinfo(np.int64).max:
        raise RequestError(f"request_time {value} is out of range")
    return int(value)


# The signature that answers a request carrying a time, by the one that answers it without.
TIMED_SIGNATURES = {"serving_default": "recommend_at", "retrieve": "retrieve_at"}


def timed(signature: str, inputs: dict) -> str:
    """The signature for ``inputs``: its "_at" form when they carry a request time."""
    return TIMED_SIGNATURES[signature] if "request_time" in inputs else signature


def request_time_inputs(request_time, users: int) -> dict:
    """The ``request_time`` input of the "_at" signatures: none when no time is given (the
    plain signatures, every movie available), else one time for every user or one per user."""
    if request_time is None:
        return {}
    many = not isinstance(request_time, (datetime.datetime, str, bytes)) and hasattr(request_time, "__len__")
    times = [_seconds(value) for value in (request_time if many else [request_time])]
    if len(times) not in (1, users):
        raise RequestError(f"request_time has {len(times)} times for {users} users; give one, or one per user")
    return {"request_time": np.asarray(times, np.int64)}

def is_single(ids) -> bool:
    return isinstance(ids, (str, bytes, int, np.integer))


def _strings(values) -> np.ndarray:
    return np.asarray(values, dtype=object)


def _padded(rows: list, pad, dtype) -> np.ndarray:
    """[len(rows), longest (at least 1)] the rows, padded at the end with ``pad``."""
    longest = max(1, max((len(row) for row in rows), default=0))
    out = np.full((len(rows), longest), pad, dtype=dtype)
    for number, row in enumerate(rows):
        out[number, :len(row)] = row
    return out


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


# Ages a request may give, in years.
AGES = range(1, 121)


def _known_value(name: str, value: str, known: Optional[Sequence[str]]) -> str:
    """``value`` as the model spells it (case aside), or a RequestError naming what it knows."""
    if known is None or not value:
        return value
    spelled = {v.lower(): v for v in known}.get(value.lower())
    if spelled is None:
        raise RequestError(f"unknown {name} {value!r}; this model knows {', '.join(sorted(known))}")
    return spelled


def user_feature_values(features: Optional[dict], known: Optional[dict] = None) -> dict:
    """The model's user-feature inputs (one value each) from what a caller knows of a new user.

    Args:
      features: any of age (years), gender ("M"/"F"), occupation, zip_code.
      known: the values the model was trained with, by input name (``user_gender`` ->
        ["F", "M"]), from the export's metadata; None: not checked. Gender and occupation
        must be known values (matched regardless of case); a zip prefix the model has not
        seen is allowed (it reads as unknown), as is any feature the model does not use.

    Returns:
      user_age, user_gender, user_occupation, user_zip strings ("" when not given).

    Raises:
      RequestError: an unknown feature name, an age outside 1..120, or a value the model
        does not know.
    """
    features = dict(features or {})
    unknown = set(features) - set(USER_FEATURE_ARGUMENTS)
    if unknown:
        raise RequestError(f"unknown user feature(s) {', '.join(sorted(unknown))}; "
                           f"use {', '.join(USER_FEATURE_ARGUMENTS)}")
    age = features.get("age")
    if age not in (None, ""):
        try:
            years = int(age)
        except (TypeError, ValueError):
            raise RequestError(f"age must be a whole number of years, got {age!r}") from None
        if years not in AGES or isinstance(age, bool):
            raise RequestError(f"age must be from {AGES.start} to {AGES.stop - 1} years, got {age!r}")
        age = str(age_bucket(years))
    known = known or {}
    return {
        "user_age": age or "",
        "user_gender": _known_value("gender", str(features.get("gender") or "").strip().upper(),
                                    known.get("user_gender")),
        "user_occupation": _known_value("occupation", str(features.get("occupation") or "").strip(),
                                        known.get("user_occupation")),
        "user_zip": zip_prefix(str(features.get("zip_code") or "")),
    }


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """What an export allows a request (from its metadata).

    Attributes:
      max_k: the most recommendations (and related movies) per call.
      num_candidates: the most retrieval candidates per user.
      max_exclusions: the most extra excluded movies per user.
      feature_values: user-feature input name -> the values the model was trained with
        (None: not known here, nothing is checked; exports before they were recorded).
    """

    max_k: int
    num_candidates: int
    max_exclusions: int
    feature_values: Optional[dict] = None
    requests: Optional[str] = None

    @classmethod
    def from_metadata(cls, metadata: dict) -> "RequestLimits":
        # The module caps max_k at its candidates, which a catalog smaller than the
        # configured number of candidates caps in turn.
        candidates = int(metadata["index"]["num_candidates"])
        return cls(min(int(metadata["serving"]["max_k"]), candidates), candidates,
                   int(metadata["serving"].get("max_exclusions", 0)), metadata["data"].get("feature_values"),
                   metadata["index"].get("requests", USER_ID_REQUESTS))

    def expect(self, requests: str) -> None:
        """RequestError unless the export answers this kind of request (None: not known here)."""
        if self.requests is not None and self.requests != requests:
            if requests == HISTORY_REQUESTS:
                raise RequestError("this export knows users by id (twostage recommend --user, or recommend in "
                                   "Python); an export whose requests carry the history is made with twostage "
                                   "train --request-history")
            raise RequestError("this export keeps no table of users: its requests carry each user's history "
                               "(twostage recommend --history, or recommend_from_history in Python)")

    def history_inputs(self, history, features=None) -> tuple[dict, bool]:
        """The inputs every signature of a history export takes (the histories and the user
        features), and whether one user was given.

        Args:
          history: one user's rated movies, as {movie id: rating} (None: that rating not
            known) or a list of movie ids (no rating known), or a list of such histories, one
            per user.
          features: what is known of the users (as ``recommend`` takes it): one dict shared
            by every user, or a list of dicts, one per user.
        """
        single = isinstance(history, dict) or (not is_single(history) and all(is_single(m) for m in history))
        users = [history] if single else list(history)
        ids, ratings = [], []
        for number, user in enumerate(users, 1):
            if is_single(user) or not hasattr(user, "__iter__"):
                raise RequestError(f"history {number} must be {{movie id: rating}} or a list of movie ids")
            pairs = list(user.items()) if isinstance(user, dict) else [(movie, None) for movie in user]
            movies = [str(movie.decode("utf-8") if isinstance(movie, bytes) else movie).strip() for movie, _ in pairs]
            if any(not movie for movie in movies):
                raise RequestError(f"empty movie id in history {number}")
            values = []
            for movie, rating in zip(movies, (rating for _, rating in pairs)):
                if rating is not None and (isinstance(rating, bool) or not isinstance(rating, (int, float, np.number))
                                           or not np.isfinite(rating)):
                    raise RequestError(f"history {number}: the rating of movie {movie} must be a number, got "
                                       f"{rating!r}")
                values.append(np.nan if rating is None else float(rating))
            ids.append(movies)
            ratings.append(values)
        rated = _padded(ratings, np.nan, np.float32)
        inputs = {
            "history_movie_ids": _padded(ids, "", object),
            # No rating at all: left out (its default); NaN marks a rating not known (TF
            # Serving's JSON reads NaN, past the JSON standard).
            "history_ratings": rated if np.isfinite(rated).any() else np.zeros((0, 0), np.float32)}
        inputs.update(self._feature_inputs(features, len(ids)))
        return inputs, single

    def _feature_inputs(self, features, users: int) -> dict:
        """The user-feature inputs: none given, one dict shared by every user, or one per user."""
        if features is None or isinstance(features, dict):
            rows = [user_feature_values(features, self.feature_values)] if features else []
        else:
            rows = [user_feature_values(row, self.feature_values) for row in features]
            if len(rows) != users:
                raise RequestError(f"features for {len(rows)} users but {users} histories; give one dict of "
                                   f"features shared by every user, or one per user")
        return {name: _strings([row[name] for row in rows]) for name in USER_FEATURES}

    def history_request(self, history, k: int, features=None, exclude=None, include_seen: bool = False,
                        request_time=None) -> tuple[dict, bool]:
        """The inputs of a history export's ``serving_default``, and whether one user was given.

        Args:
          history, features: as ``history_inputs``.
          k, exclude, include_seen, request_time: as ``recommend``.
        """
        inputs, single = self.history_inputs(history, features)
        users = len(inputs["history_movie_ids"])
        inputs.update({"k": self.k(k), "exclude_movie_ids": self.exclusions(exclude, users),
                       "include_seen": np.asarray(bool(include_seen)), **request_time_inputs(request_time, users)})
        return inputs, single

    def history_ratings(self, history, movie_ids, features=None) -> tuple[dict, bool]:
        """The inputs of a history export's ``predict_rating``: the movies to rate, one list
        per user (a single list for a single history), and whether one user was given."""
        inputs, single = self.history_inputs(history, features)
        rows = [movie_ids] if single else list(movie_ids)
        if single and (is_single(movie_ids) or not all(is_single(m) for m in movie_ids)):
            raise RequestError("movie_ids must be a list of movie ids for one history")
        if len(rows) != len(inputs["history_movie_ids"]):
            raise RequestError(f"{len(rows)} lists of movies to rate for {len(inputs['history_movie_ids'])} "
                               f"histories; give one list per history")
        inputs["movie_id"] = _padded([id_array(row, "movie").tolist() if len(row) else [] for row in rows], "",
                                     object)
        return inputs, single

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
        if any(not m.strip() for row in rows for m in row):
            raise RequestError("empty movie id in exclude")
        longest = max(len(row) for row in rows)
        if longest > self.max_exclusions:
            raise RequestError(f"at most {self.max_exclusions} excluded movies per user (fixed at export), "
                               f"got {longest}")
        return np.asarray([row + [""] * (longest - len(row)) for row in rows], dtype=object).reshape(len(rows),
                                                                                                     longest)

    def recommend(self, user_id: Ids, k: int, features: Optional[dict] = None, exclude=None,
                  include_seen: bool = False, retrieve: bool = False, request_time=None) -> dict:
        """The named inputs of the ``serving_default`` (or ``retrieve``) signature, every one
        given; with ``request_time``, those of ``recommend_at`` (``retrieve_at``): see ``timed``."""
        self.expect(USER_ID_REQUESTS)
        ids = id_array(user_id, "user")
        inputs = {"user_id": ids, "k": self.k(k, self.num_candidates if retrieve else self.max_k),
                  "exclude_movie_ids": self.exclusions(exclude, len(ids)),
                  "include_seen": np.asarray(bool(include_seen)), **request_time_inputs(request_time, len(ids))}
        values = user_feature_values(features, self.feature_values) if features else {}
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
