"""Exports a server can use: world-readable versions, no staging folder left behind for good,
and no ScaNN version slipped on top of a brute-force one by accident."""

import json
import os
import stat
import subprocess
import sys

import pytest
import tensorflow as tf

from twostage.cli import main
from twostage.serving.artifact.export import export_saved_model
from twostage.serving.artifact.layout import ModelError, check_index_over_newest, remove_stale_staging


class _Tiny(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def double(self, x):
        return {"y": 2.0 * x}

    def signatures(self):
        return {"serving_default": self.double}


def _export(root) -> str:
    return export_saved_model(_Tiny(), str(root), "m", {"index": {"kind": "brute-force"}}, uses_scann=False)


def test_published_versions_are_readable_by_every_user(tmp_path):
    old = os.umask(0o077)  # a strict umask must not leak into what a server reads
    try:
        version = _export(tmp_path)
    finally:
        os.umask(old)
    modes = {}
    for root, dirs, files in os.walk(version):
        for name in dirs:
            modes[os.path.join(root, name)] = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
        for name in files:
            modes[os.path.join(root, name)] = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
    assert stat.S_IMODE(os.stat(version).st_mode) == 0o755
    assert modes and all(mode == (0o755 if os.path.isdir(path) else 0o644) for path, mode in modes.items()), modes


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_staging_folders_of_killed_exports_are_removed_and_live_ones_kept(tmp_path):
    model_dir = tmp_path / "m"
    dead = model_dir / f".export-{_dead_pid()}-abc"
    live = model_dir / f".export-{os.getpid()}-xyz"
    for folder in (dead, live):
        (folder / "variables").mkdir(parents=True)
    version = _export(tmp_path)
    assert not dead.exists() and live.exists()
    assert os.path.basename(version) == "1"
    assert remove_stale_staging(str(model_dir)) == []


def test_an_export_killed_mid_way_is_cleaned_up_by_the_next(tmp_path):
    """SIGKILL while saving: the hidden folder stays until the next export removes it."""
    code = ("import os, signal, twostage, tensorflow as tf\n"
            "from twostage.serving.artifact import export\n"
            "def killed(*args, **kwargs):\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "tf.saved_model.save = killed\n"
            "class M(tf.Module):\n"
            "    def signatures(self):\n"
            "        return {}\n"
            f"export.export_saved_model(M(), {str(tmp_path)!r}, 'm', {{}}, uses_scann=False)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -9
    left = [name for name in os.listdir(tmp_path / "m") if name.startswith(".export-")]
    assert len(left) == 1
    _export(tmp_path)
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]


def _fake_version(root, number: int, kind: str):
    version = root / "twostage" / str(number)
    (version / "assets.extra").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    (version / "assets.extra" / "twostage.json").write_text(json.dumps({"index": {"kind": kind}}))


def test_no_scann_version_on_top_of_a_brute_force_one_unless_asked(tmp_path, capsys):
    _fake_version(tmp_path, 1, "brute-force")
    with pytest.raises(ModelError, match="pass --index brute-force, or --index scann to add it anyway"):
        check_index_over_newest(str(tmp_path), "twostage", "scann", index_chosen=False)
    check_index_over_newest(str(tmp_path), "twostage", "scann", index_chosen=True)
    check_index_over_newest(str(tmp_path), "twostage", "brute-force", index_chosen=False)
    # From the command line, before any training: the default index is ScaNN.
    assert main(["train", "--data", "synthetic", "--out", str(tmp_path)]) == 2
    assert "is a brute-force export" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "twostage")) == ["1"]
