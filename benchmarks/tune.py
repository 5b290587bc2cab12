"""Chooses a stage's settings on a validation part carved from the training part.

Never touches the test part: the training part of the default split is split again
(SplitConfig.for_validation) and every candidate setting is trained on the fit part and
scored on that validation part at its best epoch. Prints one JSON line per setting, then a
table.

    python benchmarks/tune.py retrieval --data ../shared/data/ml-100k --grid history
    python benchmarks/tune.py ranking --data ../shared/data/ml-100k --settings '[{}, {"output": "clip"}]'
"""

import argparse
import dataclasses
import json
import logging
import time

import twostage  # noqa: F401
from twostage.data import DataConfig
from twostage.data.prepared import prepare
from twostage.ranking.config import RankingConfig
from twostage.ranking.train import rating_errors, train_ranking
from twostage.retrieval.config import RetrievalConfig
from twostage.retrieval.train import train_retrieval

GRIDS = {
    "retrieval": {
        "default": [{}, {"loss": "in-batch"}, {"embedding_dim": 64, "l2": 0.01}, {"learning_rate": 0.02},
                    {"temperature": 0.5}],
        "features": [{"use_user_features": False, "use_movie_features": False},
                     {"use_user_features": True, "use_movie_features": False},
                     {"use_user_features": False, "use_movie_features": True}, {}, {"id_dropout": 0.1}],
        "history": [{"use_history": False}, {}, {"embedding_dim": 64, "l2": 0.01}],
        # Per-rating full softmax (the default before) against the per-user multinomial loss.
        "examples": [{"loss": "full-softmax"}, {}, {"history_targets": "held-out"}, {"embedding_dim": 256}],
    },
    "ranking": {
        "default": [{"use_features": False, "use_history": False, "biases": False, "output": "linear"},
                    {"use_features": False, "use_history": False, "output": "linear"},
                    {"use_features": False, "use_history": False},
                    {"use_features": False}, {"use_history": False}, {}, {"output": "clip"}],
    },
}
MONITOR = {"retrieval": ("recall@10", "ndcg@10", "recall@100", "top_100_categorical_accuracy"),
           "ranking": ("rmse", "mae")}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=sorted(GRIDS))
    parser.add_argument("--data", required=True)
    parser.add_argument("--grid", default="default")
    parser.add_argument("--settings", help="JSON list of settings instead of a named grid")
    parser.add_argument("--nested", action="store_true",
                        help="ranking: score the final model (after any refit) on the validation part, with "
                             "epochs chosen on an inner validation part carved from the fit part (to compare "
                             "refit=True with refit=False)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # The test part is never looked at: every setting is trained on the fit part and scored
    # on the validation part (nested: chosen on an inner part, scored on the validation part).
    prepared = prepare(DataConfig(source=args.data)).for_tuning(nested=args.nested)
    rows = []
    for settings in json.loads(args.settings) if args.settings else GRIDS[args.stage][args.grid]:
        start = time.perf_counter()
        if args.stage == "retrieval":
            config = dataclasses.replace(RetrievalConfig(refit=False), **settings)
            result = train_retrieval(prepared, config).fit
        elif args.nested:
            config = dataclasses.replace(RankingConfig(), **settings)
            trained = train_ranking(prepared, config)
            result = trained.fit
            best = rating_errors(trained.model, trained.inputs, prepared.test)
        else:
            config = dataclasses.replace(RankingConfig(refit=False), **settings)
            result = train_ranking(prepared, config).fit
        if not args.nested:
            best = result.history[result.best_epoch - 1]["validation"]
        row = {"settings": settings, "best_epoch": result.best_epoch,
               "seconds": round(time.perf_counter() - start, 1), **{k: round(v, 4) for k, v in best.items()}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    names = MONITOR[args.stage]
    print(f"\n{'settings':72} {'epochs':>6} {'sec':>6} " + " ".join(f"{n[:12]:>12}" for n in names))
    for row in rows:
        print(f"{json.dumps(row['settings'])[:72]:72} {row['best_epoch']:>6} {row['seconds']:>6} "
              + " ".join(f"{row[n]:>12}" for n in names))


if __name__ == "__main__":
    main()
