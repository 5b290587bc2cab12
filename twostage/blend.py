"""How the final list combines the two stages, fitted on validation data.

The exported model scores each candidate as

    score = retrieval score + rating_weight * predicted rating + movie term
    movie term = popularity_weight * log(1 + training ratings) + usual_weight * usual rating

where a movie's usual rating is the rating model's mean prediction for it over the validation
users' candidates: beside the predicted rating it separates what this user is predicted to
think of the movie from what everybody is. The weights are those of a conditional logit fitted
by maximum likelihood: a softmax over each validation user's candidates, whose positives are
the user's validation movies, with the retrieval score as one more feature; dividing by its
coefficient puts them in retrieval-score units. A likelihood over every candidate is steadier
than a search for the best NDCG@10 (docs/quality.md, "The final list's blend").

All of it uses the models chosen on the fit part and the validation part, never the test part.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from scipy.optimize import minimize

from twostage.data.schema import CodedIds, Movies, Ratings
from twostage.retrieval.train import ValidationCandidates
from twostage.serving.graph.candidate_ranking import FinalBlend, blend

log = logging.getLogger("twostage")

# The list length the validation figures are given at.
FIGURES_K = 10


def formula(rating_weight: float, popularity_weight: float | None = None, usual_weight: float | None = None) -> str:
    """The final score as it reads ("retrieval score + 0.38 x predicted rating - ..."); the
    movie terms only where given (exports from before them have none)."""
    terms = [(rating_weight, "predicted rating")]
    if popularity_weight is not None:
        terms += [(popularity_weight, "log(1 + training ratings)"),
                  (usual_weight, "the movie's usual predicted rating")]
    return "retrieval score" + "".join(f" {'-' if w < 0 else '+'} {abs(w):.4g} x {what}" for w, what in terms)


def candidate_pairs(candidates: ValidationCandidates, movies: Movies) -> Ratings:
    """Retrieval's validation candidates as (user, movie) rows, for the rating model."""
    columns = candidates.columns
    users = np.repeat(np.arange(len(candidates.user_ids), dtype=np.int32), columns.shape[1])
    return Ratings(CodedIds(users, np.asarray(candidates.user_ids)),
                   CodedIds(np.maximum(columns, 0).ravel().astype(np.int32), movies.movie_id),
                   np.zeros(columns.size, np.float32), np.zeros(columns.size, np.int64))


def usual_ratings(columns: np.ndarray, predicted: np.ndarray, num_movies: int) -> np.ndarray:
    """[catalog] each movie's mean predicted rating over the lists it is a candidate in; the
    mean of every prediction for movies in none.

    Args:
      columns: [users, n] catalog positions (-1 pads).
      predicted: [users, n] their predicted ratings.
      num_movies: the catalog's size.
    """
    valid = columns >= 0
    flat, values = columns[valid], np.asarray(predicted, np.float64)[valid]
    counts = np.bincount(flat, minlength=num_movies)
    totals = np.bincount(flat, values, minlength=num_movies)
    overall = float(values.mean()) if len(values) else 0.0
    return np.where(counts > 0, totals / np.maximum(counts, 1), overall)


def conditional_logit(features: np.ndarray, valid: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Maximum-likelihood coefficients of a softmax over each list.

    Args:
      features: [f, lists, n] each candidate's features.
      valid: [lists, n] bool, the candidates that are there.
      positives: [lists, n] bool, the chosen candidates (any number per list; lists with none
        add nothing).

    Returns:
      [f] the coefficients.
    """
    positives = positives & valid
    counts = positives.sum(axis=1).astype(np.float64)
    features = np.where(valid[np.newaxis], features, 0.0)
    chosen = (features * positives[np.newaxis]).sum(axis=(1, 2))

    def loss_and_gradient(theta):
        logits = np.where(valid, np.tensordot(theta, features, axes=1), -np.inf)
        top = logits.max(axis=1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        weights = np.exp(logits - top)
        norm = weights.sum(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.maximum(norm[:, 0], 1e-300))
        probability = weights / np.maximum(norm, 1e-300)
        loss = -(float(np.tensordot(theta, chosen, axes=1)) - float(counts @ log_norm))
        expected = (features * (probability * counts[:, np.newaxis])[np.newaxis]).sum(axis=(1, 2))
        return loss, expected - chosen

    return minimize(loss_and_gradient, np.zeros(len(features)), jac=True, method="L-BFGS-B").x


def _movie_terms(popularity_weight: float, usual_weight: float, popularity: np.ndarray,
                 usual_rating: np.ndarray) -> np.ndarray:
    """[catalog] each movie's term: popularity_weight x log(1 + ratings) + usual_weight x usual rating."""
    return popularity_weight * np.log1p(popularity) + usual_weight * usual_rating


@dataclasses.dataclass(frozen=True)
class BlendChoice:
    """The final score's weights, fitted on validation, in the validation model's retrieval units.

    Attributes:
      rating_weight: the predicted rating's.
      popularity_weight: log(1 + the movie's training ratings)'.
      usual_weight: the movie's usual rating's.
      usual_rating: [catalog] each movie's usual rating (``usual_ratings``).
      figures: validation recall@10 and NDCG@10 of retrieval's own order ("retrieval") and of
        the fitted blend's ("blend"; the same candidates it was fitted on).
    """

    rating_weight: float
    popularity_weight: float
    usual_weight: float
    usual_rating: np.ndarray
    figures: dict

    def movie_terms(self, popularity: np.ndarray) -> np.ndarray:
        """[catalog] each movie's term, given its training ratings."""
        return _movie_terms(self.popularity_weight, self.usual_weight, popularity, self.usual_rating)

    def served(self, popularity: np.ndarray, score_spread: float) -> FinalBlend:
        """This blend on the served retrieval scores, whose spread is ``score_spread`` times the
        validation model's (TrainedRetrieval.score_spread), and the whole training part's counts."""
        return FinalBlend(self.rating_weight * score_spread,
                          (self.movie_terms(popularity) * score_spread).astype(np.float32))

    def record(self) -> dict:
        """What the export's metadata keeps of it."""
        return {"rating_weight": self.rating_weight, "popularity_weight": self.popularity_weight,
                "usual_weight": self.usual_weight, "validation": self.figures}


def fit_blend(candidates: ValidationCandidates, predicted: np.ndarray, popularity: np.ndarray) -> BlendChoice:
    """Fits the final score's weights on the validation users' candidates.

    Args:
      candidates: retrieval's validation candidates (fit-part model).
      predicted: the fit-part rating model's ratings of ``candidate_pairs(candidates)``.
      popularity: [catalog] the fit part's rating counts.

    Returns:
      The weights; all 0 (retrieval's own order) where the retrieval score's coefficient is not
      positive, a fit no list order can be built on.
    """
    columns, evaluator = candidates.columns, candidates.evaluator
    valid = columns >= 0
    at = np.maximum(columns, 0)
    predicted = np.asarray(predicted, np.float64).reshape(columns.shape)
    usual = usual_ratings(columns, predicted, evaluator.num_items)
    scores = np.where(valid, candidates.scores, 0.0)
    features = np.stack([scores, predicted, np.log1p(popularity)[at], usual[at]])
    theta = conditional_logit(features, valid, evaluator.held_out(columns))
    if theta[0] <= 0:
        log.warning("final list: the fitted retrieval coefficient is %.3g, not positive; keeping retrieval's order",
                    theta[0])
        weights = np.zeros(3)
    else:
        weights = theta[1:] / theta[0]
    rating_weight, popularity_weight, usual_weight = (float(w) for w in weights)
    terms = _movie_terms(popularity_weight, usual_weight, popularity, usual)
    final = blend(scores, predicted, rating_weight, terms[at])

    def figures(score):
        order = np.argsort(-np.where(valid, score, -np.inf), axis=1, kind="stable")[:, :FIGURES_K]
        return evaluator.ranked_list_metrics(np.take_along_axis(columns, order, axis=1), (FIGURES_K,))

    return BlendChoice(rating_weight, popularity_weight, usual_weight, usual.astype(np.float32),
                       {"retrieval": figures(scores), "blend": figures(final)})
