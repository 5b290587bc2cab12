"""Clusters as separate processes on 127.0.0.1: multi-worker (the chief's export, its quality
against one process's, a cluster that loses a worker and is restarted with --resume) and
parameter servers (sharded tables, an export of ordinary variables).

Every process is started in its own process group and killed when a test ends, pass or fail.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

DATA = "synthetic:users=400,movies=300,ratings=16000,seed=5"
TRAIN = ["--data", DATA, "--index", "brute-force"]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _twostage(*args):
    return [sys.executable, "-m", "twostage", *args]


@contextlib.contextmanager
def _processes():
    """Starts processes (start(args, env, log)), and kills every one of them on the way out."""
    started = []

    def start(args, env_extra=None, log=None):
        env = {**os.environ, **(env_extra or {})}
        env.pop("TF_USE_LEGACY_KERAS", None)
        process = subprocess.Popen(args, env=env, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _workers(start, out, logs, extra=()):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return [start(_twostage("train", "--strategy", "multi-worker", "--out", str(out), *TRAIN, *extra),
                  {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
                  open(logs / f"worker-{i}.log", "a"))
            for i in range(2)]


def _evaluate(model):
    done = subprocess.run(_twostage("evaluate", "--model", str(model), "--json"), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_two_workers_export_once_and_match_one_process(tmp_path):
    with _processes() as start:
        single = start(_twostage("train", "--out", str(tmp_path / "single"), *TRAIN, "--epochs", "2"))
        assert single.wait(timeout=600) == 0
        workers = _workers(start, tmp_path / "multi", tmp_path, ["--epochs", "2"])
        codes = [w.wait(timeout=900) for w in workers]
        logs = {i: (tmp_path / f"worker-{i}.log").read_text() for i in range(2)}
        assert codes == [0, 0], logs
    assert "the chief exports" in logs[1]
    exports = sorted((tmp_path / "multi" / "twostage").iterdir())
    assert [p.name for p in exports] == ["1"]  # the chief alone wrote, once; no backup left
    assert not (tmp_path / "multi" / ".twostage-backup").exists()
    metadata = json.loads((exports[0] / "assets.extra" / "twostage.json").read_text())
    assert metadata["distribute"] == {"strategy": "multi-worker", "workers": 2, "replicas": 2}
    # Loads with stock TensorFlow alone, in a fresh process.
    code = ("import tensorflow as tf, sys; m = tf.saved_model.load(sys.argv[1]); "
            "print(sorted(m.signatures))")
    loaded = subprocess.run([sys.executable, "-c", code, str(exports[0])], capture_output=True, text=True,
                            timeout=300)
    assert loaded.returncode == 0 and "serving_default" in loaded.stdout, loaded.stderr[-3000:]
    one, two = _evaluate(tmp_path / "single"), _evaluate(tmp_path / "multi")
    # The same global batches and negatives: within 10% of one process's figures.
    assert abs(two["retrieval"]["recall@10"] - one["retrieval"]["recall@10"]) <= 0.1 * one["retrieval"]["recall@10"]
    assert abs(two["rmse"] - one["rmse"]) <= 0.1 * one["rmse"]


def test_a_cluster_that_lost_a_worker_resumes_from_its_backups(tmp_path):
    out = tmp_path / "out"
    backup = out / ".twostage-backup"
    with _processes() as start:
        workers = _workers(start, out, tmp_path, ["--epochs", "4"])
        deadline = time.time() + 600
        while not list((backup / "worker-1" / "retrieval").glob("state-*.json")):
            assert time.time() < deadline and all(w.poll() is None for w in workers), "no backup was written"
            time.sleep(0.5)
        os.killpg(workers[1].pid, signal.SIGKILL)  # worker 1 dies mid-run
        try:
            workers[0].wait(timeout=120)  # its peer fails (or is stopped, as a cluster manager would)
        except subprocess.TimeoutExpired:
            os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
        assert not (out / "twostage").exists()
        restarted = _workers(start, out, tmp_path, ["--epochs", "4", "--resume"])
        codes = [w.wait(timeout=900) for w in restarted]
    logs = {i: (tmp_path / f"worker-{i}.log").read_text() for i in range(2)}
    assert codes == [0, 0], logs
    assert "retrieval: resuming from the backup of epoch" in logs[1] or "retrieval: finished" in logs[1], logs[1]
    assert (out / "twostage" / "1" / "saved_model.pb").is_file()
    assert not backup.exists()


# 600 movies x 128 floats: the retrieval movie tables are large enough to split over two servers
# (the query tower keeps no user table).
PS_DATA = "synthetic:users=1200,movies=600,ratings=24000,seed=5"


def test_a_parameter_server_cluster_reads_shard_files_splits_tables_and_exports_ordinary_variables(tmp_path):
    from twostage.cli import main

    assert main(["prepare", "--data", PS_DATA, "--out", str(tmp_path / "prepared"), "--shards", "4"]) == 0
    args = ["--data", str(tmp_path / "prepared"), "--index", "brute-force", "--epochs", "1"]
    ports = iter(_free_ports(5))
    cluster = {role: [f"127.0.0.1:{next(ports)}" for _ in range(count)]
               for role, count in (("chief", 1), ("worker", 2), ("ps", 2))}
    with _processes() as start:
        tasks = [start(_twostage("train", "--strategy", "parameter-server", "--out", str(tmp_path / "ps"), *args),
                       {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": role, "index": i}})},
                       open(tmp_path / f"{role}-{i}.log", "w"))
                 for role in ("chief", "worker", "ps") for i in range(len(cluster[role]))]
        chief = tasks[0].wait(timeout=900)
        assert chief == 0, (tmp_path / "chief-0.log").read_text()[-5000:]
        # The workers and servers stop by themselves once their chief is gone.
        assert [task.wait(timeout=120) for task in tasks[1:]] == [0, 0, 0, 0]
    assert "the chief is gone" in (tmp_path / "ps-1.log").read_text()
    assert "training examples from 4 + 4 shard file(s)" in (tmp_path / "chief-0.log").read_text()
    export = tmp_path / "ps" / "twostage" / "1"
    metadata = json.loads((export / "assets.extra" / "twostage.json").read_text())
    distribute = metadata["distribute"]
    assert {k: distribute[k] for k in ("strategy", "workers", "parameter_servers")} == \
        {"strategy": "parameter-server", "workers": 2, "parameter_servers": 2}
    assert distribute["sharded_variables"] and set(distribute["sharded_variables"].values()) == {2}
    # Ordinary variables: plain TensorFlow loads and serves it, without scann or twostage.
    code = f"""
import sys
import tensorflow as tf
model = tf.saved_model.load({str(export)!r})
out = model.recommend(model.user_ids[:3], k=tf.constant(5))
assert out["movie_id"].shape == (3, 5)
assert not any(name == "scann" or name.startswith(("scann.", "twostage")) for name in sys.modules)
print("served")
"""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert loaded.returncode == 0 and "served" in loaded.stdout, loaded.stderr[-3000:]
    # It learned (its quality against one process is measured by benchmarks/distributed.py).
    retrieval = metadata["retrieval"]["history"][-1]["validation"]
    assert retrieval["recall@10"] > 3 * 10 / 300  # three times what a random list of the 300 movies finds
    assert metadata["ranking"]["history"][-1]["validation"]["rmse"] < 1.2  # finite, not diverged


def _variables(export):
    import numpy as np
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(export / "variables" / "variables"))
    return {name: np.asarray(reader.get_tensor(name)) for name in reader.get_variable_to_shape_map()
            if "OPTIMIZER" not in name and "save_counter" not in name}


def test_a_run_killed_after_its_first_epoch_and_resumed_exports_the_uninterrupted_model(tmp_path):
    args = [*TRAIN, "--epochs", "3"]
    with _processes() as start:
        whole = start(_twostage("train", "--out", str(tmp_path / "whole"), *args))
        killed = start(_twostage("train", "--out", str(tmp_path / "killed"), *args),
                       log=open(tmp_path / "killed.log", "w"))
        deadline = time.time() + 600
        while not list((tmp_path / "killed" / ".twostage-backup" / "retrieval").glob("state-*.json")):
            assert time.time() < deadline and killed.poll() is None, "no backup was written"
            time.sleep(0.2)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        resumed = start(_twostage("train", "--out", str(tmp_path / "killed"), *args, "--resume"),
                        log=open(tmp_path / "resumed.log", "w"))
        assert whole.wait(timeout=600) == 0 and resumed.wait(timeout=600) == 0, (tmp_path / "resumed.log").read_text()
    assert "retrieval: resuming from the backup of epoch" in (tmp_path / "resumed.log").read_text()
    exports = [tmp_path / name / "twostage" / "1" for name in ("whole", "killed")]
    metadata = [json.loads((e / "assets.extra" / "twostage.json").read_text()) for e in exports]
    for stage in ("retrieval", "ranking"):
        assert metadata[0][stage]["best_epoch"] == metadata[1][stage]["best_epoch"]
        assert [h["validation"] for h in metadata[0][stage]["history"]] == \
            [h["validation"] for h in metadata[1][stage]["history"]]
    first, second = (_variables(e) for e in exports)
    assert first.keys() == second.keys() and first
    for name in first:
        assert (first[name] == second[name]).all(), name
