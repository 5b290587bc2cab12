"""EASE's item weights carried by the two towers.

EASE (data.classic) scores a user's unseen movies as their history times an item x item
matrix; its eigen form (data.classic.EaseSpectrum) splits that matrix into fixed input and
output item embeddings. The towers concatenate them to their trained embeddings, the
query side pooled over the user's history and times a weight, so that one dot product (and
so the index) scores two-tower + weight x EASE. Lambda and the weight are chosen on the
validation part; the factors served come from the whole training part.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from twostage.data.classic import CHOICE_METRIC, EASE_LAMBDAS, EaseOfPart, row_finder
from twostage.data.metrics import HeldOutEvaluator
from twostage.data.schema import Ratings
from twostage.modeling.pooling import RatedMoviesPooling
from twostage.modeling.tf_setup import require_legacy_keras

keras = require_legacy_keras()
log = logging.getLogger("twostage")

# EASE's share of the sum, in units of the two scores' spread (standard deviation) on the
# validation users. Not 0: on validation parts of a few thousand ratings, the towers alone beat
# the sum's smallest weight by noise (0.2%) in 2 of 10 test-like ml-100k runs, and dropping EASE
# then cost 3-4% NDCG@10 on held-out ratings; where EASE adds nothing, 0.1 costs about 0.5%
# (docs/quality.md). The weights past 1 let the sum stay close to EASE alone where the towers
# are the weaker model.
EASE_WEIGHTS = (0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.6, 2.5, 4.0)
# Validation users whose scores measure the two spreads (a sample is enough for a ratio).
SPREAD_USERS = 2048


class EaseFactors(keras.layers.Layer):
    """Fixed input and output item embeddings that the towers concatenate to theirs.

    Args:
      input_factors: [catalog, rank] catalog-position rows, pooled over a user's history
        (RatedMoviesPooling.pool_table), already times EASE's weight.
      output_factors: [catalog, rank] a movie's side.
    """

    def __init__(self, input_factors: np.ndarray, output_factors: np.ndarray, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.rank = int(input_factors.shape[1])
        self.input_factors = tf.Variable(input_factors, trainable=False, name="input_factors")
        self.output_factors = tf.Variable(self._with_unknown_row(output_factors), trainable=False,
                                          name="output_factors")

    @staticmethod
    def _with_unknown_row(output_factors: np.ndarray) -> np.ndarray:
        """Row 0 (an id outside the catalog, as IdEmbedding.index gives it) scores nothing."""
        return np.concatenate([np.zeros((1, output_factors.shape[1]), np.float32), output_factors])

    def set_factors(self, input_factors: np.ndarray, output_factors: np.ndarray):
        """Replaces the factors (the fit part's by the training part's) with ones of the same shape."""
        self.input_factors.assign(input_factors)
        self.output_factors.assign(self._with_unknown_row(output_factors))

    def query(self, pooling: RatedMoviesPooling, user_rows: Optional[tf.Tensor] = None,
              given_history: Optional[tf.RaggedTensor] = None) -> tf.Tensor:
        """[users, rank]: the input factors pooled over each user's baked-in or given history."""
        return pooling.pool_table(self.input_factors, user_rows, given_history)

    def candidate(self, movie_rows: tf.Tensor) -> tf.Tensor:
        """[movies, rank]: the output factors of catalog vocabulary rows (position + 1; 0 unknown)."""
        return tf.gather(self.output_factors, movie_rows)


@dataclasses.dataclass(frozen=True)
class EaseChoice:
    """EASE's setting in the towers, chosen on the validation part.

    Attributes:
      lam: EASE's L2 weight lambda.
      weight: its weight in the sum, in spreads (one of EASE_WEIGHTS).
      scale: the spread ratio (two-tower / EASE) the weight is in units of.
      rank: the factors' width.
      validation: {"lambda": {lambda: EASE alone's figures}, "weight": {weight: the sum's figures},
        "towers": the towers' figures alone}.
    """

    lam: float
    weight: float
    scale: float
    rank: int
    validation: dict

    def record(self) -> dict:
        """What the export's metadata keeps."""
        return {"lambda": self.lam, "weight": self.weight, "scale": self.scale, "rank": self.rank,
                "choice_metric": CHOICE_METRIC,
                "validation": {part: {str(k): v for k, v in figures.items()} for part, figures in self.validation.items()}}


def _with_ease(user_ids: np.ndarray, pooled: np.ndarray, output_factors: np.ndarray, weight: float,
               tower_scores: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> Callable:
    """A scorer of ``user_ids``' batches: towers (if given) + weight x EASE, from the users'
    pooled [users, rank] factors, so that no [users, catalog] matrix is kept."""
    rows_of = row_finder(np.asarray(user_ids, dtype=str))

    def score(ids: np.ndarray) -> np.ndarray:
        ease = weight * (pooled[rows_of(ids)] @ output_factors.T)
        return ease if tower_scores is None else tower_scores(ids) + ease

    return score


def choose_ease(catalog_ids: np.ndarray, fit: Ratings, evaluator: HeldOutEvaluator,
                tower_scores: Callable[[np.ndarray], np.ndarray], rank: int) -> tuple[EaseChoice, tuple]:
    """Chooses EASE's lambda (alone) and then its weight beside the towers, on validation.

    Args:
      catalog_ids: the catalog, in position order.
      fit: the fit part (the towers' training data while choosing).
      evaluator: the validation part's evaluator (its users and held-out ratings).
      tower_scores: user ids -> [users, catalog] scores of the towers trained on ``fit``.
      rank: the factors' width (at most the history's rank).

    Returns:
      The choice and the fit part's (input factors times the weight, output factors).
    """
    factors = EaseOfPart(catalog_ids, fit, spectrum=True)
    users = evaluator.user_ids
    lambdas = {}
    for lam in EASE_LAMBDAS:
        input_factors, output_factors = factors.spectrum.factors(lam, rank)
        scorer = _with_ease(users, factors.pooled(users, input_factors), output_factors, 1.0)
        lambdas[lam] = evaluator.score_metrics(scorer, ks=(10, 100))
    lam = max(EASE_LAMBDAS, key=lambda value: lambdas[value][CHOICE_METRIC])
    input_factors, output_factors = factors.spectrum.factors(lam, rank)
    pooled = factors.pooled(users, input_factors)
    sample = users[:SPREAD_USERS]
    scale = float(np.std(tower_scores(sample)) / max(float(np.std(pooled[:SPREAD_USERS] @ output_factors.T)), 1e-12))
    weights = {weight: evaluator.score_metrics(_with_ease(users, pooled, output_factors, weight * scale, tower_scores),
                                               ks=(10, 100))
               for weight in EASE_WEIGHTS}
    weight = max(EASE_WEIGHTS, key=lambda value: weights[value][CHOICE_METRIC])
    alone = evaluator.score_metrics(tower_scores, ks=(10, 100))
    log.info("retrieval: EASE lambda %g in the towers at %g spreads (validation %s %.4f; towers alone %.4f, "
             "EASE alone %.4f)", lam, weight, CHOICE_METRIC, weights[weight][CHOICE_METRIC],
             alone[CHOICE_METRIC], lambdas[lam][CHOICE_METRIC])
    choice = EaseChoice(lam, weight, scale, int(input_factors.shape[1]),
                        {"lambda": lambdas, "weight": weights, "towers": alone})
    return choice, (input_factors * np.float32(weight * scale), output_factors)


def training_factors(catalog_ids: np.ndarray, train: Ratings, choice: EaseChoice) -> tuple:
    """The chosen EASE's (weighted input, output) factors from the whole training part, padded
    with zero columns to the chosen rank where this history has fewer eigenvalues."""
    input_factors, output_factors = EaseOfPart(catalog_ids, train, spectrum=True).spectrum.factors(
        choice.lam, choice.rank)
    pad = ((0, 0), (0, choice.rank - input_factors.shape[1]))
    return (np.pad(input_factors, pad) * np.float32(choice.weight * choice.scale), np.pad(output_factors, pad))
