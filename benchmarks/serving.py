"""Serving benchmark: export, load and request latency of both index flavours, and ScaNN at scale.

Prints one JSON object. Trains once (on --data, default ml-100k's folder if given, else the
synthetic data), exports the same trained model with a ScaNN and a brute-force index, then:

* export seconds and SavedModel load seconds;
* in-process Recommender (each flavour in a fresh process that only loads the export, as a
  server would), one user per call, k=10: p50 / p99 milliseconds;
* batches of 1,000 users: users per second;
* the speed of a reference matrix product just before and after those timings (this shared
  VM's speed moves by a quarter and more between runs);
* a generated catalog of --catalog clustered 64-d embeddings: ScaNN (parameters chosen from
  the catalog size) recall@10 against brute force, and p50 per single query for both.

    python benchmarks/serving.py --data ../shared/data/ml-100k
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import twostage  # noqa: F401  (before tensorflow: selects the legacy Keras)
import tensorflow as tf
from twostage.data import DataConfig
from twostage.pipeline import PipelineConfig, export, train_stages
from twostage.retrieval.config import IndexConfig
from twostage.retrieval.index import build_brute_force_index, build_scann_index, scann_parameters
from twostage.serving.clients.recommender import Recommender


def reference_gflops(repeats: int = 5) -> float:
    """This machine's speed right now: GFLOP/s of a float32 [100,000 x 256] . [256 x 64]
    product (one rating layer over 100 candidates x 1,000 users), median of ``repeats``. On a
    shared VM the same code runs faster or slower by as much as this figure moves."""
    rng = np.random.default_rng(0)
    left = tf.constant(rng.random((100_000, 256), np.float32))
    right = tf.constant(rng.random((256, 64), np.float32))
    product = tf.function(lambda: tf.reduce_sum(tf.matmul(left, right)), autograph=False)
    product()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        product().numpy()
        times.append(time.perf_counter() - start)
    return 2 * 100_000 * 256 * 64 / float(np.median(times)) / 1e9


def _latency(call, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def measure_export(path: str, repeats: int) -> dict:
    """Load time, one-user latency and batch throughput of an export, in this process."""
    start = time.perf_counter()
    recommender = Recommender.load(path)
    load_seconds = time.perf_counter() - start
    users = recommender.known_users()
    gflops_before = reference_gflops()
    rng = np.random.default_rng(0)
    for user in rng.choice(users, size=20).tolist():  # warm up the concrete functions
        recommender.recommend(user, k=10)
    # Users drawn beforehand: the timings hold the call alone.
    single = _latency(lambda drawn=iter(rng.choice(users, size=repeats).tolist()): recommender.recommend(
        next(drawn), k=10), repeats)
    batch = rng.choice(users, size=1000)
    recommender.recommend_arrays(batch, k=10)
    calls = 10
    start = time.perf_counter()
    for _ in range(calls):
        recommender.recommend_arrays(batch, k=10)
    users_per_second = calls * 1000 / (time.perf_counter() - start)
    return {"load_seconds": load_seconds, "single_user_k10": single,
            "batch_1000_users_per_second": users_per_second,
            "reference_gflops_before_after": [gflops_before, reference_gflops()]}


def serve_flavours(data: str, repeats: int) -> dict:
    """Trains once, exports both flavours, and measures each in a fresh process, as a server
    would load it (measured in the training process, whichever went first was slower)."""
    trained = train_stages(PipelineConfig(data=DataConfig(source=data)))
    results = {}
    with tempfile.TemporaryDirectory() as out:
        for kind in ("scann", "brute-force"):
            start = time.perf_counter()
            path = export(trained, os.path.join(out, kind), IndexConfig(kind=kind)).export_path
            export_seconds = time.perf_counter() - start
            proc = subprocess.run([sys.executable, __file__, "--measure", path, "--repeats", str(repeats)],
                                  capture_output=True, text=True, check=True)
            results[kind] = {"export_seconds": export_seconds, **json.loads(proc.stdout.strip().splitlines()[-1])}
    return results


def _searcher(index, spec):
    return tf.function(lambda queries: index(queries, k=10), input_signature=[spec]).get_concrete_function()


def scann_at_scale(catalog: int, queries: int, dim: int = 64, clusters: int = 1000) -> dict:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    embeddings = centres[rng.integers(0, clusters, catalog)] + 0.3 * rng.normal(size=(catalog, dim)).astype(
        np.float32)
    query_vectors = (centres[rng.integers(0, clusters, queries)]
                     + 0.3 * rng.normal(size=(queries, dim))).astype(np.float32)
    start = time.perf_counter()
    scann = build_scann_index(embeddings, 10)
    build_seconds = time.perf_counter() - start
    brute = build_brute_force_index(embeddings, 10)
    _, exact = brute(query_vectors, k=10)
    _, approx = scann(query_vectors, k=10)
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.numpy(), approx.numpy())]))
    single = {}
    spec = tf.TensorSpec([1, dim], tf.float32)
    for name, index in (("scann", scann), ("brute_force", brute)):
        # Through a concrete function, as the index runs inside the SavedModel.
        search = _searcher(index, spec)
        search(tf.constant(query_vectors[:1]))
        single[name] = _latency(lambda q=iter(query_vectors): search(tf.constant(next(q)[None])), min(queries, 200))
    return {"catalog": catalog, "scann_parameters": scann_parameters(catalog, 10), "build_seconds": build_seconds,
            "recall_at_10_vs_brute_force": recall, "single_query": single,
            "speedup_p50": single["brute_force"]["p50_ms"] / single["scann"]["p50_ms"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--catalog", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # an export to measure (serve_flavours' child)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.measure:
        print(json.dumps(measure_export(args.measure, args.repeats)))
        return
    print(json.dumps({"flavours": serve_flavours(args.data, args.repeats),
                      "scann_at_scale": scann_at_scale(args.catalog, args.queries)}, indent=2))


if __name__ == "__main__":
    main()
