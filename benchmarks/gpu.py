"""GPU check of an export: where TensorFlow runs each op, whether the answers match the CPU's,
and how fast it serves.

Run it twice on a machine with a GPU, first hiding the GPU (the CPU's answers, saved), then
with it (compared with those):

    CUDA_VISIBLE_DEVICES= python benchmarks/gpu.py --model DIR --save-answers cpu.npz
    python benchmarks/gpu.py --model DIR --compare-answers cpu.npz

Prints one JSON object:

* the devices TensorFlow sees, and whether float32 matrix products may use TF32 (TensorFlow's
  default on Ampere and later GPUs: 10-bit mantissas, so scores differ in the fourth digit);
* for each request kind (one user, a batch, a new user, similar movies, ratings, retrieval),
  the ops each device ran and the graph's edges onto each from another device (a copy when
  a request takes one), read from a traced run of the signature in a Session, which is how
  TF Serving runs it (see ``twostage.serving.diagnostics.placement.traced_placement``);
* with --compare-answers: per request kind, the share of result lists identical to the
  CPU's and the largest score difference;
* in-process Recommender timings as ``benchmarks/serving.py`` measures them (load, one user
  per call at k=10, batches of 1,000 users).
"""

import argparse
import importlib.util
import json
import logging
import os

import numpy as np

import twostage  # noqa: F401  (before tensorflow: selects the legacy Keras)
import tensorflow as tf
from twostage.serving.diagnostics.placement import traced_placement
from twostage.serving.clients.recommender import Recommender

UNKNOWN_USER = "twostage-gpu-check-new-user"


def _serving_benchmark():
    """benchmarks/serving.py, whose measurement this reuses (benchmarks are scripts, not a package)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serving.py")
    spec = importlib.util.spec_from_file_location("serving_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def devices() -> dict:
    gpus = tf.config.list_physical_devices("GPU")
    return {"tensorflow": tf.__version__, "built_with_cuda": tf.test.is_built_with_cuda(),
            "gpus": [tf.config.experimental.get_device_details(gpu) for gpu in gpus],
            "tf32": bool(gpus) and tf.config.experimental.tensor_float_32_execution_enabled()
            and os.environ.get("NVIDIA_TF32_OVERRIDE") != "0"}  # the variable turns it off below TensorFlow


def requests(recommender: Recommender, batch: int) -> dict:
    """label -> (signature, inputs): one request of each kind the export serves."""
    users = recommender.known_users()
    movies, _ = recommender.catalog()
    limits = recommender.limits
    few_users, few_movies = users[:20].tolist(), movies[:20].tolist()
    return {
        "one_user": ("serving_default", limits.recommend(users[0], 10, None, None, False)),
        f"batch_{batch}_users": ("serving_default", limits.recommend(users[:batch].tolist(), 10, None, None, False)),
        "new_user": ("serving_default", limits.recommend(UNKNOWN_USER, 10, None, None, False)),
        "similar_movies": ("similar_movies", limits.related(few_movies, 10)),
        "also_liked": ("also_liked", limits.related(few_movies, 10)),
        "predict_rating": ("predict_rating", limits.ratings(few_users, few_movies)),
        "retrieve": ("retrieve", limits.recommend(few_users, 10, None, None, False, retrieve=True)),
    }


def answers(recommender: Recommender, kinds: dict) -> dict:
    """label -> (movie ids or None, scores): each request's answer through the Recommender."""
    out = {}
    for label, (signature, inputs) in kinds.items():
        result = recommender._call(signature, inputs)  # the same inputs the trace ran
        scores = result.get("score", result.get("retrieval_score", result.get("rating")))
        ids = result.get("movie_id")
        out[label] = (None if ids is None else ids.astype(np.bytes_), np.asarray(scores, np.float32))
    return out


def compare(found: dict, saved) -> dict:
    report = {}
    for label, (ids, scores) in found.items():
        entry = {"max_score_difference": float(np.max(np.abs(scores - saved[f"{label}.scores"])))}
        if ids is not None:
            entry["identical_lists"] = float(np.mean(np.all(ids == saved[f"{label}.ids"], axis=-1)))
        report[label] = entry
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an export (the --out folder or one version)")
    parser.add_argument("--save-answers", help="write this run's answers here (.npz)")
    parser.add_argument("--compare-answers", help="compare this run's answers with these (.npz)")
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    recommender = Recommender.load(args.model)
    kinds = requests(recommender, args.batch)
    found = answers(recommender, kinds)
    report = {"devices": devices(), "model": recommender.path,
              "index": recommender.metadata.get("index", {}).get("kind")}
    if args.save_answers:
        arrays = {f"{label}.scores": scores for label, (_, scores) in found.items()}
        arrays.update({f"{label}.ids": ids for label, (ids, _) in found.items() if ids is not None})
        np.savez(args.save_answers, **arrays)
    if args.compare_answers:
        with np.load(args.compare_answers, allow_pickle=False) as saved:
            report["answers_vs_saved"] = compare(found, saved)
    report["placement"] = {label: traced.as_dict()
                           for label, traced in traced_placement(recommender.path, kinds).items()}
    report["serving"] = _serving_benchmark().measure_export(recommender.path, args.repeats)
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
