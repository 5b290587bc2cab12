"""TF Serving's warm-up file: requests it replays when it loads a version, so the first real
request does not pay for graph set-up (``assets.extra/tf_serving_warmup_requests``)."""

from __future__ import annotations

import numpy as np

from twostage.serving.graph.module import PRUNE_FROM_USERS
from twostage.serving.requests import RequestLimits

WARMUP_FILE = "tf_serving_warmup_requests"  # under assets.extra/, the name TF Serving looks for
# The "_at" signatures' warm-up time: any will do (2001-09-09).
WARMUP_TIME = 1_000_000_000


def warmup_requests(limits: RequestLimits, user_id: str, movie_id: str) -> list[tuple[str, dict]]:
    """(signature, inputs) pairs that exercise every serving path once.

    A known user, a batch (which rates only the candidates that can reach the top k), a user
    never seen (popular movies) and one with cold-start features, the candidates alone, both
    as of a time, both movie-to-movie calls and a rating.
    """
    k = min(10, limits.max_k)
    return [
        ("serving_default", limits.recommend(user_id, k)),
        ("serving_default", limits.recommend([user_id] * PRUNE_FROM_USERS, k)),
        ("serving_default", limits.recommend(["warmup-unknown-user"], k)),
        ("serving_default", limits.recommend(["warmup-unknown-user"], k, features={"age": 30, "gender": "F"},
                                             exclude=[movie_id])),
        ("retrieve", limits.recommend(user_id, k, retrieve=True)),
        ("recommend_at", limits.recommend(user_id, k, request_time=WARMUP_TIME)),
        ("retrieve_at", limits.recommend(user_id, k, retrieve=True, request_time=WARMUP_TIME)),
        ("similar_movies", limits.related(movie_id, k)),
        ("also_liked", limits.related(movie_id, k)),
        ("predict_rating", limits.ratings(user_id, movie_id)),
    ]


def history_warmup_requests(limits: RequestLimits, movie_id: str) -> list[tuple[str, dict]]:
    """The warm-up requests of an export whose requests carry the history: one user with a
    rated movie, a batch, one without ratings, one with nothing (popular movies)."""
    k = min(10, limits.max_k)
    return [("serving_default", limits.history_request(history, k)[0])
            for history in ({movie_id: 4.0}, [{movie_id: 4.0}] * PRUNE_FROM_USERS, [movie_id], [[]])] + [
        ("recommend_at", limits.history_request({movie_id: 4.0}, k, request_time=WARMUP_TIME)[0]), ("catalog", {})]


def _tensor_proto(value: np.ndarray):
    import tensorflow as tf

    value = np.asarray(value)
    return tf.make_tensor_proto(value, dtype=tf.string if value.dtype == object else None)


def predict_request(model_name: str, signature: str, inputs: dict):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest``."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(_tensor_proto(value))
    return request


def write_warmup_file(path: str, model_name: str, requests: list[tuple[str, dict]]):
    """Writes the requests as TF Serving's warm-up file (a TFRecord of PredictionLog)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=predict_request(model_name, signature, inputs)))
            writer.write(log.SerializeToString())
