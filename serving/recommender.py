"""The Python client of an exported model: ``Recommender.load(path).recommend("42", k=10)``."""

from __future__ import annotations

import json
import os
import threading
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from twostage.data.errors import TwostageError
from twostage.serving.export import METADATA_FILE, versions
from twostage.serving.requests import (USER_FEATURE_ARGUMENTS, Candidate, Ids, Recommendation,
                                       RelatedMovie, RequestError, RequestLimits, UnknownMovieError, candidates, id_array,
                                       one_or_all, recommendations, related_movies)


__all__ = ["Recommender", "ModelError", "RequestError", "UnknownMovieError", "Recommendation", "Candidate",
           "RelatedMovie", "USER_FEATURE_ARGUMENTS", "resolve_model_path"]


class ModelError(TwostageError):
    """The exported model is missing, incomplete or cannot be loaded here."""


def _string_array(values: np.ndarray) -> np.ndarray:
    """UTF-8 bytes from TensorFlow -> a numpy str array of the same shape."""
    return np.char.decode(values.astype(bytes), "utf-8") if values.size else values.astype(str)


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
        self.limits = RequestLimits.from_metadata(metadata)
        self.max_k = self.limits.max_k
        self._catalog = None
        self._lock = threading.Lock()

    def _call(self, signature: str, inputs: dict) -> dict:
        out = self._loaded.signatures[signature](**{name: tf.constant(value) for name, value in inputs.items()})
        return {name: value.numpy() for name, value in out.items()}

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

    def recommend(self, user_id: Ids, k: int = 10, features: Optional[dict] = None, exclude: Optional[Sequence] = None,
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
        results = recommendations(self._call("serving_default", self.limits.recommend(
            user_id, k, features, exclude, include_seen)))
        return one_or_all(user_id, results)

    def retrieve(self, user_id: Ids, k: int = 10, features: Optional[dict] = None, exclude: Optional[Sequence] = None,
                 include_seen: bool = False):
        """Retrieval's candidates alone, in retrieval order (k up to the candidates per user).

        Same arguments as :meth:`recommend`; returns Candidate lists.
        """
        results = candidates(self._call("retrieve", self.limits.recommend(user_id, k, features, exclude,
                                                                          include_seen, retrieve=True)))
        return one_or_all(user_id, results)

    def recommend_arrays(self, user_ids: Sequence[str], k: int = 10, exclude: Optional[Sequence] = None,
                         include_seen: bool = False) -> dict:
        """Batch recommendations as numpy arrays ([users, k] each), for bulk scoring."""
        arrays = self._call("serving_default", self.limits.recommend(user_ids, k, None, exclude, include_seen))
        for name in ("movie_id", "title"):
            arrays[name] = _string_array(arrays[name])
        return arrays

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
        return self._call("predict_rating", self.limits.ratings(user_ids, movie_ids))["rating"]

    def retrieval_scores(self, user_ids: Ids) -> np.ndarray:
        """Exact two-tower scores, [users, catalog size], in :meth:`catalog` order."""
        return self._call("retrieval_scores", {"user_id": id_array(user_ids, "user")})["scores"]

    def catalog(self) -> tuple[np.ndarray, np.ndarray]:
        """(movie ids, titles) of every movie the model can recommend."""
        with self._lock:
            if self._catalog is None:
                out = self._loaded.signatures["catalog"]()
                self._catalog = (_string_array(out["movie_id"].numpy()), _string_array(out["title"].numpy()))
        return self._catalog

    def training_history(self, user_ids: Sequence[str]) -> list[list[str]]:
        """Each user's training movies (what recommendations exclude)."""
        out = self._call("training_history", {"user_id": id_array(user_ids, "user")})
        ids = _string_array(out["movie_id"])
        return [row[:n].tolist() for row, n in zip(ids, out["length"])]
