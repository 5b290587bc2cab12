"""Joins the trained stages into the exported module (the one place both stages meet)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from twostage.data.features import FeatureVocabularies, user_feature_lookup
from twostage.data.history import fans, training_history
from twostage.data.metrics import rating_counts
from twostage.data.schema import Movies, Ratings, Users
from twostage.ranking.model import RatingTaskModel
from twostage.ranking.scorers import build_rating_scorer
from twostage.retrieval.config import IndexConfig
from twostage.retrieval.index import build_index, scann_parameters
from twostage.retrieval.model import CandidateTower, QueryEncoder, QueryTower
from twostage.retrieval.train import candidate_embeddings, query_embeddings
from twostage.serving.config import ServingConfig
from twostage.serving.module import ServingTables, TwoStageModule, max_depth


def serving_tables(query_tower: QueryTower, candidate_tower: CandidateTower, train: Ratings, movies: Movies,
                   users: Optional[Users], vocabularies: FeatureVocabularies, serving_config: ServingConfig
                   ) -> tuple[ServingTables, dict]:
    """The lookup tables of the exported model, and the known users' feature columns."""
    user_ids = np.asarray(vocabularies.user_ids)
    lookup = user_feature_lookup(users, vocabularies)
    tables = ServingTables(
        movie_ids=movies.movie_id, titles=movies.title,
        candidate_embeddings=candidate_embeddings(candidate_tower, movies), user_ids=user_ids,
        user_embeddings=query_embeddings(query_tower, lookup, user_ids),
        history=training_history(train, list(user_ids), movies),
        fans=fans(train, list(user_ids), movies, serving_config.liked_rating),
        popularity=rating_counts(movies.movie_id, train).astype(np.float64))
    return tables, lookup(user_ids)


def assemble_module(tables: ServingTables, query_encoder, rating_scorer, index_config: IndexConfig,
                    serving_config: ServingConfig, blend_weight: float) -> tuple[TwoStageModule, dict]:
    """Builds the index over ``tables`` and stitches the serving module around it.

    Returns:
      The module and a description of its index (for the export's metadata).
    """
    num_movies = len(tables.movie_ids)
    depth = max_depth(num_movies, serving_config.num_candidates, tables.history, serving_config.max_exclusions)
    index = build_index(tables.candidate_embeddings, depth, index_config)
    module = TwoStageModule(tables, query_encoder, index, rating_scorer, serving_config.num_candidates,
                            serving_config.max_k, serving_config.max_exclusions, blend_weight)
    description = {"kind": index_config.kind, "max_depth": module.max_depth,
                   "num_candidates": module.num_candidates}
    if index_config.kind == "scann":
        description["scann"] = scann_parameters(num_movies, depth, index_config)
    return module, description


def assemble(query_tower: QueryTower, candidate_tower: CandidateTower, rating_model: RatingTaskModel,
             train: Ratings, movies: Movies, users: Optional[Users], vocabularies: FeatureVocabularies,
             index_config: IndexConfig, serving_config: ServingConfig, blend_weight: float
             ) -> tuple[TwoStageModule, dict, ServingTables]:
    """Builds the index and the stitched serving module from the trained stages.

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
      The module, a description of its index (for the export's metadata) and its tables.
    """
    tables, user_columns = serving_tables(query_tower, candidate_tower, train, movies, users, vocabularies,
                                          serving_config)
    scorer = build_rating_scorer(rating_model, tables.user_ids, user_columns, movies)
    module, description = assemble_module(tables, QueryEncoder(query_tower), scorer, index_config, serving_config,
                                          blend_weight)
    return module, description, tables
