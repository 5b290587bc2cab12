"""The ``twostage`` command line: train, recommend, similar, also-liked, evaluate."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time

import twostage  # noqa: F401  selects the legacy Keras before TensorFlow loads
from twostage.arguments import build_parser

log = logging.getLogger("twostage")


def _train(args) -> int:
    from twostage.modeling.distribute import connect
    from twostage.modeling.distribute_config import DistributeConfig

    distribute = DistributeConfig(args.strategy)
    cluster = connect(distribute)  # first: multi-worker needs it before any other TensorFlow work

    from twostage.data import DataConfig, SplitConfig
    from twostage.pipeline import PipelineConfig, train
    from twostage.retrieval.config import IndexConfig

    config = PipelineConfig(data=DataConfig(source=args.data, split=SplitConfig(args.split, args.seed,
                                                                                  args.test_fraction)),
                            index=IndexConfig(kind=args.index or "scann"), distribute=distribute)
    if args.epochs is not None:
        config = dataclasses.replace(config, retrieval=dataclasses.replace(config.retrieval, epochs=args.epochs),
                                     ranking=dataclasses.replace(config.ranking, epochs=args.epochs))
    if args.request_history:
        config = config.for_request_history()
    start = time.perf_counter()
    result = train(config, args.out, scann_over_brute_force=args.index == "scann", cluster=cluster,
                   resume=args.resume, tensorboard_dir=args.tensorboard)
    if result is None:
        print(f"worker {cluster.worker_index}: trained ({time.perf_counter() - start:.1f}s); the chief exports")
        return 0
    print(f"exported {result.export_path} (trained in {result.metadata['train_seconds']:.1f}s, "
          f"{time.perf_counter() - start:.1f}s in all)")
    return 0


def _print_recommendations(recs) -> None:
    if not recs:  # everything excluded, or nothing rated yet at --as-of
        print("  (no movies left to recommend)")
        return
    print(f"  {'#':>2}  {'movie':>7}  {'score':>7}  {'rating':>6}  title")
    for rank, r in enumerate(recs, 1):
        print(f"  {rank:>2}  {r.movie_id:>7}  {r.score:7.3f}  {r.predicted_rating:6.2f}  {r.title}")


def _history_argument(text: str) -> dict:
    """--history "MOVIE[:RATING],..." -> {movie id: rating or None}."""
    from twostage.serving.requests import RequestError

    history = {}
    for item in (part.strip() for part in text.split(",")):
        movie, _, rating = item.rpartition(":") if ":" in item else (item, "", "")
        if not movie.strip():
            raise RequestError(f"--history {text!r}: empty movie id")
        try:
            history[movie.strip()] = float(rating) if rating.strip() else None
        except ValueError:
            raise RequestError(f"--history {text!r}: the rating of movie {movie.strip()} must be a number, "
                               f"got {rating!r}") from None
    return history


def _recommend_from_history(recommender, args, features: dict) -> int:
    histories = [_history_argument(text) for text in args.history]  # a rating not given: None, not known
    results = recommender.recommend_from_history(histories, k=args.k, features=features or None,
                                                 exclude=args.exclude or None, include_seen=args.include_seen,
                                                 request_time=args.as_of)
    if args.json:
        print(json.dumps([{"history": text, "recommendations": [r.as_dict() for r in recs]}
                          for text, recs in zip(args.history, results)], indent=2))
        return 0
    for text, recs in zip(args.history, results):
        print(f"history {text}:")
        _print_recommendations(recs)
    return 0


def _recommend(args) -> int:
    from twostage.serving.clients.recommender import Recommender

    recommender = Recommender.load(args.model)
    features = {name: getattr(args, name) for name in ("age", "gender", "occupation", "zip_code")
                if getattr(args, name) is not None}
    catalog = set(recommender.catalog()[0].tolist())
    for movie in dict.fromkeys(args.exclude):
        if movie.strip() and movie not in catalog:
            log.warning("--exclude %r: not in this model's catalog, so there is nothing to exclude", movie)
    if args.history:
        return _recommend_from_history(recommender, args, features)
    results = recommender.recommend(args.user, k=args.k, features=features or None, exclude=args.exclude or None,
                                    include_seen=args.include_seen, request_time=args.as_of)
    known_ids = set(recommender.known_users().tolist())
    known = [user in known_ids for user in args.user]
    if args.json:  # a list, in the order asked: the same user may be asked for twice
        print(json.dumps([{"user_id": user, "known_user": is_known, "recommendations": [r.as_dict() for r in recs]}
                          for user, is_known, recs in zip(args.user, known, results)], indent=2))
        return 0
    for user, is_known, recs in zip(args.user, known, results):
        if is_known:
            print(f"user {user}:")
        else:
            hint = f" (did you mean {user.strip()!r}?)" if user.strip() in known_ids else ""
            source = "from the features given (cold start)" if features else "the most popular movies"
            print(f"user {user!r} is not in this model's training data{hint}: {source}:")
        _print_recommendations(recs)
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
    score = "cosine" if args.command == "similar" else "score"
    print(f"  {'#':>2}  {'movie':>7}  {score:>7}  title")
    for rank, r in enumerate(results, 1):
        print(f"  {rank:>2}  {r.movie_id:>7}  {r.score:7.3f}  {r.title}")
    return 0


def _generate(args) -> int:
    from twostage.data.synthetic import SyntheticConfig, generate
    from twostage.data.writers import check_output, write_movielens

    check_output(args.out, args.format, args.force)
    start = time.perf_counter()
    config = SyntheticConfig(num_users=args.users, num_movies=args.movies, num_ratings=args.ratings, seed=args.seed)
    log.info("generating %d users, %d movies, about %d ratings", args.users, args.movies, args.ratings)
    data = generate(config).data
    log.info("generated %d ratings (%.1fs); writing %s", len(data.ratings), time.perf_counter() - start, args.out)
    paths = write_movielens(data, args.out, args.format)
    print(f"wrote {len(data.ratings)} ratings of {args.users} users and {args.movies} movies: {', '.join(paths)} "
          f"({time.perf_counter() - start:.1f}s)")
    return 0


def _prepare(args) -> int:
    from twostage.data import DataConfig, SplitConfig
    from twostage.data.errors import DataError
    from twostage.data.prepared import prepare
    from twostage.data.shards import MANIFEST, is_shard_folder, write_shards

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise DataError("exists and is not a folder; choose another --out", args.out)
    if is_shard_folder(args.out) and not args.force:
        raise DataError(f"holds a prepared folder ({MANIFEST}) already; choose another --out or pass --force",
                        args.out)
    source = os.path.abspath(args.data) if os.path.exists(args.data) else args.data
    if is_shard_folder(source):
        raise DataError("is a prepared folder: give the data it was prepared from", args.data)
    start = time.perf_counter()
    prepared = prepare(DataConfig(source=source, split=SplitConfig(args.split, args.seed, args.test_fraction)))
    parts = {name: prepared.example_rows(part, with_labels=True)
             for name, part in (("fit", prepared.fit), ("train", prepared.train))}
    counts = {"users": len(prepared.vocabularies.user_ids), "movies": len(prepared.movies),
              **{name: len(getattr(prepared, name)) for name in ("train", "fit", "validation", "test")}}
    shards = write_shards(args.out, parts, args.shards, args.seed, source, prepared.split_record(),
                          prepared.fingerprint(), counts)
    print(f"wrote {shards.rows('fit')} fit and {shards.rows('train')} training examples as {args.shards} shard(s) "
          f"each to {args.out} ({time.perf_counter() - start:.1f}s); train with --data {args.out}")
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
    from twostage.modeling.distribute import connect
    from twostage.modeling.distribute_config import DistributeConfig

    cluster = connect(DistributeConfig(args.strategy))  # before any other TensorFlow work

    from twostage.benchmark import benchmark_ranking, format_table
    from twostage.data import DataConfig, SplitConfig
    from twostage.data.prepared import prepare
    from twostage.modeling.training import TrainingRun
    from twostage.ranking.architectures import ARCHITECTURES
    from twostage.ranking.config import RankingConfig

    chosen = _architectures(args.architectures) or list(ARCHITECTURES)
    prepared = prepare(DataConfig(source=args.data, split=SplitConfig(args.split, args.seed, args.test_fraction)))
    rows = benchmark_ranking(prepared, RankingConfig(), chosen, run=TrainingRun(cluster))
    if not cluster.is_chief:
        return 0
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


def _describe(args) -> int:
    from twostage.describe import describe, render_text

    info = describe(args.model)
    print(json.dumps(info, indent=2) if args.json else render_text(info))
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
                       test_fraction=args.test_fraction, sample_users=args.sample_users)
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
        commands = {"train": _train, "generate": _generate, "prepare": _prepare, "recommend": _recommend, "evaluate": _evaluate, "similar": _related,
                    "also-liked": _related, "benchmark": _benchmark, "export": _export,
                    "serving-config": _serving_config, "report": _report, "explore": _explore,
                    "serve-ui": _serve_ui, "gpu-check": _gpu_check, "describe": _describe}
        return commands[args.command](args)
    except TwostageError as err:
        print(f"twostage {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"twostage {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
