"""What every client of an exported model shares: the calls, validated and answered the same way."""

from __future__ import annotations

from typing import Optional

import numpy as np

from twostage.serving.requests import (HISTORY_REQUESTS, USER_ID_REQUESTS, Ids, RequestLimits, UnknownMovieError,
                                       timed)
from twostage.serving.responses import candidates, one_or_all, recommendations, related_movies


def _refuse_unknown_movies(movie_ids: np.ndarray, known: np.ndarray) -> None:
    """UnknownMovieError naming the movies of ``movie_ids`` not ``known`` to the catalog (up to five)."""
    if not known.all():
        unknown = sorted(set(movie_ids[~known].tolist()))
        raise UnknownMovieError(f"movie(s) {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} "
                                f"not in this model's catalog")


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
                  include_seen: bool = False, request_time=None):
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
          request_time: recommend as of this time (seconds since 1970 or an aware
            datetime; one, or one per user): movies first rated in training after it are left
            out. None: now, every movie.

        Returns:
          [Recommendation, ...] best first; one such list per user when given a sequence.
        """
        inputs = self.limits.recommend(user_id, k, features, exclude, include_seen, request_time=request_time)
        return one_or_all(user_id, recommendations(self._call(timed("serving_default", inputs), inputs)))

    def recommend_from_history(self, history, k: int = 10, features: Optional[dict] = None, exclude=None,
                               include_seen: bool = False, request_time=None):
        """Top-k movies for users given by the movies they rated, from an export whose
        requests carry the history (``twostage train --request-history``).

        The user need not be known to the model: the query is encoded from the history (and
        ``features``), the rating model pools it, and its movies never come back unless
        ``include_seen``.

        Args:
          history: one user's history, {movie id: rating} (or a list of movie ids when the
            ratings are not known), or a list of histories, one per user.
          k, exclude, include_seen, request_time: as :meth:`recommend`.
          features: as :meth:`recommend`: one dict shared by every user of the call, or a
            list of dicts, one per history.

        Returns:
          [Recommendation, ...] best first; one such list per user when given several.
        """
        self.limits.expect(HISTORY_REQUESTS)
        inputs, single = self.limits.history_request(history, k, features, exclude, include_seen, request_time)
        results = recommendations(self._call(timed("serving_default", inputs), inputs))
        return results[0] if single else results

    def predict_ratings_from_history(self, history, movie_ids, features=None):
        """Predicted ratings of movies for users given by the movies they rated (an export
        whose requests carry the history).

        Args:
          history, features: as :meth:`recommend_from_history`.
          movie_ids: the movies to rate: a list for one history, else one list per history.

        Returns:
          [m] float32 ratings for one history, else one such array per history.

        Raises:
          UnknownMovieError: a movie id is not in the model's catalog.
        """
        self.limits.expect(HISTORY_REQUESTS)
        inputs, single = self.limits.history_ratings(history, movie_ids, features)
        outputs = self._call("predict_rating", inputs)
        wanted = inputs["movie_id"] != ""
        _refuse_unknown_movies(inputs["movie_id"][wanted], np.asarray(outputs["known_movie"], bool)[wanted])
        rating = np.asarray(outputs["rating"], np.float32)
        rows = [row[mask] for row, mask in zip(rating, wanted)]
        return rows[0] if single else rows

    def retrieve(self, user_id: Ids, k: int = 10, features: Optional[dict] = None, exclude=None,
                 include_seen: bool = False, request_time=None):
        """Retrieval's candidates alone, in retrieval order (k up to the candidates per user).

        Same arguments as :meth:`recommend`; returns Candidate lists.
        """
        inputs = self.limits.recommend(user_id, k, features, exclude, include_seen, retrieve=True,
                                       request_time=request_time)
        return one_or_all(user_id, candidates(self._call(timed("retrieve", inputs), inputs)))

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
        self.limits.expect(USER_ID_REQUESTS)
        return one_or_all(movie_id, related_movies(self._call("similar_movies", self.limits.related(movie_id, k))))

    def also_liked(self, movie_id: Ids, k: int = 10):
        """People who liked this also liked: what the movie's fans (users who rated it highly
        in training) would be recommended together. Same shape as :meth:`similar_movies`.
        """
        self.limits.expect(USER_ID_REQUESTS)
        return one_or_all(movie_id, related_movies(self._call("also_liked", self.limits.related(movie_id, k))))

    def predict_rating(self, user_ids: Ids, movie_ids: Ids) -> np.ndarray:
        """Predicted rating of each (user_ids[i], movie_ids[i]) pair.

        Raises:
          UnknownMovieError: a movie id is not in the model's catalog (as for similar_movies).
        """
        self.limits.expect(USER_ID_REQUESTS)
        inputs = self.limits.ratings(user_ids, movie_ids)
        outputs = self._call("predict_rating", inputs)
        known = outputs.get("known_movie")  # exports before it was an output do not say
        if known is not None:
            _refuse_unknown_movies(inputs["movie_id"], np.asarray(known, bool).reshape(-1))
        return np.asarray(outputs["rating"], np.float32)
