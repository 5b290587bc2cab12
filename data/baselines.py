"""Classic collaborative-filtering baselines the seed systems compared against.

``popularity_scorer`` lives in data.metrics (it needs nothing but counts); this module holds
the item-based neighbourhood model.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from twostage.data.errors import TwostageError
from twostage.data.schema import Ratings

# Item x item similarities are dense: past this many movies they would not fit in memory.
MAX_ITEM_CF_MOVIES = 20_000


def item_pearson_scorer(catalog_ids: np.ndarray, train: Ratings, shrinkage: float = 10.0
                        ) -> Callable[[np.ndarray], np.ndarray]:
    """Item-based collaborative filtering with Pearson similarity.

    Each movie's ratings are centred on its mean; the similarity of two movies is the
    cosine of their centred rating vectors (Pearson over the users who rated both), shrunk
    towards zero by ``n / (n + shrinkage)`` for n co-raters and kept only when positive. A
    user's score for a movie is the similarity-weighted sum of the user's ratings of the
    movies they rated.

    Args:
      catalog_ids: movie ids in catalog order.
      train: the training ratings.
      shrinkage: co-rater count at which a similarity keeps half its value.

    Returns:
      user ids -> [users, catalog] scores, for HeldOutEvaluator.score_metrics.
    """
    catalog_ids = np.asarray(catalog_ids, dtype=str)
    if len(catalog_ids) > MAX_ITEM_CF_MOVIES:
        raise TwostageError(f"item-based CF needs a dense {len(catalog_ids)}^2 similarity matrix; "
                            f"it runs on catalogs of at most {MAX_ITEM_CF_MOVIES} movies")
    users = train.users.used()
    user_rows = train.users.positions(users)
    row_of = {u: i for i, u in enumerate(users.tolist())}
    cols = train.movies.positions(catalog_ids)
    keep = cols >= 0
    ratings = np.zeros((len(users), len(catalog_ids)), np.float32)
    rated = np.zeros_like(ratings)
    ratings[user_rows[keep], cols[keep]] = train.rating[keep]
    rated[user_rows[keep], cols[keep]] = 1.0
    means = ratings.sum(axis=0) / np.maximum(rated.sum(axis=0), 1.0)
    centred = (ratings - means) * rated
    norms = np.sqrt((centred ** 2).sum(axis=0))
    similarity = (centred.T @ centred) / np.maximum(np.outer(norms, norms), 1e-9)
    co_raters = rated.T @ rated
    similarity *= co_raters / (co_raters + shrinkage)
    np.fill_diagonal(similarity, 0.0)
    similarity = np.maximum(similarity, 0.0)

    def score(user_ids: np.ndarray) -> np.ndarray:
        rows = [row_of.get(u, -1) for u in np.asarray(user_ids, dtype=str).tolist()]
        profile = np.stack([ratings[r] if r >= 0 else np.zeros(len(catalog_ids), np.float32) for r in rows])
        return profile @ similarity

    return score
