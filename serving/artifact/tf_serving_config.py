"""TF Serving's model config for an export root, with the server command line and a ``curl`` example."""

from __future__ import annotations

import json
import os


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
