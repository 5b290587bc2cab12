"""The exported model for requests that carry the user's history: no table of users in it.

Where ``TwoStageModule`` looks a user up by id (precomputed query, training movies, the
rating model's user share), this module takes each user as the request gives them: the
movies they rated, with the ratings, and the user features. The query tower encodes that
history, the rating model pools it, and its movies are excluded from the answer. Users never
seen by training are served personally from their history alone, and the model's size does
not grow with the number of users. For a user whose training history and features the
request carries, the answer is the one the id-keyed export gives (the same models).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from twostage.data.features import UNKNOWN_USER_ROW, USER_FEATURES
from twostage.ranking.history_scorer import HistoryRatingScorer
from twostage.retrieval.index import NeighbourIndex
from twostage.serving.graph.candidate_ranking import FinalBlend, blend
from twostage.serving.graph.exclusions import not_yet_available, pair_mask, requested_exclusions
from twostage.serving.graph.catalog import cold_start_tables, movie_row_table, movies_at
from twostage.serving.graph.inputs import (DEFAULT_K, FALSE, K_SPEC, NO_EXCLUSIONS, NO_VALUES, REQUEST_TIME_SPEC,
                                           Request, per_user, string_spec)
from twostage.serving.graph.search import CandidateSearch

NO_RATINGS = tf.zeros([0, 0], tf.float32)
_HISTORY = string_spec("history_movie_ids", rank=2)
_RATINGS = tf.TensorSpec([None, None], tf.float32, name="history_ratings")
_FEATURES = [string_spec(name) for name in USER_FEATURES]
HISTORY_REQUEST_SIGNATURE = [_HISTORY, _RATINGS, K_SPEC] + _FEATURES + [
    string_spec("exclude_movie_ids", rank=2), tf.TensorSpec([], tf.bool, name="include_seen")]
# recommend_at: the history, then the request time (as TwoStageModule.recommend_at), then the rest.
TIMED_HISTORY_REQUEST_SIGNATURE = [_HISTORY, REQUEST_TIME_SPEC] + HISTORY_REQUEST_SIGNATURE[1:]
# Signature name -> the module's tf.function it serves.
HISTORY_SIGNATURE_FUNCTIONS = {"serving_default": "recommend", "recommend_at": "recommend_at",
                               "retrieval_scores": "retrieval_scores",
                               "predict_rating": "predict_rating", "catalog": "catalog"}


class HistoryRequestModule(tf.Module):
    """The exported model for history-carrying requests (see the module docstring).

    Args:
      movie_ids, titles: the catalog, position order.
      popularity: [catalog] training rating counts (users with neither history nor features).
      query_encoder: with ``encode_history(features, movies)`` (retrieval.encoder.QueryEncoder)
        over a query tower without user ids.
      candidate_embeddings: [catalog, dim] the candidate tower's embeddings (exact scores for
        evaluation).
      index: the nearest-neighbour index over them.
      rating_scorer: the rating model for users given by their history (HistoryRatingScorer).
      num_candidates: candidates handed to the rating model.
      max_k: the largest k a request may ask for.
      max_depth: the most neighbours the index returns (room for a history's exclusions).
      final_blend: the final score's rating weight and movie terms.
      available_from: [catalog] int64 seconds, each movie's first training rating (what a
        request time leaves out).
    """

    def __init__(self, movie_ids: np.ndarray, titles: np.ndarray, popularity: np.ndarray, query_encoder,
                 candidate_embeddings: np.ndarray, index: NeighbourIndex, rating_scorer: HistoryRatingScorer,
                 num_candidates: int, max_k: int, max_depth: int, final_blend: FinalBlend, available_from: np.ndarray):
        super().__init__(name="twostage_history")
        num_movies = len(movie_ids)
        self.query_encoder = query_encoder
        self.candidate_embeddings = tf.Variable(candidate_embeddings, trainable=False, name="candidate_embeddings")
        self.index = index
        self.rating_scorer = rating_scorer
        self.num_candidates = min(num_candidates, num_movies)
        self.max_k = min(max_k, self.num_candidates)
        self.blend_weight = tf.Variable(np.float32(final_blend.rating_weight), trainable=False, name="blend_weight")
        self.movie_terms = tf.Variable(final_blend.movie_terms.astype(np.float32), trainable=False, name="movie_terms")
        self.movie_ids = tf.Variable(movie_ids.astype(object), trainable=False, name="movie_ids")
        self.titles = tf.Variable(titles.astype(object), trainable=False, name="titles")
        self.movie_rows = movie_row_table(movie_ids)
        self.available_from = tf.Variable(available_from.astype(np.int64), trainable=False, name="available_from")
        self.log_popularity, self.popular_positions, self.popular_scores = cold_start_tables(popularity, max_depth)
        # Single-pass search only: the two-pass one prunes with per-user-row rating bounds.
        self.search = CandidateSearch(index, None, self.num_candidates, max_depth, self.log_popularity,
                                      self.popular_positions, self.popular_scores)

    def _histories(self, history_movie_ids, history_ratings):
        """Ragged [batch, (rated)] catalog positions and ratings of the request's histories
        (ids outside the catalog and "" pads dropped; ratings not given: NaN, not known)."""
        positions = self.movie_rows.lookup(history_movie_ids)
        given = tf.shape(history_ratings)[0] > 0
        ratings = tf.cond(given, lambda: history_ratings,
                          lambda: tf.fill(tf.shape(history_movie_ids), tf.constant(np.nan, tf.float32)))
        check = tf.debugging.assert_equal(tf.shape(ratings), tf.shape(positions),
                                          message="history_ratings must have the shape of history_movie_ids")
        with tf.control_dependencies([check]):
            known = positions >= 0
        movies = tf.ragged.boolean_mask(tf.cast(positions, tf.int64), known)
        return movies, tf.ragged.boolean_mask(ratings, known)

    def _users(self, history_movie_ids, history_ratings, feature_values):
        """The request's users: ragged histories (movies, ratings) and features per user."""
        batch = tf.shape(history_movie_ids)[0]
        movies, ratings = self._histories(history_movie_ids, history_ratings)
        features = {name: per_user(value, batch, name) for name, value in zip(USER_FEATURES, feature_values)}
        return batch, movies, ratings, features

    @tf.function(autograph=False, input_signature=HISTORY_REQUEST_SIGNATURE)
    def recommend(self, history_movie_ids, history_ratings=NO_RATINGS, k=tf.constant(DEFAULT_K),
                  user_age=NO_VALUES, user_gender=NO_VALUES, user_occupation=NO_VALUES, user_zip=NO_VALUES,
                  exclude_movie_ids=NO_EXCLUSIONS, include_seen=FALSE):
        """Top-k recommendations for users given by their history.

        Args:
          history_movie_ids: [batch, n] each user's rated movies ("" pads; ids outside the
            catalog are ignored). The batch is this input's rows.
          history_ratings: [batch, n] their ratings (what the rating model weighs them by;
            NaN: not known); [] (default): none given.
          k: results per user, clipped to [1, max_k] (default 10).
          user_age, user_gender, user_occupation, user_zip: [] none, [1] shared, or [batch].
          exclude_movie_ids: [rows, n] movie ids never to return, as in ``TwoStageModule``.
          include_seen: also return the history's movies (default False).

        Returns:
          movie_id, title, score, predicted_rating, retrieval_score: [batch, k], best first
          ("" and -inf past the movies left); personal: [batch] whether the user had a
          history or features (else the most popular movies, in retrieval order).
        """
        features = (user_age, user_gender, user_occupation, user_zip)
        return self._recommend(history_movie_ids, history_ratings, k, features, exclude_movie_ids, include_seen)

    @tf.function(autograph=False, input_signature=TIMED_HISTORY_REQUEST_SIGNATURE)
    def recommend_at(self, history_movie_ids, request_time, history_ratings=NO_RATINGS, k=tf.constant(DEFAULT_K),
                     user_age=NO_VALUES, user_gender=NO_VALUES, user_occupation=NO_VALUES, user_zip=NO_VALUES,
                     exclude_movie_ids=NO_EXCLUSIONS, include_seen=FALSE):
        """``recommend`` as of a time: movies first rated (in training) after ``request_time``
        ([1] shared or [batch] seconds since 1970) are left out."""
        features = (user_age, user_gender, user_occupation, user_zip)
        return self._recommend(history_movie_ids, history_ratings, k, features, exclude_movie_ids, include_seen,
                               request_time)

    def _recommend(self, history_movie_ids, history_ratings, k, feature_values, exclude_movie_ids, include_seen,
                   request_time=None):
        batch, movies, ratings, features = self._users(history_movie_ids, history_ratings, feature_values)
        personal = movies.row_lengths() > 0
        for value in features.values():
            personal |= tf.not_equal(value, "")
        queries = self.query_encoder.encode_history(features, movies)
        num_movies = tf.shape(self.movie_ids, out_type=tf.int32)[0]
        seen = pair_mask(tf.cast(movies.value_rowids(), tf.int32), tf.cast(movies.values, tf.int32), batch, num_movies)
        excluded = seen & ~include_seen
        counts = tf.where(include_seen, 0, tf.cast(movies.row_lengths(), tf.int32))
        extra, extra_counts = requested_exclusions(exclude_movie_ids, batch, self.movie_rows, num_movies)
        excluded, counts = excluded | extra, counts + extra_counts
        if request_time is not None:
            later, later_counts = not_yet_available(self.available_from, request_time, batch)
            excluded, counts = excluded | later, counts + later_counts
        request = Request(tf.fill([batch], ""), tf.fill([batch], tf.constant(UNKNOWN_USER_ROW, tf.int64)), queries,
                          personal[:, tf.newaxis], excluded, counts)
        retrieval_scores, positions = self.search.candidates(request, few_users=True)
        predicted = self.rating_scorer.rate_lists(features, movies, ratings, positions)
        # Users without history or features keep retrieval's (popularity) order.
        final = tf.where(personal[:, tf.newaxis], blend(retrieval_scores, predicted, self.blend_weight,
                                                        tf.gather(self.movie_terms, positions)),
                         retrieval_scores)
        k = tf.clip_by_value(k, 1, self.max_k)
        score, order = tf.math.top_k(final, k=k)
        positions = tf.gather(positions, order, batch_dims=1)
        return {**movies_at(self.movie_ids, self.titles, positions, score), "score": score,
                "predicted_rating": tf.gather(predicted, order, batch_dims=1),
                "retrieval_score": tf.gather(retrieval_scores, order, batch_dims=1), "personal": personal}

    # --- for evaluation and inspection -----------------------------------------------------

    @tf.function(autograph=False, input_signature=[_HISTORY, _RATINGS] + _FEATURES)
    def retrieval_scores(self, history_movie_ids, history_ratings=NO_RATINGS, user_age=NO_VALUES,
                         user_gender=NO_VALUES, user_occupation=NO_VALUES, user_zip=NO_VALUES):
        """Exact two-tower scores of every catalog movie (nothing dropped) for users given by
        their history and features (as ``recommend`` takes them), for evaluation.

        Returns:
          scores: [batch, catalog size], catalog order (see ``catalog``).
        """
        _, movies, _, features = self._users(history_movie_ids, history_ratings,
                                             (user_age, user_gender, user_occupation, user_zip))
        queries = self.query_encoder.encode_history(features, movies)
        return {"scores": tf.matmul(queries, self.candidate_embeddings, transpose_b=True)}

    @tf.function(autograph=False, input_signature=[_HISTORY, string_spec("movie_id", rank=2), _RATINGS] + _FEATURES)
    def predict_rating(self, history_movie_ids, movie_id, history_ratings=NO_RATINGS, user_age=NO_VALUES,
                       user_gender=NO_VALUES, user_occupation=NO_VALUES, user_zip=NO_VALUES):
        """The rating model's predictions of movies for users given by their history.

        Args:
          movie_id: [batch, m] the movies to rate for each user ("" pads).
          the others: as ``recommend``.

        Returns:
          rating: [batch, m]; known_movie: [batch, m] whether the movie is in the catalog
          (else the rating is a guess for an unknown movie, which clients refuse).
        """
        _, movies, ratings, features = self._users(history_movie_ids, history_ratings,
                                                   (user_age, user_gender, user_occupation, user_zip))
        positions = self.movie_rows.lookup(movie_id)
        rating = self.rating_scorer.rate_lists(features, movies, ratings, tf.cast(positions, tf.int32))
        return {"rating": rating, "known_movie": positions >= 0}

    @tf.function(autograph=False, input_signature=[])
    def catalog(self):
        """Every movie the model knows: movie_id and title, catalog order."""
        return {"movie_id": tf.identity(self.movie_ids), "title": tf.identity(self.titles)}

    def signatures(self) -> dict:
        """The SavedModel signatures, ``serving_default`` = recommend."""
        return {name: getattr(self, function) for name, function in HISTORY_SIGNATURE_FUNCTIONS.items()}
