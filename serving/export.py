"""Writing the SavedModel: TF Serving's DIR/<model_name>/<version>/ layout, atomically."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from typing import Optional

import tensorflow as tf

from twostage.data.errors import TwostageError
from twostage.serving.module import TwoStageModule
from twostage.serving.requests import RequestLimits
from twostage.serving.tf_serving import WARMUP_FILE, warmup_requests, write_warmup_file

log = logging.getLogger("twostage")

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
    except (tf.errors.OpError, OSError, ValueError) as err:
        raise ModelError(f"{version_dir}: cannot load the SavedModel: {str(err).splitlines()[0]}") from None
    return loaded, version_dir, metadata


def _without_keras_traces():
    """A scope in which saving skips what Keras adds for its own loader: a traced function per
    layer call of the towers inside the module (a sixth of an export's time). Nothing reads
    them: the module's own functions are what an export serves, and it is loaded with
    ``tf.saved_model.load``. tf-keras is pinned, so its private scope is too.
    """
    from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope

    return keras_option_scope(save_traces=False)


def export_saved_model(module: TwoStageModule, out_dir: str, model_name: str, metadata: dict,
                       uses_scann: bool, warmup: Optional[list] = None) -> str:
    """Saves ``module`` as the next version under ``out_dir/model_name``.

    The model is written to a temporary folder beside the versions and renamed into place
    only when complete, so a server watching the folder never loads half a model, and an
    existing version is never overwritten.

    Args:
      module: the stitched model.
      out_dir: the export root (what ``--out`` names).
      model_name: TF Serving's model name.
      metadata: JSON-able facts about training, saved as assets.extra/twostage.json.
      uses_scann: whether the graph holds ScaNN ops (they must be allowed when saving).
      warmup: (signature, inputs) requests for TF Serving's warm-up file
        (serving.tf_serving.warmup_requests), or None.

    Returns:
      The path of the new version.
    """
    model_dir = os.path.join(out_dir, model_name)
    os.makedirs(model_dir, exist_ok=True)
    start = time.perf_counter()
    staging = tempfile.mkdtemp(prefix=".export-", dir=model_dir)
    try:
        options = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"] if uses_scann else None)
        with _without_keras_traces():
            tf.saved_model.save(module, staging, signatures=module.signatures(), options=options)
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(extra, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2, sort_keys=True)
        if warmup:
            write_warmup_file(os.path.join(extra, WARMUP_FILE), model_name, warmup)
        version = (versions(model_dir) or [0])[-1] + 1
        target = os.path.join(model_dir, str(version))
        os.rename(staging, target)  # atomic on one filesystem; fails rather than overwrite
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("exported %s in %.1fs", target, time.perf_counter() - start)
    return target


def export_module(module: TwoStageModule, tables, out_dir: str, serving_config, metadata: dict,
                  index_kind: str) -> str:
    """Exports a stitched module with its metadata and TF Serving warm-up requests.

    Args:
      module: the stitched model.
      tables: its ServingTables (a known user and movie for the warm-up requests).
      out_dir: the export root.
      serving_config: the ServingConfig it was built with (model name, limits).
      metadata: the training facts to save with it (its "index" entry describes the index).
      index_kind: "scann" or "brute-force".

    Returns:
      The new version's folder.
    """
    limits = RequestLimits.from_metadata(metadata)
    warmup = warmup_requests(limits, str(tables.user_ids[0]), str(tables.movie_ids[0]))
    return export_saved_model(module, out_dir, serving_config.model_name, metadata,
                              uses_scann=index_kind == "scann", warmup=warmup)
