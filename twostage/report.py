"""``twostage report``: one HTML page (plus its JSON and PNG figures) about an exported model.

Everything is measured in this run, on the split the model was trained with: the exported
model's retrieval and two-stage lists, and next to them popularity, EASE and ALS (their
settings chosen on the validation part), the item-based Pearson CF of the seed systems and
every ranking architecture (trained here on
the same training part, epochs chosen on the same validation part).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import logging
import os
import time
from typing import Optional, Sequence

import numpy as np

from twostage.data import Ratings
from twostage.data.baselines import MAX_ITEM_CF_MOVIES, item_pearson_scorer
from twostage.data.classic import CLASSICS, unavailable
from twostage.data.metrics import HeldOutEvaluator, popularity_scorer, rating_counts
from twostage.evaluation import export_requests, held_out
from twostage.serving.artifact.layout import check_output_folder
from twostage.serving.clients.recommender import Recommender

log = logging.getLogger("twostage")

MAX_K = 100
LIST_K = 10  # coverage, popularity bias and the examples look at top-10 lists


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _catalog_scorer(ranking, catalog_ids: np.ndarray):
    """user ids -> [users, catalog] predicted ratings of a trained rating model."""
    from twostage.ranking.train import predict_ratings

    def score(user_ids: np.ndarray) -> np.ndarray:
        users = np.repeat(np.asarray(user_ids, dtype=str), len(catalog_ids))
        movies = np.tile(catalog_ids, len(user_ids))
        pairs = Ratings.from_rows(users, movies, np.zeros(len(users)), np.zeros(len(users)))
        return predict_ratings(ranking.model, ranking.inputs, pairs).reshape(len(user_ids), len(catalog_ids))

    return score


def _list_figures(evaluator: HeldOutEvaluator, columns: np.ndarray, popularity: np.ndarray) -> dict:
    """recall@K and NDCG@K for K = 1..depth, and coverage / popularity bias of the top-10."""
    depth = columns.shape[1]
    metrics = evaluator.ranked_list_metrics(columns, range(1, depth + 1))
    top = columns[:, :LIST_K]
    shown = top[top >= 0]
    # Popularity percentile of a movie among the catalog (1.0 = the most rated).
    percentile = np.argsort(np.argsort(popularity, kind="stable"), kind="stable") / max(1, len(popularity) - 1)
    return {
        "recall": [metrics[f"recall@{k}"] for k in range(1, depth + 1)],
        "ndcg": [metrics[f"ndcg@{k}"] for k in range(1, depth + 1)],
        "coverage@10": float(len(np.unique(shown)) / len(popularity)),
        "popularity_percentile@10": float(np.mean(percentile[shown])) if shown.size else float("nan"),
    }


def _png(plt, fig, out_dir: str, name: str) -> str:
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _training_curves(plt, metadata: dict, out_dir: str) -> str:
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    for row, (stage, metric, label) in enumerate((("retrieval", "recall@100", "validation recall@100"),
                                                   ("ranking", "rmse", "validation RMSE"))):
        history = metadata[stage]["history"]
        epochs = [h["epoch"] for h in history]
        axes[row, 0].plot(epochs, [h["loss"] for h in history], marker="o")
        axes[row, 0].set(title=f"{stage}: training loss", xlabel="epoch", ylabel="loss (per batch)")
        axes[row, 1].plot(epochs, [h["validation"][metric] for h in history], marker="o", color="tab:orange")
        axes[row, 1].axvline(metadata[stage]["best_epoch"], color="grey", linestyle="--", label="chosen epoch")
        axes[row, 1].set(title=f"{stage}: {label}", xlabel="epoch", ylabel=label)
        axes[row, 1].legend()
        for axis in axes[row]:  # epochs are whole numbers
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(plt, fig, out_dir, "training_curves.png")


def _list_curves(plt, lists: dict, out_dir: str) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, figures in lists.items():
        ks = np.arange(1, len(figures["recall"]) + 1)
        style = "-" if name in ("two-stage", "retrieval") else "--"
        axes[0].plot(ks, figures["recall"], style, label=name)
        axes[1].plot(ks, figures["ndcg"], style, label=name)
    axes[0].set(title="recall@K on held-out ratings", xlabel="K (list length)", ylabel="recall@K")
    axes[1].set(title="NDCG@K on held-out ratings", xlabel="K (list length)", ylabel="NDCG@K")
    axes[1].legend(fontsize=8)
    return _png(plt, fig, out_dir, "recall_ndcg_at_k.png")


def _rating_figure(plt, predicted: np.ndarray, true: np.ndarray, out_dir: str) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    levels = np.unique(true)
    axes[0].boxplot([predicted[true == level] for level in levels], showfliers=False)
    axes[0].set_xticks(range(1, len(levels) + 1), [f"{level:g}" for level in levels])
    axes[0].set(title="predicted rating by true rating (test part)", xlabel="true rating (stars)",
                ylabel="predicted rating (stars)")
    bins = np.linspace(min(true.min(), predicted.min()), max(true.max(), predicted.max()), 41)
    axes[1].hist(true, bins=bins, alpha=0.6, label="true")
    axes[1].hist(predicted, bins=bins, alpha=0.6, label="predicted")
    axes[1].set(title="rating distribution (test part)", xlabel="rating (stars)", ylabel="ratings")
    axes[1].legend()
    return _png(plt, fig, out_dir, "predicted_vs_true.png")


def build_report(model_path: str, out_dir: str, source: Optional[str] = None,
                 architectures: Optional[Sequence[str]] = None, examples: int = 5) -> dict:
    """Measures everything the report shows and writes report.html, report.json and the PNGs.

    Args:
      model_path: the export.
      out_dir: where to write (created; files of the same names are replaced).
      source: data source (default: the one the model was trained on).
      architectures: ranking architectures to train as baselines (default: all; [] for none).
      examples: users shown with their recommendations.

    Returns:
      The report's JSON object.
    """
    from twostage.benchmark import benchmark_ranking
    from twostage.ranking.architectures import ARCHITECTURES
    from twostage.ranking.config import RankingConfig

    check_output_folder(out_dir)
    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    recommender = Recommender.load(model_path)
    metadata = recommender.metadata
    prepared, evaluator = held_out(recommender, source)
    data, train_part, test_part, split_config = prepared.data, prepared.train, prepared.test, prepared.config.split
    catalog_ids, titles = recommender.catalog()
    popularity = rating_counts(catalog_ids, train_part).astype(np.float64)
    users = evaluator.user_ids
    depth = min(MAX_K, recommender.max_k, len(catalog_ids))

    lists, columns_of = {}, {}
    log.info("report: two-stage and retrieval lists for %d test users", len(users))
    requests = export_requests(recommender, prepared)
    columns_of["two-stage"] = np.concatenate([evaluator.column_of(requests.top_k(users[i:i + 512], depth))
                                              for i in range(0, len(users), 512)])
    columns_of["retrieval"] = evaluator.top_unseen(requests.retrieval_scores, depth)[0]
    columns_of["popularity"] = evaluator.top_unseen(popularity_scorer(catalog_ids, train_part), depth)[0]
    for name, label in (("ease", "EASE"), ("als", "ALS (implicit)")):
        reason = unavailable(name, len(catalog_ids))
        if reason:
            log.info("report: %s skipped: %s", label, reason)
            continue
        log.info("report: %s, its setting chosen on the validation part", label)
        columns_of[label] = evaluator.top_unseen(CLASSICS[name](prepared).score, depth, batch_size=512)[0]
    if len(catalog_ids) <= MAX_ITEM_CF_MOVIES:
        log.info("report: item-based Pearson CF")
        columns_of["item-based CF (Pearson)"] = evaluator.top_unseen(
            item_pearson_scorer(catalog_ids, train_part), depth, batch_size=256)[0]

    architectures = list(ARCHITECTURES if architectures is None else architectures)
    rmse_rows = []
    if architectures:
        log.info("report: training %d ranking architectures on the same split", len(architectures))
        trained = {}
        rmse_rows = benchmark_ranking(prepared, RankingConfig(), architectures, trained=trained)
        for architecture, ranking in trained.items():
            log.info("report: lists of the %s rating model", architecture)
            columns_of[f"rating model: {architecture}"] = evaluator.top_unseen(
                _catalog_scorer(ranking, catalog_ids), depth, batch_size=64)[0]
    for name, columns in columns_of.items():
        lists[name] = _list_figures(evaluator, columns, popularity)

    predicted = requests.predicted_ratings(test_part, 1024)
    exported_rmse = float(np.sqrt(np.mean((predicted - test_part.rating) ** 2)))
    rmse_rows.insert(0, {"architecture": "exported model", "rmse": exported_rmse,
                         "mae": float(np.mean(np.abs(predicted - test_part.rating))),
                         "fit_seconds": metadata["ranking"]["seconds"], "parameters": None,
                         "epochs": metadata["ranking"]["best_epoch"]})

    rng = np.random.default_rng(0)
    title_of = dict(zip(catalog_ids.tolist(), titles.tolist()))
    example_users = rng.choice(users, size=min(examples, len(users)), replace=False)
    test_pairs = test_part.pairs()
    example_rows = []
    for user, recs in zip(example_users.tolist(), requests.recommend(example_users, LIST_K)):
        mine = train_part.user_id == user
        order = np.argsort(-train_part.rating[mine], kind="stable")[:LIST_K]
        example_rows.append({
            "user_id": user,
            "rated_highly": [{"movie_id": m, "title": title_of.get(m, m), "rating": float(r)}
                             for m, r in zip(train_part.movie_id[mine][order], train_part.rating[mine][order])],
            "recommended": [{**r.as_dict(), "held_out": (user, r.movie_id) in test_pairs} for r in recs],
        })

    plt = _figure()
    figures = {"training_curves": _training_curves(plt, metadata, out_dir),
               "recall_ndcg_at_k": _list_curves(plt, lists, out_dir),
               "predicted_vs_true": _rating_figure(plt, predicted, test_part.rating, out_dir)}
    report = {
        "model": recommender.path, "data": {"source": prepared.config.source, "name": data.name, **dataclasses.asdict(split_config),
                                            "test_users": int(len(users)), "test_ratings": int(len(test_part))},
        "headline": {name: {"recall@10": f["recall"][9], "ndcg@10": f["ndcg"][9],
                            f"recall@{depth}": f["recall"][depth - 1], "coverage@10": f["coverage@10"],
                            "popularity_percentile@10": f["popularity_percentile@10"]}
                     for name, f in lists.items()} if depth >= 10 else {},
        "lists": lists, "rmse": rmse_rows, "examples": example_rows,
        "figures": {name: os.path.basename(path) for name, path in figures.items()},
        "seconds": time.perf_counter() - start,
    }
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out_dir, "report.html"), "w") as f:
        f.write(render_html(report, {name: path for name, path in figures.items()}))
    log.info("report: written to %s in %.0fs", out_dir, report["seconds"])
    return report


def _embedded(path: str) -> str:
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(value):
        if isinstance(value, float):
            return f"{value:.4f}"
        if value is None:
            return "–"
        return html.escape(f"{value:,}" if isinstance(value, int) else str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict, figure_paths: dict) -> str:
    """The self-contained page (figures embedded as data URIs)."""
    data = report["data"]
    sections = [
        f"<h1>twostage report</h1><p>Model <code>{html.escape(report['model'])}</code>, data "
        f"<code>{html.escape(str(data['source']))}</code> ({html.escape(data['name'])}), {data['method']} split, seed "
        f"{data['seed']}, {data['test_fraction']:.0%} held out: {data['test_ratings']:,} ratings of "
        f"{data['test_users']:,} users. Every figure below was measured in this run on that held-out part.</p>",
        "<h2 id='headline'>Headline</h2>" + _table(
            ["list", "recall@10", "NDCG@10", "recall@100", "coverage@10", "popularity percentile@10"],
            [[name, h["recall@10"], h["ndcg@10"], next(v for k, v in h.items() if k.startswith("recall@") and
                                                        k != "recall@10"), h["coverage@10"],
              h["popularity_percentile@10"]] for name, h in report["headline"].items()])
        + "<p>Coverage: share of the catalog that appears in any user's top 10. Popularity percentile: "
          "mean popularity rank of the recommended movies (1.0 = the most rated movie).</p>",
        "<h2 id='curves'>Training and validation</h2>"
        f"<img alt='training curves' src='{_embedded(figure_paths['training_curves'])}'>",
        "<h2 id='lists'>Recall and NDCG at K = 1…100</h2>"
        f"<img alt='recall and NDCG at K' src='{_embedded(figure_paths['recall_ndcg_at_k'])}'>",
        "<h2 id='rmse'>Rating error</h2>" + _table(
            ["architecture", "RMSE", "MAE", "fit seconds", "parameters", "epochs"],
            [[r["architecture"], r["rmse"], r["mae"], f"{r['fit_seconds']:.1f}", r["parameters"], r["epochs"]]
             for r in report["rmse"]]),
        "<h2 id='ratings'>Predicted and true ratings</h2>"
        f"<img alt='predicted vs true ratings' src='{_embedded(figure_paths['predicted_vs_true'])}'>",
        "<h2 id='examples'>Example users</h2>" + "".join(
            f"<h3>user {html.escape(e['user_id'])}</h3><div class='pair'><div><h4>rated highly in training</h4>"
            + _table(["title", "rating"], [[m["title"], m["rating"]] for m in e["rated_highly"]])
            + "</div><div><h4>recommended (✓ = in the held-out part)</h4>"
            + _table(["title", "predicted rating", "held out"],
                     [[r["title"], r["predicted_rating"], "✓" if r["held_out"] else ""] for r in e["recommended"]])
            + "</div></div>" for e in report["examples"]),
    ]
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:left}th{background:#f3f3f3}img{max-width:100%}.pair{display:flex;gap:2em;flex-wrap:wrap}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>twostage report</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")
