"""One training run at a MovieLens size, end to end, measured: prints one JSON object.

Each step runs as its own process (as a user runs the commands), so that its wall time
and its peak memory (the process's own, from wait4) are that step's alone:

  generate  ``twostage generate`` at the shape's size (skipped with --data)
  read      reading the ratings into coded columns
  train     ``twostage train`` (its metadata gives per-stage seconds, examples/s, peak memory)
  load      loading the export, and one-user recommendation latency
  evaluate  ``twostage evaluate --json``

    python benchmarks/scale.py --shape ml-1m --work /tmp/scale-1m
    python benchmarks/scale.py --shape ml-25m --work /tmp/scale-25m --epochs 1 --sample-users 20000
"""

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = {"smoke": (300, 400, 15_000), "ml-1m": (6_040, 3_706, 1_000_209), "ml-25m": (162_541, 62_423, 25_000_095)}
TWOSTAGE = [sys.executable, "-m", "twostage.cli"]

READ = """
import sys, time, twostage
from twostage.data.readers import read_movielens
start = time.perf_counter(); data = read_movielens(sys.argv[1])
print(len(data.ratings), time.perf_counter() - start)
"""

def run(command, log_path):
    """Runs ``command``; returns (wall seconds, peak RSS bytes of that process, stdout)."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command)} failed; see {log_path}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024, out


def latency_script(model: str, users: int) -> list:
    code = f"""
import json, time
import numpy as np
import twostage
start = time.perf_counter()
from twostage.serving.clients.recommender import Recommender
recommender = Recommender.load({model!r})
loaded = time.perf_counter() - start
ids = [str(u) for u in range(1, {users} + 1)]
rng = np.random.default_rng(0)
for user in ids[:5]:
    recommender.recommend([user], k=10)  # warm the graph
times = []
for user in rng.choice(ids, 200):
    t = time.perf_counter()
    recommender.recommend([str(user)], k=10)
    times.append((time.perf_counter() - t) * 1000)
print(json.dumps({{"load_seconds": loaded, "one_user_ms_p50": float(np.percentile(times, 50)),
                  "one_user_ms_p99": float(np.percentile(times, 99))}}))
"""
    return [sys.executable, "-c", code]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--work", required=True, help="folder for the data, the export and the step logs")
    parser.add_argument("--data", help="existing data of that shape (default: generate it into WORK/data)")
    parser.add_argument("--epochs", type=int, help="passed to twostage train (default: its own)")
    parser.add_argument("--sample-users", type=int, help="passed to twostage evaluate")
    parser.add_argument("--model", help="an export already trained on --data (skips training; its train "
                                        "figures come from its metadata)")
    parser.add_argument("--skip-evaluate", action="store_true")
    args = parser.parse_args()
    users, movies, ratings = SHAPES[args.shape]
    os.makedirs(args.work, exist_ok=True)
    log = lambda name: os.path.join(args.work, f"{name}.log")  # noqa: E731
    result = {"shape": args.shape, "users": users, "movies": movies}
    data = args.data
    if data is None:
        data = os.path.join(args.work, "data")
        seconds, rss, _ = run(TWOSTAGE + ["generate", "--out", data, "--users", str(users), "--movies", str(movies),
                                          "--ratings", str(ratings), "--force"], log("generate"))
        result["generate"] = {"seconds": round(seconds, 1), "peak_rss_gb": round(rss / 1e9, 2)}
    result["ratings_csv_mb"] = round(os.path.getsize(os.path.join(data, "ratings.csv")) / 1e6, 1)
    seconds, rss, out = run([sys.executable, "-c", READ, data], log("read"))
    count, read_seconds = out.split()
    result["read"] = {"ratings": int(count), "read_seconds": round(float(read_seconds), 2),
                      "process_seconds": round(seconds, 1), "peak_rss_gb": round(rss / 1e9, 2)}

    model = args.model or os.path.join(args.work, "model")
    seconds = rss = None
    if not args.model:
        train = TWOSTAGE + ["train", "--data", data, "--out", model]
        if args.epochs:
            train += ["--epochs", str(args.epochs)]
        if os.path.exists(model):
            sys.exit(f"{model} exists: remove it or choose another --work")
        seconds, rss, _ = run(train, log("train"))
    version = os.path.join(model, "twostage", sorted(os.listdir(os.path.join(model, "twostage")), key=int)[-1])
    metadata = json.load(open(os.path.join(version, "assets.extra", "twostage.json")))
    size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(version) for f in files)
    result["train"] = {
        "wall_seconds": seconds and round(seconds, 1), "peak_rss_gb": rss and round(rss / 1e9, 2),
        "train_seconds": round(metadata["train_seconds"], 1), "stages": metadata.get("stages"),
        "epochs": {stage: [{"epoch": e["epoch"], "validation": e["validation"]} for e in metadata[stage]["history"]]
                   for stage in ("retrieval", "ranking")},
        "export_mb": round(size / 1e6, 1)}
    seconds, rss, out = run(latency_script(model, min(users, 1000)), log("load"))
    result["load"] = {**json.loads(out), "peak_rss_gb": round(rss / 1e9, 2)}
    if not args.skip_evaluate:
        evaluate = TWOSTAGE + ["evaluate", "--model", model, "--json"]
        if args.sample_users:
            evaluate += ["--sample-users", str(args.sample_users)]
        seconds, rss, out = run(evaluate, log("evaluate"))
        result["evaluate"] = {"wall_seconds": round(seconds, 1), "peak_rss_gb": round(rss / 1e9, 2),
                              **json.loads(out)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
