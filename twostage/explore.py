"""``twostage explore``: what the model learned about movies, as a map and as lists.

* a 2-D t-SNE map of the candidate embeddings, coloured by each movie's first genre;
* k-means clusters of the embeddings, each listed with its most rated titles;
* the movies with the largest and smallest learned rating bias;
* the nearest neighbours ("similar movies") of the most rated titles.

Reads the SavedModel (embeddings, titles, popularity, the rating model's movie biases)
and, for genres, the data the model was trained on when it can be loaded.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Optional

import numpy as np

from twostage.data.errors import TwostageError
from twostage.serving.artifact.layout import check_output_folder
from twostage.serving.artifact.loading import load_export
from twostage.serving.clients.recommender import Recommender

log = logging.getLogger("twostage")


def _genres(metadata: dict, source: Optional[str], catalog_ids: np.ndarray) -> Optional[np.ndarray]:
    """Each catalog movie's first genre, or None when the training data cannot be read."""
    from twostage.data import TwostageError, load_dataset
    from twostage.pipeline import data_config_from_record

    config = data_config_from_record(metadata["data"])
    try:
        movies = load_dataset(source or config.source, config.synthetic).movies
    except (TwostageError, OSError) as err:
        log.warning("explore: no genres (%s); the map is coloured by cluster", err)
        return None
    first = {m: (g[0] if g else "(none)") for m, g in zip(movies.movie_id.tolist(), movies.genres)}
    return np.asarray([first.get(m, "(none)") for m in catalog_ids.tolist()], dtype=object)


def explore(model_path: str, out_dir: str, source: Optional[str] = None, clusters: Optional[int] = None,
            seed: int = 0) -> dict:
    """Writes movie_map.png, explore.txt and explore.json to ``out_dir``.

    Args:
      model_path: the export.
      out_dir: where to write.
      source: data source for genres (default: the one the model was trained on).
      clusters: k of k-means (default: about one per 100 movies, 4 to 20).
      seed: seed of t-SNE and k-means.

    Returns:
      The JSON object written.
    """
    from sklearn.cluster import KMeans
    from sklearn.manifold import TSNE

    check_output_folder(out_dir)
    loaded, version_dir, metadata = load_export(model_path)
    recommender = Recommender(loaded, version_dir, metadata)
    catalog_ids, titles = recommender.catalog()
    if clusters is not None and not 1 <= clusters <= len(catalog_ids):
        raise TwostageError(f"--clusters must be from 1 to {len(catalog_ids)} (the movies in the catalog), "
                            f"got {clusters}")
    os.makedirs(out_dir, exist_ok=True)
    embeddings = loaded.candidate_embeddings.numpy()
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    popularity = loaded.popularity.numpy()

    k = clusters or int(np.clip(len(catalog_ids) // 100, 4, 20))
    log.info("explore: k-means with %d clusters over %d movies", k, len(catalog_ids))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(unit)
    start = time.perf_counter()
    log.info("explore: t-SNE map of %d movies (the slow step: about half a minute per 2,000 movies on 2 cores)",
             len(unit))
    points = TSNE(n_components=2, init="pca", perplexity=float(min(30, max(5, len(unit) // 10), len(unit) - 1)),
                  random_state=seed).fit_transform(unit)
    log.info("explore: t-SNE map done in %.0fs", time.perf_counter() - start)
    genres = _genres(metadata, source, catalog_ids)

    cluster_rows = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        top = members[np.argsort(-popularity[members], kind="stable")][:8]
        cluster_rows.append({"cluster": c, "size": int(len(members)), "titles": [str(titles[i]) for i in top],
                             "movie_ids": [str(catalog_ids[i]) for i in members]})

    bias = None
    # The precomputed scorer holds [movies + 1, heads] biases, one column per averaged rating
    # model (the last row: a movie not in the catalog): their mean.
    scorer_bias = getattr(getattr(loaded, "rating_scorer", None), "movie_bias", None)
    if scorer_bias is not None:
        bias = scorer_bias.numpy().mean(axis=1)[: len(catalog_ids)]
    biased = None
    if bias is not None:
        rated = np.flatnonzero(popularity >= 5)  # a bias learned from a handful of ratings says little
        order = rated[np.argsort(-bias[rated], kind="stable")]
        biased = {"largest": [{"title": str(titles[i]), "bias": float(bias[i])} for i in order[:10]],
                  "smallest": [{"title": str(titles[i]), "bias": float(bias[i])} for i in order[::-1][:10]]}

    famous = np.argsort(-popularity, kind="stable")[:5]
    neighbours = {str(titles[i]): [m.title for m in recommender.similar_movies(str(catalog_ids[i]), k=5)]
                  for i in famous}

    _draw_map(points, genres, labels, titles, popularity, os.path.join(out_dir, "movie_map.png"))
    result = {"model": version_dir, "clusters": cluster_rows, "biases": biased, "neighbours": neighbours,
              "coloured_by": "genre" if genres is not None else "cluster",
              "map": [{"movie_id": str(m), "x": float(x), "y": float(y), "cluster": int(c)}
                      for m, (x, y), c in zip(catalog_ids, points, labels)]}
    with open(os.path.join(out_dir, "explore.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(out_dir, "explore.txt"), "w") as f:
        f.write(render_text(result))
    return result


def _draw_map(points, genres, labels, titles, popularity, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 8.5))
    groups = genres if genres is not None else np.asarray([f"cluster {c}" for c in labels], dtype=object)
    names, counts = np.unique(groups, return_counts=True)
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(names[np.argsort(-counts)]):
        mask = groups == name
        ax.scatter(points[mask, 0], points[mask, 1], s=9, alpha=0.7, color=cmap(i % 20), label=f"{name} ({mask.sum()})")
    # Name the best-known movies, skipping any whose label would land on one already placed.
    span = np.ptp(points, axis=0) + 1e-9
    placed = []
    for i in np.argsort(-popularity, kind="stable")[:30]:
        spot = points[i] / span
        if all(abs(spot[0] - x) > 0.12 or abs(spot[1] - y) > 0.03 for x, y in placed):
            ax.annotate(str(titles[i])[:30], points[i], fontsize=7, alpha=0.85,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.6, "lw": 0})
            placed.append(spot)
        if len(placed) == 8:
            break
    ax.set(title="Movie embeddings (candidate tower), t-SNE", xlabel="t-SNE dimension 1 (no unit)",
           ylabel="t-SNE dimension 2 (no unit)")
    ax.legend(title="first genre" if genres is not None else "cluster", fontsize=7, markerscale=2, loc="best", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_text(result: dict) -> str:
    lines = [f"Movie map of {result['model']} (coloured by {result['coloured_by']}): movie_map.png", ""]
    lines.append("Clusters (k-means over the movie embeddings), most rated titles first:")
    for c in result["clusters"]:
        lines.append(f"  cluster {c['cluster']} ({c['size']} movies): {'; '.join(c['titles'])}")
    if result["biases"]:
        lines += ["", "Largest learned rating bias (movies rated at least 5 times):"]
        lines += [f"  {b['bias']:+.3f}  {b['title']}" for b in result["biases"]["largest"]]
        lines += ["", "Smallest learned rating bias:"]
        lines += [f"  {b['bias']:+.3f}  {b['title']}" for b in result["biases"]["smallest"]]
    lines += ["", "Nearest neighbours of the most rated movies:"]
    for title, near in result["neighbours"].items():
        lines.append(f"  {title}: {'; '.join(near)}")
    return "\n".join(lines) + "\n"
