"""A stand-in for TensorFlow Serving's predict API, for testing the clients on this machine.

It does what TF Serving's PredictionService does with a SavedModel signature: inputs a
request leaves out take the SignatureDef's defaults, the signature runs, its outputs come
back (REST: columnar JSON, a lone output unwrapped; gRPC: TensorProtos). Bound to
127.0.0.1 on a free port; stop() shuts it down.
"""

import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf

from twostage.serving.artifact.loading import read_meta_graph


class SavedModelRunner:
    def __init__(self, version_dir: str):
        import scann  # noqa: F401  the test exports may hold a ScaNN index

        self.model = tf.saved_model.load(version_dir)
        self.signatures = read_meta_graph(version_dir).signature_def

    def run(self, signature: str, inputs: dict) -> dict:
        definition = self.signatures[signature]
        feed = {}
        for name, info in definition.inputs.items():
            if name in inputs:
                feed[name] = tf.constant(inputs[name], dtype=tf.dtypes.as_dtype(info.dtype))
            elif name in definition.defaults:
                feed[name] = tf.constant(tf.make_ndarray(definition.defaults[name]))
            else:
                raise ValueError(f"Signature input alias: {name} not found in request and no default value provided")
        return {name: value.numpy() for name, value in self.model.signatures[signature](**feed).items()}


def _json_ready(value: np.ndarray):
    if value.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(value).tolist() if value.size else []
    return value.tolist()


class FakeRestServer:
    def __init__(self, version_dir: str, model_name: str):
        runner = SavedModelRunner(version_dir)
        prefix = f"/v1/models/{model_name}"

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not (self.path.startswith(prefix) and self.path.endswith(":predict")):
                    return self._answer(404, {"error": f"Servable not found for request: {self.path}"})
                try:
                    outputs = runner.run(body.get("signature_name", "serving_default"), body["inputs"])
                except Exception as err:  # TF Serving answers 400 with the message
                    return self._answer(400, {"error": str(err)})
                outputs = {name: _json_ready(value) for name, value in outputs.items()}
                self._answer(200, {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs})

            def _answer(self, code, payload):
                data = json.dumps(payload).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


class FakeGrpcServer:
    def __init__(self, version_dir: str, model_name: str):
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        runner = SavedModelRunner(version_dir)

        class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):
                if request.model_spec.name != model_name:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found: {request.model_spec.name}")
                inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
                try:
                    outputs = runner.run(request.model_spec.signature_name or "serving_default", inputs)
                except Exception as err:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err).splitlines()[0])
                response = predict_pb2.PredictResponse()
                for name, value in outputs.items():
                    response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
                return response

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), self.server)
        self.target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def stop(self):
        self.server.stop(grace=None)
