"""Nearest-neighbour indexes over the candidate embeddings.

Both indexes answer ``index(query_embeddings, k=depth) -> (scores, catalog positions)``,
so the serving graph does not care which one it holds.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twostage.retrieval.config import IndexConfig

log = logging.getLogger("twostage")

# Below this many candidates a ScaNN tree is searched exhaustively: partitioning buys no
# speed on a catalog this small, and searching every leaf keeps recall exact in practice.
SMALL_CATALOG = 20_000


def scann_parameters(num_candidates: int, depth: int, config: IndexConfig = IndexConfig()) -> dict:
    """ScaNN settings for a catalog size; explicit values in ``config`` win.

    Args:
      num_candidates: catalog size.
      depth: neighbours retrieved per query.
      config: the index config (None fields are chosen here).

    Returns:
      num_leaves, num_leaves_to_search and num_reordering_candidates.
    """
    if num_candidates < SMALL_CATALOG:
        leaves = max(1, int(math.sqrt(num_candidates) / 2))
        to_search = leaves
    else:
        # About sqrt(n) partitions, a tenth of them searched: on 1M clustered 64-d embeddings
        # (benchmarks/serving.py) recall@10 0.997 at 18x brute force, where 2*sqrt(n) leaves
        # with a twentieth searched gave 0.915 and an eighth 0.962.
        leaves = int(math.sqrt(num_candidates))
        to_search = max(10, leaves // 10)
    params = {
        "num_leaves": config.num_leaves or leaves,
        "num_leaves_to_search": config.num_leaves_to_search or to_search,
        "num_reordering_candidates": config.num_reordering_candidates or max(4 * depth, 500),
    }
    params["num_leaves"] = min(params["num_leaves"], num_candidates)
    params["num_leaves_to_search"] = min(params["num_leaves_to_search"], params["num_leaves"])
    return params


def build_scann_index(candidate_embeddings: np.ndarray, depth: int, config: IndexConfig = IndexConfig()):
    """A TFRS ScaNN layer over the candidate embeddings.

    Args:
      candidate_embeddings: [num candidates, dim], catalog order.
      depth: default neighbours per query.
      config: explicit ScaNN settings (None: chosen from the catalog size).

    Returns:
      The indexed layer; it returns catalog positions (int32).
    """
    params = scann_parameters(len(candidate_embeddings), depth, config)
    log.info("building ScaNN index over %d candidates (%s)", len(candidate_embeddings),
             ", ".join(f"{k}={v}" for k, v in params.items()))
    start = time.perf_counter()
    layer = tfrs.layers.factorized_top_k.ScaNN(k=depth, distance_measure="dot_product", **params)
    layer.index(tf.constant(candidate_embeddings, dtype=tf.float32))
    log.info("ScaNN index built in %.1fs", time.perf_counter() - start)
    return layer


class ExactIndex(tf.Module):
    """Exact top-k by dot product (matmul + top-k): stock TensorFlow ops only.

    Besides ``index(queries, k)``, it can leave out excluded candidates before the top-k
    (``top_k_excluding``), so a serving graph need not retrieve extra candidates to make
    room for the ones it drops.

    Args:
      candidate_embeddings: [num candidates, dim], catalog order.
      depth: default neighbours per query.
    """

    def __init__(self, candidate_embeddings: np.ndarray, depth: int):
        super().__init__(name="exact_index")
        self.candidates = tf.Variable(np.asarray(candidate_embeddings, np.float32), trainable=False,
                                      name="candidates")
        self.depth = depth

    def scores(self, queries: tf.Tensor) -> tf.Tensor:
        """[batch, num candidates] dot products."""
        return tf.matmul(queries, self.candidates, transpose_b=True)

    def __call__(self, queries: tf.Tensor, k=None):
        """(scores, catalog positions) of the top k candidates, [batch, k] each."""
        scores, positions = tf.math.top_k(self.scores(queries), k=self.depth if k is None else k)
        return scores, positions

    @staticmethod
    def top_k_excluding(scores: tf.Tensor, excluded: tf.Tensor, k) -> tuple:
        """Top k of [batch, num candidates] scores where ``excluded`` (the same shape, bool) is
        False; excluded ones score -inf."""
        scores = tf.where(excluded, tf.constant(-np.inf, scores.dtype), scores)
        return tf.math.top_k(scores, k=k)


def build_brute_force_index(candidate_embeddings: np.ndarray, depth: int) -> ExactIndex:
    """An exact matmul + top-k index (stock TensorFlow ops only; see ExactIndex).

    Args:
      candidate_embeddings: [num candidates, dim], catalog order.
      depth: default neighbours per query.

    Returns:
      The index; it returns catalog positions (int32).
    """
    return ExactIndex(candidate_embeddings, depth)


def build_index(candidate_embeddings: np.ndarray, depth: int, config: IndexConfig = IndexConfig()):
    """The index ``config.kind`` names (see build_scann_index / build_brute_force_index)."""
    if config.kind == "scann":
        return build_scann_index(candidate_embeddings, depth, config)
    return build_brute_force_index(candidate_embeddings, depth)
