"""Joins the trained stages into the exported module (the one place both stages meet)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from twostage.data.features import FeatureVocabularies, movie_feature_columns, user_feature_lookup
from twostage.data.schema import Movies, Ratings, Users
from twostage.ranking.model import RatingModel
from twostage.retrieval.config import IndexConfig
from twostage.retrieval.index import build_index, scann_parameters
from twostage.retrieval.model import CandidateTower, QueryTower
from twostage.retrieval.train import candidate_embeddings, query_embeddings
from twostage.serving.config import ServingConfig
from twostage.serving.module import TwoStageModule
from twostage.data.history import fans, training_history
from twostage.data.metrics import rating_counts


def assemble(query_tower: QueryTower, candidate_tower: CandidateTower, rating_model: RatingModel,
             train: Ratings, movies: Movies, users: Optional[Users], vocabularies: FeatureVocabularies,
             index_config: IndexConfig, serving_config: ServingConfig, blend_weight: float
             ) -> tuple[TwoStageModule, dict]:
    """Builds the index and the stitched serving module.

    Args:
      query_tower: the trained query tower.
      candidate_tower: the trained candidate tower.
      rating_model: the trained ranking model.
      train: the training ratings (seen-movie history, fans and popularity).
      movies: the catalog.
      users: user demographics, or None.
      vocabularies: the feature vocabularies the towers were built with.
      index_config: which index, and its settings.
      serving_config: candidates per user, the largest k, what counts as liked.
      blend_weight: weight of the predicted rating in the final score (serving.blend).

    Returns:
      The module and a description of its index (for the export's metadata).
    """
    user_ids = list(vocabularies.user_ids)
    history = training_history(train, user_ids, movies)
    embeddings = candidate_embeddings(candidate_tower, movies)
    lookup = user_feature_lookup(users, vocabularies)
    user_inputs = lookup(np.asarray(user_ids))
    user_vectors = query_embeddings(query_tower, lookup, np.asarray(user_ids))
    num_candidates = min(serving_config.num_candidates, len(movies))
    depth = min(len(movies), num_candidates + history.max_length)
    index = build_index(embeddings, depth, index_config)
    popularity = rating_counts(movies.movie_id, train).astype(np.float64)
    module = TwoStageModule(
        query_tower, index, embeddings, rating_model, movies, user_ids,
        {name: user_inputs[name] for name in vocabularies.user_features}, movie_feature_columns(movies),
        user_vectors, history,
        fans(train, user_ids, movies, serving_config.liked_rating), popularity, num_candidates,
        serving_config.max_k, blend_weight)
    description = {"kind": index_config.kind, "retrieval_depth": module.retrieval_depth,
                   "num_candidates": module.num_candidates}
    if index_config.kind == "scann":
        description["scann"] = scann_parameters(len(movies), depth, index_config)
    return module, description
