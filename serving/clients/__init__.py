"""The clients of an exported model, all with the same calls: ``Recommender`` (in process),
``RestClient`` (TF Serving's REST API, standard library only) and ``GrpcClient``.

Each is imported when first asked for, so that ``from twostage.serving.clients import
RestClient`` imports no TensorFlow.
"""

_CLIENTS = {"Recommender": "recommender", "RestClient": "rest", "GrpcClient": "grpc", "ServingError": "rest"}

__all__ = sorted(_CLIENTS)


def __getattr__(name):
    if name in _CLIENTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_CLIENTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
