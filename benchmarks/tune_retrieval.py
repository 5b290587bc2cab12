"""Chooses retrieval settings on a validation part carved from the training part.

Never touches the test part: the training part of the requested split is split again
(SplitConfig.for_validation) and every candidate setting is scored on that validation part
at its best epoch. Prints one JSON line per setting and a table.

    python benchmarks/tune_retrieval.py --data ../shared/data/ml-100k [--grid default]
"""

import argparse
import dataclasses
import json
import logging
import time

import twostage  # noqa: F401
from twostage.data import SplitConfig, load_dataset, split
from twostage.data.features import build_vocabularies
from twostage.retrieval.config import RetrievalConfig
from twostage.retrieval.train import train_retrieval

GRIDS = {
    "history": [
        {"use_history": False},
        {},
        {"embedding_dim": 128, "l2": 0.02},
        {"learning_rate": 0.005},
    ],
    "features": [
        {"use_user_features": False, "use_movie_features": False},
        {"use_user_features": True, "use_movie_features": False},
        {"use_user_features": False, "use_movie_features": True},
        {},
        {"id_dropout": 0.1},
    ],
    "default": [
        {},
        {"loss": "in-batch"},
        {"loss": "in-batch", "batch_size": 4096, "learning_rate": 0.01},
        {"batch_size": 4096, "learning_rate": 0.01},
        {"batch_size": 4096, "learning_rate": 0.01, "l2": 0.01},
        {"batch_size": 4096, "learning_rate": 0.01, "embedding_dim": 32},
        {"batch_size": 4096, "learning_rate": 0.01, "embedding_dim": 128},
        {"batch_size": 4096, "learning_rate": 0.01, "temperature": 0.5},
        {"batch_size": 4096, "learning_rate": 0.02},
    ],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--grid", default="default", choices=sorted(GRIDS))
    parser.add_argument("--settings", help="JSON list of settings instead of a named grid")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = load_dataset(args.data)
    split_config = SplitConfig()
    train, _ = split(data.ratings, split_config)  # the test part is dropped here, unseen
    fit, validation = split(train, split_config.for_validation(0.1))
    vocabularies = build_vocabularies(fit, data.movies, data.users)
    rows = []
    for settings in json.loads(args.settings) if args.settings else GRIDS[args.grid]:
        config = dataclasses.replace(RetrievalConfig(refit=False), **settings)
        start = time.perf_counter()
        result = train_retrieval(fit, fit, validation, data.movies, data.users, vocabularies, config)
        best = result.fit.history[result.fit.best_epoch - 1]["validation"]
        row = {"settings": settings, "best_epoch": result.fit.best_epoch,
               "seconds": round(time.perf_counter() - start, 1), **{k: round(v, 4) for k, v in best.items()}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"\n{'settings':70} {'epochs':>6} {'sec':>6} {'R@10':>7} {'N@10':>7} {'R@100':>7} {'top100':>7}")
    for row in rows:
        print(f"{json.dumps(row['settings'])[:70]:70} {row['best_epoch']:>6} {row['seconds']:>6} "
              f"{row['recall@10']:>7} {row['ndcg@10']:>7} {row['recall@100']:>7} "
              f"{row['top_100_categorical_accuracy']:>7}")


if __name__ == "__main__":
    main()
