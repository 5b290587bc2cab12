"""The Python client of an exported model: ``Recommender.load(path).recommend("42", k=10)``."""

from __future__ import annotations

import threading
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.python.distribute.distribute_utils import is_distributed_variable
from tensorflow.python.eager.polymorphic_function.concrete_function import ConcreteFunction
from tensorflow.python.framework.ops import EagerTensor

from twostage.data.features import USER_FEATURES
from twostage.serving.artifact.layout import ModelError, resolve_model_path
from twostage.serving.artifact.loading import load_export
from twostage.serving.graph.inputs import SIGNATURE_FUNCTIONS
from twostage.serving.clients.base import ModelClient
from twostage.serving.requests import (HISTORY_REQUESTS, USER_FEATURE_ARGUMENTS, USER_ID_REQUESTS, Ids, RequestError,
                                       RequestLimits, UnknownMovieError, id_array, timed)
from twostage.serving.responses import Candidate, Recommendation, RelatedMovie, string_array


__all__ = ["Recommender", "ModelError", "RequestError", "UnknownMovieError", "Recommendation", "Candidate",
           "RelatedMovie", "USER_FEATURE_ARGUMENTS", "resolve_model_path"]


def _host_tensor(value: np.ndarray, dtype: tf.DType) -> tf.Tensor:
    """``tf.constant(value, dtype)`` without its copy onto the default device.

    That copy is an op, a no-op on a CPU, yet it costs a measurable share of a one-user request
    (docs/serving.md); the call itself places its inputs where they are
    needed. TensorFlow is pinned, so the private constructor is too.
    """
    try:
        return EagerTensor(value, None, dtype.as_datatype_enum)
    except (TypeError, ValueError):
        return tf.constant(value, dtype=dtype)  # let TensorFlow say what is wrong with the value


def _plain(inputs: dict) -> bool:
    """Whether a ``serving_default`` request is the common one ``recommend_plain`` answers:
    one user, no user features, no extra exclusions, seen movies excluded."""
    return ("user_id" in inputs and inputs["user_id"].size == 1 and not inputs["include_seen"] and inputs["exclude_movie_ids"].size == 0
            and "request_time" not in inputs and not any(inputs[name].size for name in USER_FEATURES))


class Recommender(ModelClient):
    """An exported two-stage model, loaded in this process.

    Calls are thread-safe: the concrete functions are stateless and TensorFlow runs them
    concurrently.

    Args:
      loaded: the object ``tf.saved_model.load`` returned.
      path: where it was loaded from.
      metadata: the training facts saved with it.
    """

    def __init__(self, loaded, path: str, metadata: dict):
        super().__init__(RequestLimits.from_metadata(metadata))
        self._loaded = loaded
        self.path = path
        self.metadata = metadata
        self._catalog = None
        self._known_users = None
        self._catalog_rows = None  # movie id (bytes) -> catalog row, and the catalog with "" after it
        self._lock = threading.Lock()
        self._constants = {}  # dict.setdefault is atomic: safe from several threads
        self._signatures = {}
        # Exports older than recommend_plain answer every request with serving_default.
        self._plain_recommend = hasattr(loaded, "recommend_plain")

    def _call(self, signature: str, inputs: dict, left_as_tensors=()) -> dict:
        """The signature's outputs as numpy arrays (those named in ``left_as_tensors``: as
        the tensors they came as, for a caller that may not need them)."""
        if signature == "serving_default" and _plain(inputs) and self._plain_recommend:
            signature, inputs = "recommend_plain", {"user_id": inputs["user_id"], "k": inputs["k"]}
        specs, call = self._signature(signature)
        undeclared = sorted(set(inputs) - set(specs))
        if undeclared:
            raise RequestError(f"{self.path} ({signature}) takes no {', '.join(undeclared)}")
        tensors = {name: self._tensor(value, specs[name].dtype) for name, value in inputs.items()}
        out = call(tensors)
        return {name: value if name in left_as_tensors else value.numpy() for name, value in out.items()}

    def _function(self, signature: str):
        """The concrete function to run for a signature (or a module function without one,
        such as ``recommend_plain``), and its input specs by name.

        A SignatureDef's function wraps the module's own: calling that one directly skips a
        call whose inlined inputs are an identity op per captured variable. An export without it falls back to the signature.
        """
        restored = getattr(self._loaded, SIGNATURE_FUNCTIONS.get(signature, signature), None)
        concrete = getattr(restored, "concrete_functions", [])
        if len(concrete) == 1 and hasattr(concrete[0], "_arg_keywords"):
            function = concrete[0]
            return function, dict(zip(function._arg_keywords, function.structured_input_signature[0]))
        if signature not in self._loaded.signatures:
            raise RequestError(f"{self.path} has no {signature} signature: it was exported before it existed "
                               f"(train it again to use it)")
        function = self._loaded.signatures[signature]
        return function, function.structured_input_signature[1]

    def _signature(self, name: str):
        """(input specs by name, tensors by name -> outputs), made once per signature."""
        cached = self._signatures.get(name)
        if cached is not None:
            return cached
        function, specs = self._function(name)
        if (isinstance(function, ConcreteFunction) and hasattr(function, "_arg_keywords")
                and not any(map(is_distributed_variable, function.captured_inputs))):
            # Binding keyword arguments costs more than the whole graph of a one-user request,
            # and a restored function maps its captured variables to their handles on every
            # call, which for variables outside a distribution
            # strategy is the identity: call the flat function with its captures, taken once.
            # TensorFlow is pinned, so the private call is too.
            keywords, captures = list(function._arg_keywords), list(function.captured_inputs)

            def call(tensors, function=function):
                return ConcreteFunction._call_flat(function, [tensors[k] for k in keywords], captures)
        else:
            def call(tensors, function=function):
                return function(**tensors)
        return self._signatures.setdefault(name, (specs, call))

    def _tensor(self, value, dtype) -> tf.Tensor:
        """A request input as a tensor; the usual empty and scalar ones are made once and reused."""
        value = np.asarray(value)
        if value.size <= 1 and value.dtype != object:
            key = (value.shape, value.dtype.str, value.item() if value.size else None, dtype.name)
        elif value.size == 0:
            key = (value.shape, dtype.name)
        else:
            return _host_tensor(value, dtype)
        cached = self._constants.get(key)
        if cached is None:
            cached = self._constants.setdefault(key, _host_tensor(value, dtype))
        return cached

    @classmethod
    def load(cls, path: str) -> "Recommender":
        """Loads the newest version under ``path`` (see :func:`resolve_model_path`).

        ScaNN's TensorFlow ops are registered first when the model holds a ScaNN index.
        """
        loaded, version_dir, metadata = load_export(path)
        return cls(loaded, version_dir, metadata)

    def recommend_arrays(self, user_ids: Sequence[str], k: int = 10, exclude: Optional[Sequence] = None,
                         include_seen: bool = False, request_time=None) -> dict:
        """Batch recommendations as numpy arrays ([users, k] each), for bulk scoring."""
        self.limits.expect(USER_ID_REQUESTS)
        inputs = self.limits.recommend(user_ids, k, None, exclude, include_seen, request_time=request_time)
        arrays = self._call(timed("serving_default", inputs), inputs, left_as_tensors=("title",))
        arrays["movie_id"], arrays["title"] = self._movie_strings(arrays["movie_id"], arrays["title"])
        return arrays

    def _movie_strings(self, movie_ids: np.ndarray, titles: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The model's movie_id and title outputs (UTF-8 bytes, "" past the movies left) as str
        arrays, looked up in the catalog: one dict lookup per movie instead of decoding two
        strings (a tenth of a 1,000-user batch call). The titles are only read if an id is
        not the catalog's."""
        if self._catalog_rows is None:
            ids, names = self.catalog()
            rows = {movie.encode("utf-8"): row for row, movie in enumerate(ids)} | {b"": len(ids)}
            self._catalog_rows = (rows, np.append(ids, ""), np.append(names, ""))  # one assignment: thread-safe
        rows, ids, names = self._catalog_rows
        try:
            index = np.fromiter(map(rows.__getitem__, movie_ids.ravel().tolist()), np.int64, movie_ids.size)
        except KeyError:  # not the catalog's (a model whose outputs do not match it): decode them
            return string_array(movie_ids), string_array(titles.numpy())
        return ids[index].reshape(movie_ids.shape), names[index].reshape(movie_ids.shape)

    def retrieval_scores(self, user_ids: Ids) -> np.ndarray:
        """Exact two-tower scores, [users, catalog size], in :meth:`catalog` order."""
        self.limits.expect(USER_ID_REQUESTS)
        return self._call("retrieval_scores", {"user_id": id_array(user_ids, "user")})["scores"]

    def retrieval_scores_from_history(self, history, features=None) -> np.ndarray:
        """Exact two-tower scores, [histories, catalog size], of users given by their history
        (an export whose requests carry it; arguments as ``recommend_from_history``)."""
        self.limits.expect(HISTORY_REQUESTS)
        inputs, _ = self.limits.history_inputs(history, features)
        return self._call("retrieval_scores", inputs)["scores"]

    def catalog(self) -> tuple[np.ndarray, np.ndarray]:
        """(movie ids, titles) of every movie the model can recommend."""
        with self._lock:
            if self._catalog is None:
                out = self._loaded.signatures["catalog"]()
                self._catalog = (string_array(out["movie_id"].numpy()), string_array(out["title"].numpy()))
        return self._catalog

    def known_users(self) -> np.ndarray:
        """The ids of the users the model was trained with."""
        self.limits.expect(USER_ID_REQUESTS)
        with self._lock:
            if self._known_users is None:
                self._known_users = string_array(self._loaded.user_ids.numpy())
        return self._known_users

    def is_known_user(self, user_ids: Ids) -> np.ndarray:
        """[n] whether each user was in the model's training data (else: cold start or popular movies)."""
        return np.isin(id_array(user_ids, "user"), self.known_users())

    def training_history(self, user_ids: Sequence[str]) -> list[list[str]]:
        """Each user's training movies (what recommendations exclude)."""
        self.limits.expect(USER_ID_REQUESTS)
        out = self._call("training_history", {"user_id": id_array(user_ids, "user")})
        ids = string_array(out["movie_id"])
        return [row[:n].tolist() for row, n in zip(ids, out["length"])]
