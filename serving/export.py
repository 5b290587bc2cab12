"""Writing the SavedModel: TF Serving's DIR/<model_name>/<version>/ layout, atomically."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time

import tensorflow as tf

from twostage.serving.module import TwoStageModule

log = logging.getLogger("twostage")

METADATA_FILE = "twostage.json"  # under assets.extra/, which TF Serving leaves alone
_VERSION = re.compile(r"^\d+$")


def versions(model_dir: str) -> list[int]:
    """The complete version numbers under DIR/<model_name>, ascending."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(name) for name in os.listdir(model_dir)
                  if _VERSION.match(name) and os.path.isfile(os.path.join(model_dir, name, "saved_model.pb")))


def export_saved_model(module: TwoStageModule, out_dir: str, model_name: str, metadata: dict,
                       uses_scann: bool) -> str:
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

    Returns:
      The path of the new version.
    """
    model_dir = os.path.join(out_dir, model_name)
    os.makedirs(model_dir, exist_ok=True)
    start = time.perf_counter()
    staging = tempfile.mkdtemp(prefix=".export-", dir=model_dir)
    try:
        options = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"] if uses_scann else None)
        tf.saved_model.save(module, staging, signatures=module.signatures(), options=options)
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(extra, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2, sort_keys=True)
        version = (versions(model_dir) or [0])[-1] + 1
        target = os.path.join(model_dir, str(version))
        os.rename(staging, target)  # atomic on one filesystem; fails rather than overwrite
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("exported %s in %.1fs", target, time.perf_counter() - start)
    return target
