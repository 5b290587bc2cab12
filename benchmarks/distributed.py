"""One process against other strategies on the same data: prints one JSON line per run.

Each run is ``twostage train`` as users start it (the workers as separate processes on
127.0.0.1 ports, each with its own TF_CONFIG), then ``twostage evaluate --json`` of the
export. Per run: wall time, per-stage seconds and training examples/s (from the export's
metadata), peak RSS per process (wait4), and the quality of the export.

On one machine the workers share its cores: this measures what distribution costs, not
what more machines would gain.

    python benchmarks/distributed.py --data DIR --work /tmp/dist [--runs single,multi-worker-2]

Runs: ``single`` (default strategy), ``cpu`` (the same with every GPU hidden), ``mirrored``
(``--strategy mirrored``: every local GPU), ``multi-worker-N`` (N worker processes),
``parameter-server-N-P`` (a chief, N workers and P parameter servers; the workers' and
servers' peak RSS follow the chief's, and they are stopped when the chief is done). With
``--compare-answers``, a last line compares each run's export with the first run's: how many
of the same users' top-10 lists hold the same movies, and how far predicted ratings lie apart.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

TWOSTAGE = [sys.executable, "-m", "twostage"]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(command, log_path, env=None):
    log = open(log_path, "w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def _wait(process):
    _, status, usage = os.wait4(process.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024


def train(kind: str, data: str, work: str, extra: list) -> dict:
    out = os.path.join(work, kind)
    command = TWOSTAGE + ["train", "--data", data, "--out", out, "--index", "brute-force", *extra]
    start = time.perf_counter()
    if kind in ("single", "cpu", "mirrored"):
        strategy = ["--strategy", "mirrored"] if kind == "mirrored" else []
        hidden = {"CUDA_VISIBLE_DEVICES": ""} if kind == "cpu" else {}
        processes = [_start(command + strategy, os.path.join(work, f"{kind}.log"), hidden)]
    elif kind.startswith("multi-worker-"):
        workers = int(kind.rsplit("-", 1)[1])
        cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(workers)]}
        processes = [_start(command + ["--strategy", "multi-worker"], os.path.join(work, f"{kind}-{i}.log"),
                            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
                     for i in range(workers)]
    elif kind.startswith("parameter-server-"):
        workers, servers = map(int, kind.split("-")[2:4])
        ports = iter(_free_ports(1 + workers + servers))
        cluster = {role: [f"127.0.0.1:{next(ports)}" for _ in range(count)]
                   for role, count in (("chief", 1), ("worker", workers), ("ps", servers))}
        processes = [_start(command + ["--strategy", "parameter-server"], os.path.join(work, f"{kind}-{role}-{i}.log"),
                            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": role, "index": i}})})
                     for role in ("chief", "worker", "ps") for i in range(len(cluster[role]))]
    else:
        raise SystemExit(f"unknown run {kind!r}")
    if kind.startswith("parameter-server-"):
        results = [_wait(processes[0])]
        for process in processes[1:]:  # they serve until stopped
            process.terminate()
        results += [_wait(p) for p in processes[1:]]
    else:
        results = [_wait(p) for p in processes]
    wall = time.perf_counter() - start
    if any(code != 0 for code, _ in results):
        raise SystemExit(f"{kind} failed; see the logs in {work}")
    version = max(os.listdir(os.path.join(out, "twostage")), key=int)
    with open(os.path.join(out, "twostage", version, "assets.extra", "twostage.json")) as f:
        metadata = json.load(f)
    evaluation = json.loads(subprocess.run(TWOSTAGE + ["evaluate", "--model", out, "--json"], check=True,
                                           capture_output=True, text=True).stdout)
    stages = metadata["stages"]
    return {
        "run": kind, "wall_seconds": round(wall, 1), "train_seconds": round(metadata["train_seconds"], 1),
        "peak_rss_gb_per_process": [round(rss / 1e9, 2) for _, rss in results],
        "distribute": metadata["distribute"],
        "stages": {name: {k: stages[name][k] for k in ("seconds", "examples_per_second") if k in stages[name]}
                   for name in ("retrieval", "ranking")},
        "epochs": {"retrieval": metadata["retrieval"]["best_epoch"], "ranking": metadata["ranking"]["best_epoch"]},
        "quality": {"retrieval": {k: round(evaluation["retrieval"][k], 4) for k in ("recall@10", "ndcg@10",
                                                                                      "recall@100")},
                    "rmse": round(evaluation["rmse"], 4)},
    }


def agreement(first: str, other: str, users: int = 1000, seed: int = 0) -> dict:
    """How alike two exports of the same data answer: the same users' top-10 lists (share of
    movies in common, share of identical lists) and predicted ratings of random pairs."""
    import numpy as np
    import twostage  # noqa: F401  (before tensorflow: selects the legacy Keras)
    from twostage.serving.clients.recommender import Recommender

    a, b = Recommender.load(first), Recommender.load(other)
    rng = np.random.default_rng(seed)
    known = np.intersect1d(a.known_users(), b.known_users())
    chosen = rng.choice(known, min(users, len(known)), replace=False).tolist()
    lists_a, lists_b = a.recommend_arrays(chosen, 10)["movie_id"], b.recommend_arrays(chosen, 10)["movie_id"]
    common = [len(set(x) & set(y)) / 10 for x, y in zip(lists_a.tolist(), lists_b.tolist())]
    movies, _ = a.catalog()
    pairs_users, pairs_movies = rng.choice(known, 10_000).tolist(), rng.choice(movies, 10_000).tolist()
    difference = np.abs(a.predict_rating(pairs_users, pairs_movies) - b.predict_rating(pairs_users, pairs_movies))
    return {"users": len(chosen), "top10_movies_in_common": round(float(np.mean(common)), 4),
            "identical_top10_lists": round(float(np.mean(np.all(lists_a == lists_b, axis=1))), 4),
            "rating_pairs": len(pairs_users), "rating_mean_abs_difference": round(float(difference.mean()), 4),
            "rating_max_abs_difference": round(float(difference.max()), 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a data source, as for twostage train")
    parser.add_argument("--work", required=True, help="folder for the exports and the logs")
    parser.add_argument("--runs", default="single,multi-worker-2")
    parser.add_argument("--epochs", type=int, help="passed to twostage train")
    parser.add_argument("--compare-answers", action="store_true",
                        help="then compare each run's answers with the first run's")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    runs = args.runs.split(",")
    for kind in runs:
        print(json.dumps(train(kind, args.data, args.work, extra)), flush=True)
    if args.compare_answers:
        print(json.dumps({"answers_against": runs[0],
                          **{kind: agreement(os.path.join(args.work, runs[0]), os.path.join(args.work, kind))
                             for kind in runs[1:]}}), flush=True)


if __name__ == "__main__":
    main()
