"""The results every client of an exported model returns, parsed from a signature's outputs."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from twostage.serving.requests import UnknownMovieError, is_single


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
