"""Nearest-neighbour indexes over the candidate embeddings.

Both indexes answer ``index(query_embeddings, k=depth) -> (scores, catalog positions)``
(the :class:`NeighbourIndex` protocol); an exact one also scores the whole catalog in the
open, so that a serving graph can drop exclusions before its top-k (:class:`ExactNeighbourIndex`).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Protocol

import numpy as np
import tensorflow as tf

from twostage.retrieval.config import IndexConfig

log = logging.getLogger("twostage")

# Below this many candidates ScaNN scores every candidate exactly (its brute-force scorer):
# partitioning and hashing buy no speed on a catalog this small (docs/serving.md).
SMALL_CATALOG = 20_000


class NeighbourIndex(Protocol):
    """What a serving graph needs of an index (compare TFRS's abstract ``TopK``)."""

    def is_exact(self) -> bool:
        """Whether the index is an :class:`ExactNeighbourIndex`: it scores every candidate
        in the open, so exclusions can be dropped before its top-k instead of retrieving
        extra neighbours to make room for them."""

    def __call__(self, queries: tf.Tensor, k=None) -> tuple[tf.Tensor, tf.Tensor]:
        """(scores, catalog positions) of the top k candidates of [batch, dim] queries, [batch, k] each."""


class ExactNeighbourIndex(NeighbourIndex, Protocol):
    """An index that scores the whole catalog (``is_exact()`` is True)."""

    def scores(self, queries: tf.Tensor) -> tf.Tensor:
        """[batch, num candidates] scores of every candidate."""

    def top_k_excluding(self, scores: tf.Tensor, excluded: tf.Tensor, k) -> tuple[tf.Tensor, tf.Tensor]:
        """(scores, columns) of the top k of ``scores`` where ``excluded`` is False."""


def scann_parameters(num_candidates: int, depth: int, config: IndexConfig = IndexConfig()) -> dict:
    """ScaNN settings for a catalog size; explicit values in ``config`` win.

    Args:
      num_candidates: catalog size.
      depth: neighbours retrieved per query.
      config: the index config (None fields are chosen here).

    Returns:
      {"scoring": "brute-force"} for a small catalog given no tree settings, else
      {"scoring": "asymmetric-hashing"} with num_leaves, num_leaves_to_search and
      num_reordering_candidates.
    """
    explicit = (config.num_leaves, config.num_leaves_to_search, config.num_reordering_candidates)
    if num_candidates < SMALL_CATALOG and not any(explicit):
        return {"scoring": "brute-force"}
    # About sqrt(n) partitions, a tenth of them searched: recall@10 near 0.997 on a million
    # clustered embeddings at 18x brute force's speed (docs/benchmarks.md).
    leaves = max(1, int(math.sqrt(num_candidates)))
    params = {
        "scoring": "asymmetric-hashing",
        "num_leaves": config.num_leaves or leaves,
        "num_leaves_to_search": config.num_leaves_to_search or max(10, leaves // 10),
        "num_reordering_candidates": config.num_reordering_candidates or max(4 * depth, 500),
    }
    params["num_leaves"] = min(params["num_leaves"], num_candidates)
    params["num_leaves_to_search"] = min(params["num_leaves_to_search"], params["num_leaves"])
    return params


def _scann_ops():
    # Imported when a ScaNN index is built or traced: a brute-force export needs no ScaNN.
    from scann.scann_ops.py import scann_ops

    return scann_ops


class ScannIndex(tf.Module):
    """A ScaNN searcher over the candidate embeddings, held in the module (ScaNN's TF ops).

    What TFRS's ScaNN layer builds (a partition tree, asymmetric hashing and exact
    re-ordering of the best candidates), with ScaNN's exact brute-force scorer as well for
    catalogs where that is faster (see ``scann_parameters``).

    Args:
      candidate_embeddings: [num candidates, dim], catalog order.
      depth: default neighbours per query.
      params: ``scann_parameters``.
    """

    def __init__(self, candidate_embeddings: np.ndarray, depth: int, params: dict):
        super().__init__(name="scann_index")
        builder = _scann_ops().builder(tf.constant(candidate_embeddings, tf.float32), depth, "dot_product")
        if params["scoring"] == "brute-force":
            builder = builder.score_brute_force()
        else:
            builder = builder.tree(num_leaves=params["num_leaves"], num_leaves_to_search=params["num_leaves_to_search"],
                                   training_iterations=12).score_ah(2).reorder(params["num_reordering_candidates"])
        # A unique name: two indexes in one process must not share a searcher.
        self.searcher = builder.build(shared_name=f"scann_index/{uuid.uuid4()}").serialize_to_module()
        self.depth = depth

    def is_exact(self) -> bool:
        """False: ScaNN returns neighbours, not the whole catalog's scores (even where it scores them all)."""
        return False

    def __call__(self, queries: tf.Tensor, k=None):
        """(scores, catalog positions) of the top k candidates, [batch, k] each."""
        searcher = _scann_ops().searcher_from_module(self.searcher)
        result = searcher.search_batched_parallel(queries, final_num_neighbors=self.depth if k is None else k)
        return result.distances, result.indices


def build_scann_index(candidate_embeddings: np.ndarray, depth: int, config: IndexConfig = IndexConfig()) -> ScannIndex:
    """A ScaNN index over the candidate embeddings, its settings chosen from the catalog size.

    Args:
      candidate_embeddings: [num candidates, dim], catalog order.
      depth: default neighbours per query.
      config: explicit ScaNN settings (None: chosen from the catalog size).

    Returns:
      The index; it returns catalog positions (int32).
    """
    params = scann_parameters(len(candidate_embeddings), depth, config)
    log.info("building ScaNN index over %d candidates (%s)", len(candidate_embeddings),
             ", ".join(f"{k}={v}" for k, v in params.items()))
    start = time.perf_counter()
    index = ScannIndex(candidate_embeddings, depth, params)
    log.info("ScaNN index built in %.1fs", time.perf_counter() - start)
    return index


def top_k_excluding(scores: tf.Tensor, excluded: tf.Tensor, k) -> tuple:
    """(scores, column indices) of the top k of [batch, n] scores where ``excluded`` (the same
    shape, bool) is False; excluded ones score -inf. Ties keep column order (top-k puts the
    lower index first), so scores already sorted stay in their order."""
    scores = tf.where(excluded, tf.constant(-np.inf, scores.dtype), scores)
    return tf.math.top_k(scores, k=k)


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

    def is_exact(self) -> bool:
        return True

    def scores(self, queries: tf.Tensor) -> tf.Tensor:
        """[batch, num candidates] dot products."""
        return tf.matmul(queries, self.candidates, transpose_b=True)

    def __call__(self, queries: tf.Tensor, k=None):
        """(scores, catalog positions) of the top k candidates, [batch, k] each."""
        scores, positions = tf.math.top_k(self.scores(queries), k=self.depth if k is None else k)
        return scores, positions

    top_k_excluding = staticmethod(top_k_excluding)


def build_brute_force_index(candidate_embeddings: np.ndarray, depth: int) -> ExactIndex:
    """An exact matmul + top-k index (stock TensorFlow ops only; see ExactIndex).

    Args:
      candidate_embeddings: [num candidates, dim], catalog order.
      depth: default neighbours per query.

    Returns:
      The index; it returns catalog positions (int32).
    """
    return ExactIndex(candidate_embeddings, depth)


def build_index(candidate_embeddings: np.ndarray, depth: int, config: IndexConfig = IndexConfig()) -> NeighbourIndex:
    """The index ``config.kind`` names (see build_scann_index / build_brute_force_index)."""
    if config.kind == "scann":
        return build_scann_index(candidate_embeddings, depth, config)
    return build_brute_force_index(candidate_embeddings, depth)
