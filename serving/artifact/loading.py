"""Loading an export: its graph read without loading, its custom ops registered, the SavedModel loaded."""

from __future__ import annotations

import os

import tensorflow as tf

from twostage.serving.artifact.layout import ModelError, read_metadata, resolve_model_path


def read_meta_graph(version_dir: str):
    """The export's serving MetaGraphDef (graph, function library, SignatureDefs with their
    input defaults), read from saved_model.pb without loading the model."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel()
    path = os.path.join(version_dir, "saved_model.pb")
    try:
        with open(path, "rb") as f:
            model.ParseFromString(f.read())
    except (OSError, DecodeError) as err:
        raise ModelError(f"{path}: cannot read the SavedModel ({err})") from None
    return model.meta_graphs[0]


def register_custom_ops(version_dir: str) -> dict:
    """Registers the ops outside TensorFlow that a version's graph uses (ScaNN's, when it
    holds a ScaNN index), as any loader of it must first.

    Returns:
      the version's metadata.
    """
    metadata = read_metadata(version_dir)
    if metadata.get("index", {}).get("kind") == "scann":
        try:
            import scann  # noqa: F401  registers the Scann>... ops the graph uses
        except ImportError:
            raise ModelError(f"{version_dir} holds a ScaNN index: install scann[tf]==1.4.2 to load it, "
                             "or export with --index brute-force") from None
    return metadata


def load_export(path: str):
    """Loads the newest version under ``path`` (see :func:`resolve_model_path`).

    ScaNN's TensorFlow ops are registered first when the model holds a ScaNN index.

    Returns:
      (the loaded SavedModel object, its version folder, its metadata).
    """
    version_dir = resolve_model_path(path)
    metadata = register_custom_ops(version_dir)
    try:
        loaded = tf.saved_model.load(version_dir)
    except Exception as err:  # noqa: BLE001  a damaged file fails in many ways (IndexError for truncated variables)
        detail = (str(err).splitlines() or [type(err).__name__])[0]
        raise ModelError(f"{version_dir}: cannot load the SavedModel (damaged or incomplete?): {detail}") from None
    return loaded, version_dir, metadata
