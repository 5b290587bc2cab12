"""Where exports live: TF Serving's DIR/<model_name>/<version>/ layout, and the metadata beside each version.

Reads folders and JSON only: no TensorFlow is imported.
"""

from __future__ import annotations

import json
import os
import re

from twostage.data.errors import TwostageError

METADATA_FILE = "twostage.json"  # under assets.extra/, which TF Serving leaves alone
_VERSION = re.compile(r"^\d+$")


def versions(model_dir: str) -> list[int]:
    """The complete version numbers under DIR/<model_name>, ascending."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(name) for name in os.listdir(model_dir)
                  if _VERSION.match(name) and os.path.isfile(os.path.join(model_dir, name, "saved_model.pb")))


class ModelError(TwostageError):
    """The exported model is missing, incomplete or cannot be loaded here."""


def model_names(export_root: str) -> list[str]:
    """The models under an export root (folders holding complete versions), sorted."""
    if not os.path.isdir(export_root):
        return []
    return [name for name in sorted(os.listdir(export_root)) if versions(os.path.join(export_root, name))]


def resolve_model_path(path: str) -> str:
    """The SavedModel folder that ``path`` means.

    Accepts a version folder, a model folder (DIR/<model_name>) or the export root given to
    ``--out`` holding one model; the newest complete version is picked.
    """
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if not os.path.isdir(path):
        raise ModelError(f"{path}: no such model folder")
    found = versions(path)
    if found:
        return os.path.join(path, str(found[-1]))
    models = model_names(path)
    if len(models) == 1:
        return resolve_model_path(os.path.join(path, models[0]))
    if models:
        raise ModelError(f"{path} holds several models ({', '.join(models)}); name one of them")
    raise ModelError(f"{path}: no exported model here (expected saved_model.pb, or <model>/<version>/ folders)")


def read_metadata(version_dir: str) -> dict:
    """The training facts saved with an export (assets.extra/twostage.json)."""
    try:
        with open(os.path.join(version_dir, "assets.extra", METADATA_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ModelError(f"{version_dir}: not a twostage export ({METADATA_FILE} unreadable: {err})") from None
