"""Where exports live: TF Serving's DIR/<model_name>/<version>/ layout, and the metadata beside each version.

Reads folders and JSON only: no TensorFlow is imported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

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


# A version being written lives in a hidden folder named after the writing process, so the
# next export can tell a folder a killed export left behind from one still being written.
STAGING_PREFIX = ".export-"
_STAGING = re.compile(r"^\.export-(\d+)-")
# Staging folders of exports from before the process id was in the name: stale after a day.
_LEGACY_STAGING_SECONDS = 24 * 3600


def staging_prefix() -> str:
    """The name prefix of this process's staging folders."""
    return f"{STAGING_PREFIX}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(model_dir: str) -> list[str]:
    """Removes the staging folders under ``model_dir`` that no live process is writing (what
    an export killed mid-way left behind).

    Returns:
      The folders removed.
    """
    removed = []
    if not os.path.isdir(model_dir):
        return removed
    for name in os.listdir(model_dir):
        if not name.startswith(STAGING_PREFIX):
            continue
        path = os.path.join(model_dir, name)
        match = _STAGING.match(name)
        stale = (not _alive(int(match.group(1)))) if match else (
            time.time() - os.path.getmtime(path) > _LEGACY_STAGING_SECONDS)
        if stale and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def publish_permissions(folder: str) -> None:
    """Makes a version readable by every user (folders 0755, files 0644), as a model registry
    writes it: a TF Serving process running as another user must be able to load it."""
    os.chmod(folder, 0o755)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def check_output_folder(path: str, what: str = "--out") -> None:
    """Raises ModelError, before any work starts, when ``path`` cannot be (or become) a folder
    this process writes into: a file in the way, or no permission."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ModelError(f"{what} {path} is a file, not a folder: give a folder (new or existing)")
    existing = os.path.abspath(path)
    while not os.path.isdir(existing):
        if os.path.exists(existing):
            raise ModelError(f"{what} {path} cannot be created: {existing} is a file")
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ModelError(f"{what} {path}: cannot write under {existing} (permission denied)")


def check_export_root(out_dir: str, model_name: str) -> None:
    """Raises ModelError, before any work starts, when a version could not be written under
    ``out_dir/model_name``: a file in the way, or a folder this process cannot write."""
    check_output_folder(out_dir)
    check_output_folder(os.path.join(out_dir, model_name), "--out")


def check_index_over_newest(out_dir: str, model_name: str, index_kind: str, index_chosen: bool) -> None:
    """Refuses, unless the index was chosen explicitly, to add a ScaNN version on top of a
    brute-force one: a server watching the folder would switch to the new version, which
    stock TF Serving cannot load (it lacks ScaNN's ops)."""
    model_dir = os.path.join(out_dir, model_name)
    found = versions(model_dir)
    if index_kind != "scann" or index_chosen or not found:
        return
    newest = os.path.join(model_dir, str(found[-1]))
    try:
        newest_kind = read_metadata(newest).get("index", {}).get("kind")
    except ModelError:
        return
    if newest_kind == "brute-force":
        raise ModelError(
            f"{newest} is a brute-force export (what stock TF Serving loads); a ScaNN version on top of it would "
            f"be served next and stock TF Serving cannot load it: pass --index brute-force, or --index scann to "
            f"add it anyway")
