"""How the final list combines the two stages, chosen on validation data.

Sorting candidates by predicted rating alone pushes obscure, highly rated movies up and can
make the list worse than retrieval's own order. The exported model scores each candidate as

    score = retrieval score + weight * predicted rating

and the weight is the one whose final lists are best (NDCG@10) for the validation users —
using the models chosen on the fit part, never the test part.
"""

from __future__ import annotations

import numpy as np

from twostage.data.schema import CodedIds, Movies, Ratings
from twostage.retrieval.train import ValidationCandidates
from twostage.serving.graph.candidate_ranking import blend

# 0 is retrieval's order; the largest is, in effect, the predicted rating's order.
BLEND_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 1000.0)


def candidate_pairs(candidates: ValidationCandidates, movies: Movies) -> Ratings:
    """Retrieval's validation candidates as (user, movie) rows, for the rating model."""
    columns = candidates.columns
    users = np.repeat(np.arange(len(candidates.user_ids), dtype=np.int32), columns.shape[1])
    return Ratings(CodedIds(users, np.asarray(candidates.user_ids)),
                   CodedIds(np.maximum(columns, 0).ravel().astype(np.int32), movies.movie_id),
                   np.zeros(columns.size, np.float32), np.zeros(columns.size, np.int64))


def choose_blend_weight(candidates: ValidationCandidates, predicted: np.ndarray, k: int = 10,
                        weights=BLEND_WEIGHTS) -> tuple[float, dict]:
    """The weight whose final top-k lists score best on the validation part.

    Args:
      candidates: retrieval's validation candidates (fit-part model).
      predicted: the fit-part rating model's ratings of ``candidate_pairs(candidates)``.
      k: the list length scored (NDCG@k).
      weights: the weights tried.

    Returns:
      The best weight and {weight: {"ndcg@k": ..., "recall@k": ...}} for every weight tried.
    """
    evaluator = candidates.evaluator
    columns = candidates.columns
    valid = columns >= 0
    predicted = np.asarray(predicted).reshape(columns.shape)
    figures = {}
    for weight in weights:
        score = np.where(valid, blend(np.where(valid, candidates.scores, 0.0), predicted, weight), -np.inf)
        order = np.argsort(-score, axis=1, kind="stable")[:, :k]
        ranked = np.take_along_axis(columns, order, axis=1)
        figures[weight] = evaluator.ranked_list_metrics(ranked, (k,))
    best = max(weights, key=lambda w: (figures[w][f"ndcg@{k}"], -w))
    return best, figures
