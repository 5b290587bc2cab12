"""The ``twostage`` command line's arguments: every command, its flags and their checks."""

from __future__ import annotations

import argparse


def _add_split_flags(parser: argparse.ArgumentParser, defaults: bool):
    # evaluate leaves them unset so that the split recorded at training is used.
    parser.add_argument("--split", choices=("random", "temporal"), default="random" if defaults else None,
                        help="random: 80/20 permutation (as the TFRS tutorials); temporal: each user's last ratings")
    parser.add_argument("--seed", type=int, default=42 if defaults else None, help="seed of the random split")
    parser.add_argument("--test-fraction", type=float, default=0.2 if defaults else None,
                        help="share of ratings held out")


def _whole_number(low: int, high: int):
    """An argparse type: a whole number from ``low`` to ``high``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value
    return parse


def _moment(text: str) -> int:
    """An argparse type: a time as seconds since 1970, or an ISO date or date and time (UTC
    unless it says otherwise)."""
    import datetime

    try:
        return int(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds since 1970 or an ISO date such as 1998-03-01, "
                                         f"got {text!r}") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)).timestamp())


def _add_strategy_flag(parser: argparse.ArgumentParser):
    from twostage.modeling.distribute_config import STRATEGIES

    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="default: this process; mirrored: every local GPU; multi-worker: the workers of "
                             "TF_CONFIG; parameter-server: the chief of TF_CONFIG coordinates its workers, tables "
                             "split over its ps tasks (docs/distributed.md)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twostage", description="Two-stage movie recommender: train, recommend, similar, also-liked, evaluate, serve.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    subparsers = parser.add_subparsers(dest="command", required=True)
    # -q may also come after the command (twostage train -q ...); SUPPRESS keeps the one given first.
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress lines on stderr")

    class _Commands:
        @staticmethod
        def add_parser(name, **kwargs):
            return subparsers.add_parser(name, parents=[quiet], **kwargs)

    commands = _Commands()

    train = commands.add_parser("train", help="train both stages and export one SavedModel")
    train.add_argument("--data", required=True,
                       help="synthetic[:users=N,movies=N,ratings=N] | movielens/100k-ratings (TFDS, needs network) | "
                            "PATH to a MovieLens folder or .zip")
    train.add_argument("--out", required=True, help="export root; the model goes to OUT/<model-name>/<version>/")
    _add_split_flags(train, defaults=True)
    train.add_argument("--epochs", type=int, help="most epochs per stage (the best on validation is used)")
    train.add_argument("--index", choices=("scann", "brute-force"),
                       help="scann (default): approximate, needs ScaNN's ops to load; brute-force: stock TensorFlow "
                            "ops only. A ScaNN version is added on top of a brute-force one only when asked for")
    _add_strategy_flag(train)
    train.add_argument("--resume", action="store_true",
                       help="continue the run backed up under --out (each epoch is backed up until the export is "
                            "written) after a crash or Ctrl-C, with the same command")
    train.add_argument("--tensorboard", metavar="DIR", help="write each stage's per-epoch loss, examples/s and "
                                                            "validation figures there, for TensorBoard")
    train.add_argument("--request-history", action="store_true",
                       help="export a model whose requests carry each user's rated movies instead of a user id: "
                            "no per-user tables, users never seen served from their history")

    generate = commands.add_parser("generate", help="write generated MovieLens-shaped data of any size "
                                                    "(the ml-25m CSV layout, or Parquet)")
    generate.add_argument("--out", required=True, help="folder for ratings.csv (or ratings.parquet) and movies.csv")
    generate.add_argument("--users", type=_whole_number(1, 10 ** 9), default=162_541, help="default: ml-25m's")
    generate.add_argument("--movies", type=_whole_number(2, 10 ** 8), default=62_423, help="default: ml-25m's")
    generate.add_argument("--ratings", type=_whole_number(1, 10 ** 11), default=25_000_000,
                          help="about this many ratings (default: ml-25m's)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--format", choices=("csv", "parquet"), default="csv")
    generate.add_argument("--force", action="store_true", help="overwrite files already in --out")

    prepare = commands.add_parser("prepare", help="split a dataset as train will and write its training examples "
                                                  "as shard files (train --data OUT then reads them)")
    prepare.add_argument("--data", required=True, help="the data source, as for train")
    prepare.add_argument("--out", required=True, help="folder for the shard files and shards.json")
    _add_split_flags(prepare, defaults=True)
    prepare.add_argument("--shards", type=_whole_number(1, 100_000), default=16,
                         help="files per part (at least one per worker that will read them; default 16)")
    prepare.add_argument("--force", action="store_true", help="replace a prepared folder already in --out")

    export = commands.add_parser("export", help="export a trained model again, e.g. with another index")
    export.add_argument("--model", required=True, help="an export (the --out of train, or a version folder)")
    export.add_argument("--index", choices=("scann", "brute-force"), required=True,
                        help="scann: approximate, needs ScaNN's ops to load; brute-force: stock TensorFlow ops only")
    export.add_argument("--out", help="export root of the new version (default: the one --model is in)")

    serving = commands.add_parser("serving-config", help="write TF Serving's models.config for an export root")
    serving.add_argument("--model", required=True, help="the export root (the --out of train)")
    serving.add_argument("--config", default="models.config", help="where to write the config (default: %(default)s)")
    serving.add_argument("--force", action="store_true", help="overwrite an existing config file")
    serving.add_argument("--rest-port", type=int, default=8501)
    serving.add_argument("--grpc-port", type=int, default=8500)

    recommend = commands.add_parser("recommend", help="recommend movies for a user with an exported model")
    recommend.add_argument("--model", required=True, help="the export (the --out of train, or a version folder)")
    who = recommend.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", action="append", help="user id (repeat for several)")
    who.add_argument("--history", action="append", metavar="MOVIE[:RATING],...",
                     help="a user given by the movies they rated, for an export trained with --request-history "
                          "(repeat for several users)")
    recommend.add_argument("-k", type=int, default=10, help="number of movies")
    recommend.add_argument("--json", action="store_true", help="print JSON instead of a table")
    recommend.add_argument("--exclude", action="append", default=[], help="movie id never to return (repeatable)")
    recommend.add_argument("--include-seen", action="store_true", help="let the user's training movies come back")
    recommend.add_argument("--as-of", type=_moment, metavar="TIME",
                           help="recommend as of this time (seconds since 1970 or an ISO date, UTC): movies first "
                                "rated in training after it are left out")
    cold = recommend.add_argument_group("a user the model has never seen (cold start)")
    cold.add_argument("--age", type=int, help="age in years")
    cold.add_argument("--gender", help="M or F")
    cold.add_argument("--occupation", help="e.g. writer, student, programmer")
    cold.add_argument("--zip", dest="zip_code", help="zip or postal code")

    for name, what in (("similar", "movies most like a movie (cosine of movie embeddings)"),
                       ("also-liked", "what people who liked a movie also liked")):
        related = commands.add_parser(name, help=what)
        related.add_argument("--model", required=True, help="the export")
        related.add_argument("--movie", required=True, help="movie id")
        related.add_argument("-k", type=int, default=10, help="number of movies")
        related.add_argument("--json", action="store_true", help="print JSON instead of a table")

    benchmark = commands.add_parser("benchmark", help="compare the ranking architectures on one split")
    benchmark.add_argument("stage", choices=("ranking",))
    benchmark.add_argument("--data", required=True, help="as for train")
    _add_split_flags(benchmark, defaults=True)
    benchmark.add_argument("--architectures", help="comma-separated subset (default: all)")
    _add_strategy_flag(benchmark)
    benchmark.add_argument("--json", action="store_true", help="print JSON instead of a table")

    report = commands.add_parser("report", help="write an HTML report (figures, baselines, examples) of an export")
    report.add_argument("--model", required=True, help="the export")
    report.add_argument("--data", help="data source (default: the one the model was trained on)")
    report.add_argument("--out", required=True, help="folder for report.html, report.json and the PNG figures")
    report.add_argument("--architectures", help="comma-separated ranking architectures to train as baselines "
                                                "(default: all; 'none' for none)")

    explore = commands.add_parser("explore", help="movie map (t-SNE), clusters, biases and neighbours of an export")
    explore.add_argument("--model", required=True, help="the export")
    explore.add_argument("--out", required=True, help="folder for movie_map.png, explore.txt and explore.json")
    explore.add_argument("--data", help="data source for genres (default: the one the model was trained on)")
    explore.add_argument("--clusters", type=_whole_number(1, 10 ** 6),
                         help="number of k-means clusters (at most the movies in the catalog)")

    ui = commands.add_parser("serve-ui", help="a web page to browse an export's recommendations")
    ui.add_argument("--model", required=True, help="the export")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    ui.add_argument("--port", type=_whole_number(0, 65535), default=8080, help="0: any free port")

    describe = commands.add_parser("describe", help="what an export holds: data, sizes, feature values, index, "
                                                    "settings and validation figures")
    describe.add_argument("--model", required=True, help="the export")
    describe.add_argument("--json", action="store_true", help="print JSON instead of text")

    gpu = commands.add_parser("gpu-check", help="which ops of an export a GPU can run (read from its graph)")
    gpu.add_argument("--model", required=True, help="the export")
    gpu.add_argument("--json", action="store_true", help="print JSON instead of text")

    evaluate = commands.add_parser("evaluate", help="score an exported model on its held-out ratings")
    evaluate.add_argument("--model", required=True, help="the export")
    evaluate.add_argument("--data", help="data source (default: the one the model was trained on)")
    _add_split_flags(evaluate, defaults=False)
    evaluate.add_argument("--sample-users", type=_whole_number(1, 10 ** 9),
                          help="score a seeded sample of this many test users (default: all), e.g. to bound the "
                               "time at 160k users; the JSON says how many were scored of how many")
    evaluate.add_argument("--json", action="store_true", help="print the JSON object only")
    return parser
