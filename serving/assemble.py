"""Joins the trained stages into the exported module (the one place both stages meet)."""

from __future__ import annotations

import numpy as np

from twostage.data.schema import Movies, Ratings
from twostage.ranking.model import RatingModel
from twostage.retrieval.config import IndexConfig
from twostage.retrieval.index import build_index, scann_parameters
from twostage.retrieval.model import CandidateTower, QueryTower
from twostage.retrieval.train import candidate_embeddings
from twostage.serving.config import ServingConfig
from twostage.serving.module import TrainingHistory, TwoStageModule


def assemble(query_tower: QueryTower, candidate_tower: CandidateTower, rating_model: RatingModel,
             train: Ratings, movies: Movies, index_config: IndexConfig, serving_config: ServingConfig
             ) -> tuple[TwoStageModule, dict]:
    """Builds the index and the stitched serving module.

    Args:
      query_tower: the trained query tower.
      candidate_tower: the trained candidate tower.
      rating_model: the trained ranking model.
      train: the training ratings (seen-movie history and popularity).
      movies: the catalog.
      index_config: which index, and its settings.
      serving_config: candidates per user and the largest k.

    Returns:
      The module and a description of its index (for the export's metadata).
    """
    user_ids = np.unique(train.user_id)
    history = TrainingHistory(train, user_ids.tolist(), movies)
    embeddings = candidate_embeddings(candidate_tower, movies)
    num_candidates = min(serving_config.num_candidates, len(movies))
    depth = min(len(movies), num_candidates + history.max_length)
    index = build_index(embeddings, depth, index_config)
    column = {movie: i for i, movie in enumerate(movies.movie_id.tolist())}
    popularity = np.bincount([column[m] for m in train.movie_id.tolist() if m in column],
                             minlength=len(movies)).astype(np.float64)
    module = TwoStageModule(query_tower, index, embeddings, rating_model, movies, user_ids.tolist(), history,
                            popularity, num_candidates, serving_config.max_k)
    description = {"kind": index_config.kind, "retrieval_depth": module.retrieval_depth,
                   "num_candidates": module.num_candidates}
    if index_config.kind == "scann":
        description["scann"] = scann_parameters(len(movies), depth, index_config)
    return module, description
