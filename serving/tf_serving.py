"""The TF Serving clients under their first import path (they live in twostage.serving.clients)."""

from twostage.serving.clients.grpc import GrpcClient
from twostage.serving.clients.rest import RestClient, ServingError

__all__ = ["GrpcClient", "RestClient", "ServingError"]
