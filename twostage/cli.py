"""The ``twostage`` command line: train, recommend, similar, also-liked, evaluate."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time

import twostage  # noqa: F401  selects the legacy Keras before TensorFlow loads

log = logging.getLogger("twostage")


def _add_split_flags(parser: argparse.ArgumentParser, defaults: bool):
    # evaluate leaves them unset so that the split recorded at training is used.
    parser.add_argument("--split", choices=("random", "temporal"), default="random" if defaults else None,
                        help="random: 80/20 permutation (as the TFRS tutorials); temporal: each user's last ratings")
    parser.add_argument("--seed", type=int, default=42 if defaults else None, help="seed of the random split")
    parser.add_argument("--test-fraction", type=float, default=0.2 if defaults else None,
                        help="share of ratings held out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twostage", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train both stages and export one SavedModel")
    train.add_argument("--data", required=True,
                       help="synthetic | movielens/100k-ratings (TFDS, needs network) | PATH to a MovieLens folder or .zip")
    train.add_argument("--out", required=True, help="export root; the model goes to OUT/<model-name>/<version>/")
    _add_split_flags(train, defaults=True)
    train.add_argument("--epochs", type=int, help="most epochs per stage (the best on validation is used)")
    train.add_argument("--index", choices=("scann", "brute-force"), default="scann",
                       help="scann: approximate, needs ScaNN's ops to load; brute-force: stock TensorFlow ops only")

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
    recommend.add_argument("--user", required=True, action="append", help="user id (repeat for several)")
    recommend.add_argument("-k", type=int, default=10, help="number of movies")
    recommend.add_argument("--json", action="store_true", help="print JSON instead of a table")
    recommend.add_argument("--exclude", action="append", default=[], help="movie id never to return (repeatable)")
    recommend.add_argument("--include-seen", action="store_true", help="let the user's training movies come back")
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
    explore.add_argument("--clusters", type=int, help="number of k-means clusters")

    ui = commands.add_parser("serve-ui", help="a web page to browse an export's recommendations")
    ui.add_argument("--model", required=True, help="the export")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    ui.add_argument("--port", type=int, default=8080)

    gpu = commands.add_parser("gpu-check", help="which ops of an export a GPU can run (read from its graph)")
    gpu.add_argument("--model", required=True, help="the export")
    gpu.add_argument("--json", action="store_true", help="print JSON instead of text")

    evaluate = commands.add_parser("evaluate", help="score an exported model on its held-out ratings")
    evaluate.add_argument("--model", required=True, help="the export")
    evaluate.add_argument("--data", help="data source (default: the one the model was trained on)")
    _add_split_flags(evaluate, defaults=False)
    evaluate.add_argument("--json", action="store_true", help="print the JSON object only")
    return parser


def _train(args) -> int:
    from twostage.data import DataConfig, SplitConfig
    from twostage.pipeline import PipelineConfig, train
    from twostage.retrieval.config import IndexConfig

    config = PipelineConfig(data=DataConfig(source=args.data, split=SplitConfig(args.split, args.seed,
                                                                                  args.test_fraction)),
                            index=IndexConfig(kind=args.index))
    if args.epochs is not None:
        config = dataclasses.replace(config, retrieval=dataclasses.replace(config.retrieval, epochs=args.epochs),
                                     ranking=dataclasses.replace(config.ranking, epochs=args.epochs))
    start = time.perf_counter()
    result = train(config, args.out)
    print(f"exported {result.export_path} (trained in {result.metadata['train_seconds']:.1f}s, "
          f"{time.perf_counter() - start:.1f}s in all)")
    return 0


def _recommend(args) -> int:
    from twostage.serving.clients.recommender import Recommender

    recommender = Recommender.load(args.model)
    features = {name: getattr(args, name) for name in ("age", "gender", "occupation", "zip_code")
                if getattr(args, name) is not None}
    results = recommender.recommend(args.user, k=args.k, features=features or None, exclude=args.exclude or None,
                                    include_seen=args.include_seen)
    if args.json:
        print(json.dumps({user: [r.as_dict() for r in recs] for user, recs in zip(args.user, results)}, indent=2))
        return 0
    for user, recs in zip(args.user, results):
        print(f"user {user}:")
        print(f"  {'#':>2}  {'movie':>7}  {'score':>7}  {'rating':>6}  title")
        for rank, r in enumerate(recs, 1):
            print(f"  {rank:>2}  {r.movie_id:>7}  {r.score:7.3f}  {r.predicted_rating:6.2f}  {r.title}")
    return 0


def _related(args) -> int:
    from twostage.serving.clients.recommender import Recommender

    recommender = Recommender.load(args.model)
    method = recommender.similar_movies if args.command == "similar" else recommender.also_liked
    results = method(args.movie, k=args.k)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return 0
    catalog = dict(zip(*recommender.catalog()))
    print(f"{args.command} for movie {args.movie} ({catalog[args.movie]}):")
    for rank, r in enumerate(results, 1):
        print(f"  {rank:>2}  {r.movie_id:>7}  {r.score:7.3f}  {r.title}")
    return 0


def _export(args) -> int:
    from twostage.retrieval.config import IndexConfig
    from twostage.serving.artifact.reexport import export_again

    start = time.perf_counter()
    path = export_again(args.model, IndexConfig(kind=args.index), args.out)
    print(f"exported {path} ({args.index} index, {time.perf_counter() - start:.1f}s)")
    return 0


def _serving_config(args) -> int:
    import os

    from twostage.serving.artifact.layout import ModelError, model_names, read_metadata, versions
    from twostage.serving.artifact.tf_serving_config import models_config, server_instructions

    root = args.model
    names = model_names(root)
    if not names:
        raise ModelError(f"{root}: no exported model here (expected <model>/<version>/ folders; "
                         "give the --out of twostage train)")
    if os.path.exists(args.config) and not args.force:
        raise ModelError(f"{args.config} exists; pass --force to overwrite it, or --config to write elsewhere")
    with open(args.config, "w") as f:
        f.write(models_config(root, names))
    print(f"wrote {args.config} ({', '.join(names)})\n")
    for name in names:
        newest = os.path.join(root, name, str(versions(os.path.join(root, name))[-1]))
        if read_metadata(newest).get("index", {}).get("kind") == "scann":
            print(f"note: {newest} holds a ScaNN index, which stock TF Serving cannot load (its ops are not "
                  f"built in). Run: twostage export --model {root} --index brute-force\n")
    print(server_instructions(args.config, names[0], args.rest_port, args.grpc_port))
    return 0


def _benchmark(args) -> int:
    from twostage.benchmark import benchmark_ranking, format_table
    from twostage.data import DataConfig, SplitConfig
    from twostage.data.prepared import prepare
    from twostage.ranking.architectures import ARCHITECTURES
    from twostage.ranking.config import RankingConfig

    chosen = _architectures(args.architectures) or list(ARCHITECTURES)
    prepared = prepare(DataConfig(source=args.data, split=SplitConfig(args.split, args.seed, args.test_fraction)))
    rows = benchmark_ranking(prepared, RankingConfig(), chosen)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def _architectures(value):
    from twostage.ranking.architectures import ARCHITECTURES

    if value is None:
        return None
    if value == "none":
        return []
    chosen = value.split(",")
    unknown = sorted(set(chosen) - set(ARCHITECTURES))
    if unknown:
        from twostage.data.errors import TwostageError

        raise TwostageError(f"unknown architecture(s) {', '.join(unknown)}; use {', '.join(ARCHITECTURES)}")
    return chosen


def _report(args) -> int:
    import os

    from twostage.report import build_report

    report = build_report(args.model, args.out, source=args.data, architectures=_architectures(args.architectures))
    print(f"wrote {os.path.join(args.out, 'report.html')}\n")
    print(f"{'list':<32} {'recall@10':>9} {'NDCG@10':>8} {'coverage@10':>11}")
    for name, h in report["headline"].items():
        print(f"{name:<32} {h['recall@10']:>9.4f} {h['ndcg@10']:>8.4f} {h['coverage@10']:>11.3f}")
    return 0


def _explore(args) -> int:
    from twostage.explore import explore, render_text

    print(render_text(explore(args.model, args.out, source=args.data, clusters=args.clusters)))
    return 0


def _serve_ui(args) -> int:
    from twostage.ui import serve

    serve(args.model, args.host, args.port)
    return 0


def _gpu_check(args) -> int:
    from twostage.serving.artifact.layout import read_metadata, resolve_model_path
    from twostage.serving.diagnostics.placement import gpu_placement

    path = resolve_model_path(args.model)
    report = gpu_placement(path).as_dict()
    report["model"] = path
    report["index"] = read_metadata(path).get("index", {}).get("kind")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if not report["gpu_kernels_known"]:
        print("note: this TensorFlow registers no GPU kernels (not a CUDA build), so every op reads as CPU "
              "only; run this where the Linux pip TensorFlow is installed")
    total = report["gpu_nodes"] + report["cpu_only_nodes"]
    print(f"{path} ({report['index']} index): {report['gpu_nodes']} of {total} serving-graph nodes have a GPU "
          "kernel in this TensorFlow; these have none and stay on the CPU:")
    for op, count in report["cpu_only"].items():
        print(f"  {count:>5}  {op}")
    print("nodes pinned to a device: " + (", ".join(report["pinned"]) or "none"))
    return 0


def _evaluate(args) -> int:
    from twostage.evaluation import evaluate

    results = evaluate(args.model, source=args.data, method=args.split, seed=args.seed,
                       test_fraction=args.test_fraction)
    print(json.dumps(results, indent=None if args.json else 2))
    return 0


def _configure_logging(quiet: bool):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[twostage] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False
    # TensorFlow's Python logger explains SavedModel internals (renamed captures, Keras
    # configs) that say nothing to a user of this tool.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(quiet=args.quiet)
    from twostage.data.errors import TwostageError

    try:
        commands = {"train": _train, "recommend": _recommend, "evaluate": _evaluate, "similar": _related,
                    "also-liked": _related, "benchmark": _benchmark, "export": _export,
                    "serving-config": _serving_config, "report": _report, "explore": _explore,
                    "serve-ui": _serve_ui, "gpu-check": _gpu_check}
        return commands[args.command](args)
    except TwostageError as err:
        print(f"twostage {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"twostage {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
