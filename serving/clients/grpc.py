"""A running TF Serving's gRPC API as a client with ``Recommender``'s calls (needs ``tensorflow-serving-api``)."""

from __future__ import annotations

from typing import Optional

from twostage.serving.artifact.warmup import predict_request
from twostage.serving.clients.rest import ServingError, default_limits
from twostage.serving.config import ServingConfig
from twostage.serving.clients.base import ModelClient
from twostage.serving.requests import RequestError, RequestLimits


class GrpcClient(ModelClient):
    """A running TF Serving's gRPC API (needs ``tensorflow-serving-api`` and ``grpcio``).

    Args:
      target: ``host:port`` of the gRPC endpoint, e.g. ``localhost:8500``.
      model_name, limits, version, timeout: as RestClient.
    """

    def __init__(self, target: str = "localhost:8500", model_name: str = ServingConfig.model_name,
                 limits: Optional[RequestLimits] = None, version: Optional[int] = None, timeout: float = 10.0):
        super().__init__(limits or default_limits())
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
