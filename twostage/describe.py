"""``twostage describe``: what an export holds, read from its metadata and its tables."""

from __future__ import annotations

import os

from twostage.serving.artifact.layout import read_metadata, resolve_model_path


def _size_on_disk(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


def _best(stage: dict) -> dict:
    history = stage.get("history") or []
    best = stage.get("best_epoch")
    return history[best - 1]["validation"] if best and len(history) >= best else {}


# The pipeline's stages in the order they run (the metadata's keys are sorted).
_ORDER = {"prepare": 0, "retrieval": 1, "ranking": 2, "blend": 3}


def describe(model_path: str) -> dict:
    """Data, sizes, feature values, index, settings and validation figures of the newest
    version under ``model_path``.

    Raises:
      ModelError: no export there, or one that cannot be loaded.
    """
    from twostage.serving.clients.recommender import Recommender

    version_dir = resolve_model_path(model_path)
    metadata = read_metadata(version_dir)
    recommender = Recommender.load(version_dir)
    data = metadata["data"]
    return {
        "model": version_dir,
        "created": metadata.get("created"),
        "size_bytes": _size_on_disk(version_dir),
        "data": {key: data.get(key) for key in ("name", "source", "split", "num_ratings", "merged_ratings",
                                                "num_train", "rating_scale")},
        "catalog_movies": int(len(recommender.catalog()[0])),
        # An export whose requests carry the history knows no user by id.
        "known_users": 0 if metadata["serving"].get("request_history") else int(len(recommender.known_users())),
        "user_feature_values": data.get("feature_values", {name: None for name in data.get("user_features", [])}),
        "index": metadata["index"],
        "serving": metadata["serving"],
        "retrieval": {"best_epoch": metadata["retrieval"]["best_epoch"], "validation": _best(metadata["retrieval"]),
                      "seconds": metadata["retrieval"]["seconds"]},
        "ranking": {"best_epoch": metadata["ranking"]["best_epoch"], "validation": _best(metadata["ranking"]),
                    "seconds": metadata["ranking"]["seconds"], "architecture": metadata["ranking"]["config"].get(
                        "architecture")},
        "blend_weight": metadata["blend"]["weight"],
        # Served units: the fitted weights times the served scores' spread. Exports from before
        # the movie terms keep neither.
        "movie_term_weights": {name: metadata["blend"][name] * metadata["blend"].get("score_spread", 1.0)
                               for name in ("popularity_weight", "usual_weight") if name in metadata["blend"]},
        # Exports from before the choice do not say: evaluated as of now.
        "as_of_last_rating": metadata.get("availability", {}).get("as_of_last_rating", False),
        "train_seconds": metadata.get("train_seconds"),
        "stages": metadata.get("stages", {}),
    }


def render_text(info: dict) -> str:
    from twostage.blend import formula

    data = info["data"]
    split = data.get("split") or {}
    lines = [
        f"{info['model']} (created {info['created']}, {info['size_bytes'] / 1e6:.1f} MB on disk)",
        f"data: {data['name']} from {data['source']}; {data['num_ratings']:,} ratings "
        f"({data.get('merged_ratings') or 0:,} re-ratings merged), {data['num_train']:,} trained on; "
        f"{split.get('method')} split, seed {split.get('seed')}, test fraction {split.get('test_fraction')}",
        f"catalog: {info['catalog_movies']:,} movies; " + ("requests carry each user's history (no user table)"
                                                          if info["serving"].get("request_history")
                                                          else f"known users: {info['known_users']:,}"),
        f"index: {info['index']['kind']} ({info['index']['num_candidates']} candidates a user, "
        f"up to {info['index']['max_depth']} deep); k up to {info['serving']['max_k']}",
        f"retrieval: best epoch {info['retrieval']['best_epoch']}, validation "
        + ", ".join(f"{k} {v:.4f}" for k, v in info["retrieval"]["validation"].items()),
        f"ranking ({info['ranking']['architecture']}): best epoch {info['ranking']['best_epoch']}, validation "
        + ", ".join(f"{k} {v:.4f}" for k, v in info["ranking"]["validation"].items()),
        "final list: " + formula(info["blend_weight"], **info["movie_term_weights"]),
        "evaluate asks each user's lists as of their last training rating (chosen on validation)"
        if info["as_of_last_rating"] else "evaluate asks each user's lists as of now (every movie)",
        *(f"{stage}: {entry['seconds']:.1f}s" + (f", {entry['examples_per_second']:,.0f} training examples/s"
                                                 if "examples_per_second" in entry else "")
          + f", peak memory so far {entry['peak_rss_bytes'] / 1e9:.2f} GB"
          for stage, entry in sorted(info["stages"].items(), key=lambda item: _ORDER.get(item[0], len(_ORDER)))),
        "user features a new user may give (recommend --age/--gender/--occupation/--zip):",
    ]
    values = info["user_feature_values"]
    if not values:
        lines.append("  none: this data has no user features; new users get the most popular movies")
    for name, known in values.items():
        shown = "(not recorded in this export)" if known is None else ", ".join(known[:40]) + (
            f" ... ({len(known)} in all)" if len(known) > 40 else "")
        lines.append(f"  {name}: {shown}")
    return "\n".join(lines)
