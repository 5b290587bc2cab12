"""Joins the trained stages into the exported module (the one place both stages meet)."""

from __future__ import annotations

import logging
import time

import numpy as np

from twostage.data.availability import first_rated
from twostage.data.metrics import rating_counts
from twostage.data.prepared import Prepared
from twostage.ranking.history_scorer import HistoryRatingScorer
from twostage.ranking.model import RatingTaskModel
from twostage.ranking.scorers import RatingScorer, build_rating_scorer
from twostage.retrieval.config import IndexConfig
from twostage.retrieval.index import build_index, scann_parameters
from twostage.retrieval.encoder import QueryEncoder
from twostage.retrieval.model import CandidateTower, QueryTower
from twostage.retrieval.train import candidate_embeddings, query_embeddings
from twostage.serving.config import ServingConfig
from twostage.serving.graph.candidate_ranking import FinalBlend
from twostage.serving.graph.history_module import HistoryRequestModule
from twostage.serving.graph.module import TwoStageModule
from twostage.serving.graph.tables import ServingTables, max_depth

log = logging.getLogger("twostage")


def serving_tables(query_tower: QueryTower, candidate_tower: CandidateTower, prepared: Prepared,
                   serving_config: ServingConfig) -> tuple[ServingTables, dict]:
    """The lookup tables of the exported model, and the known users' feature columns.

    Args:
      query_tower, candidate_tower: the trained towers.
      prepared: the data they were trained on (its training part is what the model knows).
      serving_config: what counts as liked (for "also liked").
    """
    user_ids = np.asarray(prepared.vocabularies.user_ids)
    start = time.perf_counter()
    log.info("export: encoding %d users' queries and building their seen-movie and fans tables", len(user_ids))
    user_columns = prepared.user_inputs(user_ids)
    tables = ServingTables(
        movie_ids=prepared.movies.movie_id, titles=prepared.movies.title,
        candidate_embeddings=candidate_embeddings(candidate_tower, prepared.movie_columns), user_ids=user_ids,
        user_embeddings=query_embeddings(query_tower, prepared.user_inputs, user_ids),
        history=prepared.history(prepared.train),
        fans=prepared.fans(serving_config.liked_rating),
        popularity=rating_counts(prepared.movies.movie_id, prepared.train).astype(np.float64),
        available_from=first_rated(prepared.movies.movie_id, prepared.train))
    log.info("export: user tables built in %.1fs", time.perf_counter() - start)
    return tables, user_columns


def assemble_module(tables: ServingTables, query_encoder, rating_scorer: RatingScorer, index_config: IndexConfig,
                    serving_config: ServingConfig, final_blend: FinalBlend) -> tuple[TwoStageModule, dict]:
    """Builds the index over ``tables`` and stitches the serving module around it.

    Returns:
      The module and a description of its index (for the export's metadata).
    """
    num_movies = len(tables.movie_ids)
    depth = max_depth(num_movies, serving_config.num_candidates, tables.history, serving_config.max_exclusions)
    index = build_index(tables.candidate_embeddings, depth, index_config)
    module = TwoStageModule(tables, query_encoder, index, rating_scorer, serving_config.num_candidates,
                            serving_config.max_k, serving_config.max_exclusions, final_blend)
    description = {"kind": index_config.kind, "max_depth": module.max_depth,
                   "num_candidates": module.num_candidates}
    if index_config.kind == "scann":
        description["scann"] = scann_parameters(num_movies, depth, index_config)
    return module, description


def assemble(query_tower: QueryTower, candidate_tower: CandidateTower, rating_model: RatingTaskModel,
             prepared: Prepared, index_config: IndexConfig, serving_config: ServingConfig, final_blend: FinalBlend
             ) -> tuple[TwoStageModule, dict, ServingTables]:
    """Builds the index and the stitched serving module from the trained stages.

    Args:
      query_tower: the trained query tower.
      candidate_tower: the trained candidate tower.
      rating_model: the trained ranking model.
      prepared: the data both were trained on (seen-movie history, fans and popularity
        come from its training part; the vocabularies are the towers').
      index_config: which index, and its settings.
      serving_config: candidates per user, the largest k, what counts as liked.
      final_blend: how the final score weighs the predicted rating and each movie (twostage.blend).

    Returns:
      The module, a description of its index (for the export's metadata) and its tables.
    """
    tables, user_columns = serving_tables(query_tower, candidate_tower, prepared, serving_config)
    scorer = build_rating_scorer(rating_model, tables.user_ids, user_columns, prepared.movie_columns)
    module, description = assemble_module(tables, QueryEncoder(query_tower), scorer, index_config, serving_config,
                                          final_blend)
    return module, description, tables


def assemble_history_module(query_tower: QueryTower, candidate_tower: CandidateTower, rating_model: RatingTaskModel,
                            prepared: Prepared, index_config: IndexConfig, serving_config: ServingConfig,
                            final_blend: FinalBlend) -> tuple[HistoryRequestModule, dict]:
    """The serving module for requests that carry the user's history (no per-user tables).

    Args: as ``assemble``; both models must do without user ids (RetrievalConfig and
      RankingConfig ``use_user_id`` False). Their baked-in training histories are dropped
      (the module must not save a table of users): the towers and the rating model belong to
      the module from then on.

    Returns:
      The module and a description of its index.
    """
    if query_tower.id_embedding.embedding is not None:
        raise ValueError("requests that carry the history need a query tower without user ids "
                         "(RetrievalConfig use_user_id=False)")
    movies = prepared.movies
    num_movies = len(movies.movie_id)
    # Room for a history as long as the longest training one, plus the request's exclusions.
    depth = max_depth(num_movies, serving_config.num_candidates, prepared.history(prepared.train),
                      serving_config.max_exclusions)
    embeddings = candidate_embeddings(candidate_tower, prepared.movie_columns)
    index = build_index(embeddings, depth, index_config)
    scorer = HistoryRatingScorer(rating_model, prepared.movie_columns)
    query_tower.forget_history()
    for member in scorer.members:
        member.rated_movies.forget_history()
    module = HistoryRequestModule(movies.movie_id, movies.title, rating_counts(movies.movie_id, prepared.train),
                                  QueryEncoder(query_tower), embeddings, index, scorer, serving_config.num_candidates,
                                  serving_config.max_k, depth, final_blend,
                                  first_rated(movies.movie_id, prepared.train))
    description = {"kind": index_config.kind, "max_depth": depth, "num_candidates": module.num_candidates,
                   "requests": "history"}
    if index_config.kind == "scann":
        description["scann"] = scann_parameters(num_movies, depth, index_config)
    return module, description
