"""Writing the SavedModel: TF Serving's DIR/<model_name>/<version>/ layout, atomically."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from typing import Optional

import tensorflow as tf

from twostage.serving.artifact.layout import (METADATA_FILE, publish_permissions, remove_stale_staging, staging_prefix,
                                              versions)
from twostage.serving.artifact.warmup import WARMUP_FILE, history_warmup_requests, warmup_requests, write_warmup_file
from twostage.serving.requests import RequestLimits

log = logging.getLogger("twostage")


def _without_keras_traces():
    """A scope in which saving skips what Keras adds for its own loader: a traced function per
    layer call of the towers inside the module (a sixth of an export's time). Nothing reads
    them: the module's own functions are what an export serves, and it is loaded with
    ``tf.saved_model.load``. tf-keras is pinned, so its private scope is too.
    """
    from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope

    return keras_option_scope(save_traces=False)


def export_saved_model(module, out_dir: str, model_name: str, metadata: dict,
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
        (serving.artifact.warmup.warmup_requests), or None.

    Returns:
      The path of the new version.
    """
    model_dir = os.path.join(out_dir, model_name)
    os.makedirs(model_dir, mode=0o755, exist_ok=True)
    for path in remove_stale_staging(model_dir):
        log.info("removed %s, left behind by an export that was killed", path)
    start = time.perf_counter()
    staging = tempfile.mkdtemp(prefix=staging_prefix(), dir=model_dir)
    log.info("export: writing the SavedModel (tracing its signatures, saving its variables)")
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
        publish_permissions(staging)
        version = (versions(model_dir) or [0])[-1] + 1
        target = os.path.join(model_dir, str(version))
        os.rename(staging, target)  # atomic on one filesystem; fails rather than overwrite
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("exported %s in %.1fs", target, time.perf_counter() - start)
    return target


def export_module(module, tables, out_dir: str, serving_config, metadata: dict, index_kind: str,
                  movie_id: str) -> str:
    """Exports a stitched module with its metadata and TF Serving warm-up requests.

    Args:
      module: the stitched model (TwoStageModule, or HistoryRequestModule).
      tables: a TwoStageModule's ServingTables (a known user for the warm-up requests);
        None for a HistoryRequestModule.
      out_dir: the export root.
      serving_config: the ServingConfig it was built with (model name, limits).
      metadata: the training facts to save with it (its "index" entry describes the index).
      index_kind: "scann" or "brute-force".
      movie_id: a catalog movie for the warm-up requests.

    Returns:
      The new version's folder.
    """
    limits = RequestLimits.from_metadata(metadata)
    warmup = (history_warmup_requests(limits, movie_id) if tables is None
              else warmup_requests(limits, str(tables.user_ids[0]), movie_id))
    return export_saved_model(module, out_dir, serving_config.model_name, metadata,
                              uses_scann=index_kind == "scann", warmup=warmup)
