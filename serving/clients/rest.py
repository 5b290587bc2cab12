"""A running TF Serving's REST API as a client with ``Recommender``'s calls, using the standard library only.

Importing this module imports no TensorFlow (a test checks it).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Optional

import numpy as np

from twostage.data.errors import TwostageError
from twostage.serving.config import ServingConfig
from twostage.serving.clients.base import ModelClient
from twostage.serving.requests import RequestError, RequestLimits


class ServingError(TwostageError):
    """TF Serving could not be reached, or answered with an error."""


def default_limits() -> RequestLimits:
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
        super().__init__(limits or default_limits())
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
