"""Serving an export with TensorFlow Serving: warm-up requests, models.config, and clients.

* ``warmup_records``: the ``assets.extra/tf_serving_warmup_requests`` file TF Serving replays
  when it loads a version, so the first real request does not pay for graph set-up.
* ``models_config``: TF Serving's model config for an export root, with the command line
  and a ``curl`` example.
* ``RestClient`` (standard library only) and ``GrpcClient`` (``tensorflow-serving-api``):
  ``recommend(...)`` and the other calls of ``Recommender``, against a running server.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Optional

import numpy as np

from twostage.data.errors import TwostageError
from twostage.serving.config import ServingConfig
from twostage.serving.module import PRUNE_FROM_USERS
from twostage.serving.requests import ModelClient, RequestError, RequestLimits

WARMUP_FILE = "tf_serving_warmup_requests"  # under assets.extra/, the name TF Serving looks for


class ServingError(TwostageError):
    """TF Serving could not be reached, or answered with an error."""


def warmup_requests(limits: RequestLimits, user_id: str, movie_id: str) -> list[tuple[str, dict]]:
    """(signature, inputs) pairs that exercise every serving path once.

    A known user, a batch (which rates only the candidates that can reach the top k), a user
    never seen (popular movies) and one with cold-start features, the candidates alone, both
    movie-to-movie calls and a rating.
    """
    k = min(10, limits.max_k)
    return [
        ("serving_default", limits.recommend(user_id, k)),
        ("serving_default", limits.recommend([user_id] * PRUNE_FROM_USERS, k)),
        ("serving_default", limits.recommend(["warmup-unknown-user"], k)),
        ("serving_default", limits.recommend(["warmup-unknown-user"], k, features={"age": 30, "gender": "F"},
                                             exclude=[movie_id])),
        ("retrieve", limits.recommend(user_id, k, retrieve=True)),
        ("similar_movies", limits.related(movie_id, k)),
        ("also_liked", limits.related(movie_id, k)),
        ("predict_rating", limits.ratings(user_id, movie_id)),
    ]


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


def models_config(export_root: str, model_names: list[str]) -> str:
    """TF Serving's ``--model_config_file`` text for the models under ``export_root``."""
    entries = "".join(
        f'  config {{\n    name: "{name}"\n    base_path: "{os.path.abspath(os.path.join(export_root, name))}"\n'
        f'    model_platform: "tensorflow"\n  }}\n' for name in model_names)
    return f"model_config_list {{\n{entries}}}\n"


def server_instructions(config_path: str, model_name: str, rest_port: int = 8501, grpc_port: int = 8500) -> str:
    """The ``tensorflow_model_server`` command line and a curl request for ``model_name``."""
    body = json.dumps({"signature_name": "serving_default", "inputs": {"user_id": ["42"], "k": 10}})
    return (f"tensorflow_model_server --port={grpc_port} --rest_api_port={rest_port} \\\n"
            f"    --model_config_file={os.path.abspath(config_path)} --enable_model_warmup=true\n\n"
            f"curl -s -X POST http://localhost:{rest_port}/v1/models/{model_name}:predict \\\n"
            f"    -d '{body}'\n")


def _default_limits() -> RequestLimits:
    config = ServingConfig()
    return RequestLimits(config.max_k, config.num_candidates, config.max_exclusions)


class RestClient(ModelClient):
    """A running TF Serving's REST API, with the standard library.

    Args:
      url: the server, e.g. ``http://localhost:8501``.
      model_name: the model's name in the server's config.
      limits: what the export allows (default: the ServingConfig defaults); requests past
        them are refused here, before they reach the server.
      version: a version number to pin, or None for the newest the server has.
      timeout: seconds per request.
    """

    def __init__(self, url: str = "http://localhost:8501", model_name: str = ServingConfig.model_name,
                 limits: Optional[RequestLimits] = None, version: Optional[int] = None, timeout: float = 10.0):
        super().__init__(limits or _default_limits())
        path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version else "")
        self.endpoint = url.rstrip("/") + path + ":predict"
        self.timeout = timeout

    def _call(self, signature: str, inputs: dict) -> dict:
        # Empty inputs are their signature defaults, and JSON cannot say the shape of an empty
        # matrix ([] reads as [0], not [0, 0]): leave them out and let the server fill them in.
        body = json.dumps({"signature_name": signature, "inputs": {
            name: np.asarray(value).tolist() for name, value in inputs.items() if np.asarray(value).size}})
        request = urllib.request.Request(self.endpoint, data=body.encode("utf-8"),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except ValueError:
                pass
            error = RequestError if err.code == 400 else ServingError
            raise error(f"{self.endpoint} ({signature}): HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            raise ServingError(f"cannot reach TF Serving at {self.endpoint}: {err}") from None
        outputs = answer["outputs"]
        if not isinstance(outputs, dict):  # a signature with one output answers with it alone
            outputs = {"rating": outputs}
        return outputs


class GrpcClient(ModelClient):
    """A running TF Serving's gRPC API (needs ``tensorflow-serving-api`` and ``grpcio``).

    Args:
      target: ``host:port`` of the gRPC endpoint, e.g. ``localhost:8500``.
      model_name, limits, version, timeout: as RestClient.
    """

    def __init__(self, target: str = "localhost:8500", model_name: str = ServingConfig.model_name,
                 limits: Optional[RequestLimits] = None, version: Optional[int] = None, timeout: float = 10.0):
        super().__init__(limits or _default_limits())
        try:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc
        except ImportError:
            raise ServingError("the gRPC client needs tensorflow-serving-api (pip install "
                               "tensorflow-serving-api~=2.20.0)") from None
        self._grpc = grpc
        self.target, self.model_name, self.version, self.timeout = target, model_name, version, timeout
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))

    def _call(self, signature: str, inputs: dict) -> dict:
        import tensorflow as tf

        request = predict_request(self.model_name, signature, inputs)
        if self.version:
            request.model_spec.version.value = self.version
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except self._grpc.RpcError as err:
            error = RequestError if err.code() == self._grpc.StatusCode.INVALID_ARGUMENT else ServingError
            raise error(f"{self.target} ({signature}): {err.code().name}: {err.details()}") from None
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
