"""Where a retrieval training step's time goes: one JSON line per variant.

Builds the two-tower model of ``twostage train`` on the data given, then times ``steps``
training steps after a warm-up (tracing excluded) and, separately, the input pipeline alone.
Variants switch one thing at a time, so that their differences say what each part costs:

    python benchmarks/train_step.py --data DIR --variants base,no-history,adagrad,sample-32

  base         the configuration "auto" picks for this data
  no-history   the query tower without the pooled history
  no-features  ids only, no user or movie features
  adam/adagrad that optimizer (its default learning rate)
  sample-N     pool at most N history movies per user and step (0: the whole history)
  batch-N      batch size N
  bf16-logits  the multinomial logits product in bfloat16
  full-softmax / in-batch / multinomial   that loss (its automatic settings)

Examples/s are ratings: a multinomial step of users counts every rating of its users (the
same unit as a per-rating step's examples); users/s are printed beside them.
"""

import argparse
import dataclasses
import json
import time

import numpy as np

import twostage  # noqa: F401
import tensorflow as tf
from twostage.data import DataConfig, prepare
from twostage.modeling.examples import ExampleBatches
from twostage.modeling.optimizers import make_optimizer
from twostage.modeling.pooling import DENSE_POOLING_CELLS
from twostage.retrieval import train as retrieval_train
from twostage.retrieval.config import RetrievalConfig
from twostage.retrieval.model import CandidateTower, QueryTower, TwoTowerModel


def variant_config(name: str) -> dict:
    settings = {}
    for part in name.split("+"):
        if part == "no-history":
            settings["use_history"] = False
        elif part == "no-features":
            settings.update(use_user_features=False, use_movie_features=False)
        elif part in ("adam", "adagrad"):
            settings.update(optimizer=part, learning_rate=None)
        elif part.startswith("sample-"):
            settings["history_sample"] = int(part.split("-")[1])
        elif part in ("full-softmax", "in-batch", "multinomial"):
            settings["loss"] = part
        elif part == "bf16-logits":
            settings["logits_dtype"] = "bfloat16"
        elif part.startswith("batch-"):
            settings["batch_size"] = int(part.split("-")[1])
        elif part != "base":
            raise SystemExit(f"unknown variant part {part!r}")
    return settings


def measure(prepared, settings: dict, steps: int) -> dict:
    config = dataclasses.replace(RetrievalConfig(), **settings)
    config, _ = config.for_data(len(prepared.fit), len(prepared.movies), DENSE_POOLING_CELLS)
    tf.keras.utils.set_random_seed(config.seed)
    history = prepared.history(prepared.fit) if config.use_history else None
    query = QueryTower(prepared.vocabularies, config.embedding_dim, config.feature_dim, config.use_user_features,
                       0.0, history, config.history_sample or None, config.use_user_id, name="query_tower")
    candidate = CandidateTower(prepared.vocabularies, config.embedding_dim, config.feature_dim,
                               config.use_movie_features, 0.0, name="candidate_tower")
    model = TwoTowerModel(query, candidate, loss=config.loss, catalog=prepared.movie_columns, l2=config.l2,
                          history_dropout=config.history_dropout, history_targets=config.history_targets,
                          logits_dtype=config.logits_dtype)
    # The optimizer training builds, its weight average included (part of every step's cost).
    model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate, config.weight_averaging),
                  steps_per_execution=config.steps_per_execution)
    ratings_per_example = 1.0
    if config.loss == "multinomial":
        rows = {"user_id": retrieval_train.user_epoch_rows(history, config.batch_size)}
        ratings_per_example = retrieval_train.ratings_per_user(history)
        rows["user_id"] = np.random.default_rng(1).permutation(rows["user_id"])
    else:
        rows = retrieval_train.training_rows(prepared, prepared.fit,
                                             retrieval_train.sampling_probabilities(prepared, prepared.train))
    steps = min(steps, len(rows["user_id"]) // config.batch_size)
    if steps < 1:
        raise SystemExit(f"fewer training examples than one batch of {config.batch_size}")
    size = steps * config.batch_size
    data = ExampleBatches({k: v[:size] for k, v in rows.items()}, config.batch_size, shuffle_seed=1,
                          drop_remainder=True, expand=retrieval_train.example_tables(model, prepared).expand).dataset()
    start = time.perf_counter()
    for _ in data:
        pass
    pipeline = (time.perf_counter() - start) / steps
    model.fit(data.take(2 * config.steps_per_execution), verbose=0)  # trace and warm up
    start = time.perf_counter()
    model.fit(data, verbose=0)
    seconds = time.perf_counter() - start
    return {"loss": config.loss, "batch_size": config.batch_size, "optimizer": config.optimizer,
            "history_sample": config.history_sample if config.use_history else None,
            "ms_per_step": round(1000 * seconds / steps, 1),
            "examples_per_second": round(size * ratings_per_example / seconds),
            **({"users_per_second": round(size / seconds)} if config.loss == "multinomial" else {}),
            "input_pipeline_ms_per_step": round(1000 * pipeline, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--variants", default="base")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    prepared = prepare(DataConfig(source=args.data))
    for name in args.variants.split(","):
        print(json.dumps({"variant": name, **measure(prepared, variant_config(name), args.steps)}), flush=True)


if __name__ == "__main__":
    main()
