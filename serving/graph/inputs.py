"""The serving signatures' inputs: their specs and defaults, and a request's users as retrieval sees them."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from twostage.data.features import USER_FEATURES

DEFAULT_K = 10
# Signature name -> the module's tf.function it serves (also reachable on the loaded object).
SIGNATURE_FUNCTIONS = {
    "serving_default": "recommend",
    "retrieve": "retrieve",
    "recommend_at": "recommend_at",
    "retrieve_at": "retrieve_at",
    "similar_movies": "similar_movies",
    "also_liked": "also_liked",
    "retrieval_scores": "retrieval_scores",
    "predict_rating": "predict_rating",
    "catalog": "catalog",
    "training_history": "training_history",
}


def string_spec(name: str, rank: int = 1) -> tf.TensorSpec:
    """A named string input of any size along each of ``rank`` axes."""
    return tf.TensorSpec([None] * rank, tf.string, name=name)


K_SPEC = tf.TensorSpec([], tf.int32, name="k")
# Optional inputs carry defaults in the SignatureDef: TF Serving fills in what a request
# leaves out. An empty feature means "not given"; one value is shared by every user.
REQUEST_SIGNATURE = [string_spec("user_id"), K_SPEC] + [string_spec(name) for name in USER_FEATURES] + [
    string_spec("exclude_movie_ids", rank=2), tf.TensorSpec([], tf.bool, name="include_seen")]
# The "_at" signatures: a request's inputs and, second and required, its time (seconds since
# 1970; one shared or one per user). Their own signatures, so that today's keep their inputs:
# a caller that passes every input of a signature (Python's loaded.signatures do) still can.
REQUEST_TIME_SPEC = tf.TensorSpec([None], tf.int64, name="request_time")
TIMED_REQUEST_SIGNATURE = REQUEST_SIGNATURE[:1] + [REQUEST_TIME_SPEC] + REQUEST_SIGNATURE[1:]
NO_VALUES = tf.constant([], tf.string)
NO_EXCLUSIONS = tf.zeros([0, 0], tf.string)
FALSE = tf.constant(False)


@dataclasses.dataclass
class Request:
    """A request's users as retrieval sees them (tensors, one row per user).

    Attributes:
      user_id, rows: the ids and their user rows (data.features.UNKNOWN_USER_ROW: never seen).
      queries: [batch, dim] query embeddings.
      personal: [batch, 1] whether the user gets personal results (else popular movies).
      excluded: [batch, catalog] bool, what the user must not get.
      counts: [batch] how many movies that is, at most.
    """

    user_id: tf.Tensor
    rows: tf.Tensor
    queries: tf.Tensor
    personal: tf.Tensor
    excluded: tf.Tensor
    counts: tf.Tensor

    def gather(self, indices) -> Request:
        """The request of the users at ``indices``."""
        return Request(*(tf.gather(getattr(self, field.name), indices) for field in dataclasses.fields(self)))


def per_user(values: tf.Tensor, batch: tf.Tensor, what: str, missing=None) -> tf.Tensor:
    """Request values for each user: none given -> ``missing`` (default: empty / zero), one ->
    shared, else one per user."""
    count = tf.shape(values)[0]
    check = tf.debugging.Assert((count <= 1) | tf.equal(count, batch),
                                [f"{what} must have no rows, one row, or one per user_id"])
    with tf.control_dependencies([check]):
        # Row 0 of the padded values is the shared (or empty) row; no tf.cond, which costs
        # a function call per request.
        shape = tf.concat([[1], tf.shape(values)[1:]], 0)
        fill = tf.zeros(shape, values.dtype) if missing is None else tf.fill(shape, tf.constant(missing, values.dtype))
        padded = tf.concat([values, fill], 0)
        one_per_user = tf.cast(tf.equal(count, batch), tf.int32)
        return tf.gather(padded, tf.range(batch) * one_per_user)
