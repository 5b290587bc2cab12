"""Both stages stitched into one ``tf.Module``: retrieve -> drop seen -> rank -> top k."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from twostage.data.features import UNKNOWN_USER_ROW, USER_FEATURES
from twostage.ranking.scorers import RatingScorer
from twostage.retrieval.index import NeighbourIndex
from twostage.serving.graph.candidate_ranking import CandidateRanking, FinalBlend
from twostage.serving.graph.catalog import cold_start_tables, constant_variable, movie_row_table, movies_at
from twostage.serving.graph.exclusions import Exclusions
from twostage.serving.graph.inputs import (DEFAULT_K, FALSE, K_SPEC, NO_EXCLUSIONS, NO_VALUES, REQUEST_SIGNATURE,
                                           SIGNATURE_FUNCTIONS, TIMED_REQUEST_SIGNATURE, Request, per_user,
                                           string_spec)
from twostage.serving.graph.search import CandidateSearch, terms_vary
from twostage.serving.graph.tables import ServingTables, max_depth

# Up to this many (users + 1) x catalog cells, each user's training movies are also kept as a
# dense bool row, so that excluding them costs a request one gather instead of a ragged
# gather and a scatter (some 30 ops, a third of a one-user request's graph); past it, the
# ragged table alone (docs/serving.md).
DENSE_SEEN_CELLS = 32_000_000
# From this many users a request, retrieval goes shallow first and ranking skips the
# candidates that cannot reach the top k (TwoStageModule._retrieve_and_rank); below it, the
# extra ops cost more than they save.
PRUNE_FROM_USERS = 8


class TwoStageModule(tf.Module):
    """The exported model.

    Retrieval embeds users (known users: their precomputed query embedding; users never
    seen: the query tower over the features the request carries) and asks the index for
    enough candidates that, once the user's training movies and the request's exclusions are
    dropped, ``num_candidates`` remain. The rating model predicts each (user, candidate)
    rating; the top k by retrieval score + a weight times the predicted rating + the movie's
    term come back (``FinalBlend``, fitted on validation data). Users never seen and without features get the
    most popular movies.

    Args:
      tables: the lookup tables (ServingTables).
      query_encoder: ``encode({"user_id", user features...}) -> [batch, dim]`` (retrieval.encoder.QueryEncoder,
        or the one restored from an earlier export).
      index: the nearest-neighbour index (retrieval.index.NeighbourIndex): ScaNN or brute
        force, built for ``max_depth`` neighbours.
      rating_scorer: the rating model as serving calls it (ranking.scorers.RatingScorer).
      num_candidates: candidates handed to the rating model.
      max_k: the largest k a request may ask for.
      max_exclusions: extra exclusions per request that still leave k results.
      final_blend: the final score's rating weight and movie terms.
    """

    def __init__(self, tables: ServingTables, query_encoder, index: NeighbourIndex, rating_scorer: RatingScorer,
                 num_candidates: int, max_k: int, max_exclusions: int, final_blend: FinalBlend):
        super().__init__(name="twostage")
        num_movies = len(tables.movie_ids)
        self.query_encoder = query_encoder
        self.index = index
        self.rating_scorer = rating_scorer
        self.num_candidates = min(num_candidates, num_movies)
        self.max_k = min(max_k, self.num_candidates)
        self.max_depth = max_depth(num_movies, num_candidates, tables.history, max_exclusions)
        self.blend_weight = constant_variable(np.float32(final_blend.rating_weight), "blend_weight")
        self.movie_terms = constant_variable(final_blend.movie_terms.astype(np.float32), "movie_terms")
        # The rating range is None for an unbounded output, or an export from before it was
        # kept: every candidate is rated then.
        self.ranking = CandidateRanking(rating_scorer, self.blend_weight, self.movie_terms, rating_scorer.rating_range,
                                        rating_scorer.highest_ratings)
        self.movie_ids = constant_variable(tables.movie_ids.astype(object), "movie_ids")
        self.titles = constant_variable(tables.titles.astype(object), "titles")
        self.candidate_embeddings = constant_variable(tables.candidate_embeddings.astype(np.float32),
                                                      "candidate_embeddings")
        norms = np.linalg.norm(tables.candidate_embeddings, axis=1, keepdims=True)
        self.unit_embeddings = constant_variable(tables.candidate_embeddings / np.maximum(norms, 1e-12),
                                                 "unit_embeddings")
        self.user_ids = constant_variable(np.asarray(tables.user_ids).astype(object), "user_ids")
        self.user_rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(np.asarray(tables.user_ids).astype(object), tf.string),
                                                tf.range(1, len(tables.user_ids) + 1, dtype=tf.int64)),
            default_value=UNKNOWN_USER_ROW)
        self.movie_rows = movie_row_table(tables.movie_ids)
        dim = tables.user_embeddings.shape[1]
        # Row UNKNOWN_USER_ROW (first) stands for users never seen: a zero query.
        self.user_embeddings = constant_variable(
            np.concatenate([np.zeros((1, dim), np.float32), tables.user_embeddings]).astype(np.float32),
            "user_embeddings")
        self.history_values = constant_variable(tables.history.values, "history_values")
        self.history_row_splits = constant_variable(tables.history.row_splits, "history_row_splits")
        lengths = np.diff(tables.history.row_splits)
        self.history_lengths = constant_variable(lengths.astype(np.int32), "history_lengths")
        self.seen = None
        if len(lengths) * num_movies <= DENSE_SEEN_CELLS:
            seen = np.zeros((len(lengths), num_movies), bool)
            seen[np.repeat(np.arange(len(lengths)), lengths), tables.history.values] = True
            self.seen = constant_variable(seen, "seen")
        self.fan_values = constant_variable(tables.fans.values, "fan_values")
        self.fan_row_splits = constant_variable(tables.fans.row_splits, "fan_row_splits")
        self.popularity = constant_variable(tables.popularity.astype(np.float32), "popularity")
        self.log_popularity, self.popular_positions, self.popular_scores = cold_start_tables(tables.popularity,
                                                                                             self.max_depth)
        self.available_from = constant_variable(tables.available_from.astype(np.int64), "available_from")
        self.exclusions = Exclusions(self.history_values, self.history_row_splits, self.history_lengths, self.seen,
                                     self.movie_rows, self.movie_ids, self.available_from)
        self.search = CandidateSearch(index, self.ranking, self.num_candidates, self.max_depth, self.log_popularity,
                                      self.popular_positions, self.popular_scores,
                                      movie_terms_vary=terms_vary(final_blend.movie_terms))

    # --- retrieval -------------------------------------------------------------------------

    def _queries(self, user_id, rows, features: Optional[Dict[str, tf.Tensor]]):
        """Query embeddings, and whether each user gets personal results (else popular movies).

        Known users: their precomputed embedding. Users never seen: the query tower over the
        features their request carries, or popular movies when it carries none. The request's
        features are only looked at when a user is new, which keeps the common request lean.
        """
        known = rows > UNKNOWN_USER_ROW
        precomputed = tf.gather(self.user_embeddings, rows)
        if features is None:  # no request features: new users get popular movies
            return precomputed, known

        def with_new_users():
            batch = tf.shape(user_id)[0]
            given = {name: tf.where(known, "", per_user(value, batch, name)) for name, value in features.items()}
            has_features = tf.zeros_like(known)
            for value in given.values():
                has_features |= tf.not_equal(value, "")
            queries = self.query_encoder.encode({"user_id": user_id, **given})
            return tf.where(known[:, tf.newaxis], precomputed, queries), known | has_features

        # A plain tf.cond, lowered into the graph so that each branch op is placed on its own
        # device: kept as an If op it must sit with every resource its branches read, which a
        # GPU machine cannot place (docs/serving.md#gpu).
        return tf.cond(tf.reduce_all(known), lambda: (precomputed, known), with_new_users)

    def _request(self, user_id, features, exclude_movie_ids, include_seen, request_time=None) -> Request:
        """What retrieval needs of a request's users.

        ``features``, ``exclude_movie_ids``, ``include_seen`` and ``request_time`` are None where
        the request cannot carry them (``recommend_plain``): none given, training movies excluded.
        """
        rows = self.user_rows.lookup(user_id)
        queries, personal = self._queries(user_id, rows, features)
        excluded, counts = self.exclusions(rows, exclude_movie_ids, include_seen, request_time)
        return Request(user_id, rows, queries, personal[:, tf.newaxis], excluded, counts)

    def _movies(self, positions, scores):
        return movies_at(self.movie_ids, self.titles, positions, scores)

    # --- both stages -----------------------------------------------------------------------

    def _retrieve_and_rank(self, request: Request, k, few_users: bool):
        """(retrieval scores, positions, final scores, predicted ratings) of each user's candidates.

        A request for a few users pays more for the extra ops of rating only the candidates
        that can reach the top k than the rating work they save; so does an unbounded rating
        output, where no candidate can be ruled out.
        """
        user_id, rows = request.user_id, request.rows

        def rate_everything(few: bool):
            scores, positions = self.search.candidates(request, few)
            return (scores, positions) + self.ranking.rank_all(user_id, rows, scores, positions)

        def rate_the_reachable():
            scores, positions, first, floor = self.search.in_two_passes(request, k)
            return (scores, positions) + self.ranking.rank_later(user_id, rows, scores, positions, first, floor)

        if few_users or self.ranking.rating_range is None:
            return rate_everything(few_users)
        return tf.cond(tf.size(request.rows) >= PRUNE_FROM_USERS, rate_the_reachable, lambda: rate_everything(True))

    # --- signatures ------------------------------------------------------------------------
    # Traced without AutoGraph: their control flow is explicit (tf.cond), and converting each
    # Python function they call took half of an export's time.

    @tf.function(autograph=False, input_signature=REQUEST_SIGNATURE)
    def recommend(self, user_id, k=tf.constant(DEFAULT_K), user_age=NO_VALUES, user_gender=NO_VALUES,
                  user_occupation=NO_VALUES, user_zip=NO_VALUES, exclude_movie_ids=NO_EXCLUSIONS,
                  include_seen=FALSE):
        """Top-k recommendations per user.

        Args:
          user_id: [batch] user ids.
          k: results per user, clipped to [1, max_k] (default 10).
          user_age, user_gender, user_occupation, user_zip: features of users never seen
            (cold start); [] (default) none, [1] shared, or [batch]. Known users keep the
            features they had in training.
          exclude_movie_ids: [rows, n] movie ids never to return ("" pads): no rows
            (default), one row shared by every user, or one row per user.
          include_seen: also return the user's training movies (default False).

        Returns:
          movie_id, title, score, predicted_rating, retrieval_score: [batch, k], best first
          ("" and -inf past the movies left); known_user: [batch].
        """
        features = dict(zip(USER_FEATURES, (user_age, user_gender, user_occupation, user_zip)))
        return self._recommend(user_id, k, features, exclude_movie_ids, include_seen)

    @tf.function(autograph=False, input_signature=TIMED_REQUEST_SIGNATURE)
    def recommend_at(self, user_id, request_time, k=tf.constant(DEFAULT_K), user_age=NO_VALUES,
                     user_gender=NO_VALUES, user_occupation=NO_VALUES, user_zip=NO_VALUES,
                     exclude_movie_ids=NO_EXCLUSIONS, include_seen=FALSE):
        """``recommend`` as of a time: movies first rated (in training) after it are left out.

        Args:
          request_time: [1] (shared) or [batch] seconds since 1970.
          the others: as ``recommend``.
        """
        features = dict(zip(USER_FEATURES, (user_age, user_gender, user_occupation, user_zip)))
        return self._recommend(user_id, k, features, exclude_movie_ids, include_seen, request_time=request_time)

    @tf.function(autograph=False, input_signature=[string_spec("user_id"), K_SPEC])
    def recommend_plain(self, user_id, k=tf.constant(DEFAULT_K)):
        """``recommend`` for the common request of one user: no user features, no extra
        exclusions, the training movies excluded (users never seen get popular movies).

        The same graph with those inputs left out, not looked at, and every candidate rated
        (one user's ratings cost less than telling which are needed): in-process clients send
        such requests here, a tenth less work than ``recommend`` for one user.
        """
        return self._recommend(user_id, k, None, None, None, few_users=True)

    def _recommend(self, user_id, k, features, exclude_movie_ids, include_seen, few_users=False, request_time=None):
        """The top k of ``CandidateSearch.candidates`` by blended score (see ``recommend``); None: not given.
        ``few_users``: rate every candidate, without asking how many users there are."""
        k = tf.clip_by_value(k, 1, self.max_k)
        request = self._request(user_id, features, exclude_movie_ids, include_seen, request_time)
        retrieval_scores, positions, score, predicted = self._retrieve_and_rank(request, k, few_users)
        rows = request.rows
        score, order = tf.math.top_k(score, k=k)
        positions = tf.gather(positions, order, batch_dims=1)
        return {**self._movies(positions, score), "score": score,
                "predicted_rating": tf.gather(predicted, order, batch_dims=1),
                "retrieval_score": tf.gather(retrieval_scores, order, batch_dims=1), "known_user": rows > UNKNOWN_USER_ROW}

    @tf.function(autograph=False, input_signature=REQUEST_SIGNATURE)
    def retrieve(self, user_id, k=tf.constant(DEFAULT_K), user_age=NO_VALUES, user_gender=NO_VALUES,
                 user_occupation=NO_VALUES, user_zip=NO_VALUES, exclude_movie_ids=NO_EXCLUSIONS,
                 include_seen=FALSE):
        """Retrieval's candidates only (no ranking), with the same inputs as ``recommend``.

        k is clipped to [1, num_candidates].

        Returns:
          movie_id, title, retrieval_score: [batch, k] in retrieval order; known_user: [batch].
        """
        features = dict(zip(USER_FEATURES, (user_age, user_gender, user_occupation, user_zip)))
        return self._retrieve(user_id, k, features, exclude_movie_ids, include_seen)

    @tf.function(autograph=False, input_signature=TIMED_REQUEST_SIGNATURE)
    def retrieve_at(self, user_id, request_time, k=tf.constant(DEFAULT_K), user_age=NO_VALUES,
                    user_gender=NO_VALUES, user_occupation=NO_VALUES, user_zip=NO_VALUES,
                    exclude_movie_ids=NO_EXCLUSIONS, include_seen=FALSE):
        """``retrieve`` as of a time (``recommend_at``'s inputs)."""
        features = dict(zip(USER_FEATURES, (user_age, user_gender, user_occupation, user_zip)))
        return self._retrieve(user_id, k, features, exclude_movie_ids, include_seen, request_time)

    def _retrieve(self, user_id, k, features, exclude_movie_ids, include_seen, request_time=None):
        k = tf.clip_by_value(k, 1, self.num_candidates)
        request = self._request(user_id, features, exclude_movie_ids, include_seen, request_time)
        scores, positions = self.search.candidates(request)
        scores, positions = scores[:, :k], positions[:, :k]
        return {**self._movies(positions, scores), "retrieval_score": scores, "known_user": request.rows > UNKNOWN_USER_ROW}

    # --- movie to movie --------------------------------------------------------------------

    def _movie_neighbours(self, movie_id, k, queries, unit_scores: bool):
        rows = self.movie_rows.lookup(movie_id)
        known = rows >= 0
        catalog = self.unit_embeddings if unit_scores else self.candidate_embeddings
        scores = tf.matmul(queries, catalog, transpose_b=True)
        itself = tf.one_hot(tf.maximum(rows, 0), tf.shape(self.movie_ids)[0], on_value=True, off_value=False)
        scores = tf.where(itself | ~tf.expand_dims(known, 1), tf.constant(-np.inf), scores)
        k = tf.clip_by_value(k, 1, self.max_k)
        scores, positions = tf.math.top_k(scores, k=k)
        return {**self._movies(positions, scores), "score": scores, "known_movie": known}

    @tf.function(autograph=False, input_signature=[string_spec("movie_id"), K_SPEC])
    def similar_movies(self, movie_id, k=tf.constant(DEFAULT_K)):
        """"More like this": cosine similarity of candidate embeddings, the movie excluded.

        Returns:
          movie_id, title, score ([batch, k]; "" and -inf for unknown movies), known_movie.
        """
        rows = tf.maximum(self.movie_rows.lookup(movie_id), 0)
        return self._movie_neighbours(movie_id, k, tf.gather(self.unit_embeddings, rows), unit_scores=True)

    @tf.function(autograph=False, input_signature=[string_spec("movie_id"), K_SPEC])
    def also_liked(self, movie_id, k=tf.constant(DEFAULT_K)):
        """People who liked this also liked: the mean query embedding of the users who rated
        the movie highly, scored against the catalog (the movie excluded). A movie nobody
        liked in training falls back to similar movies.

        Returns:
          movie_id, title, score, known_movie as ``similar_movies``; fans: [batch].
        """
        rows = tf.maximum(self.movie_rows.lookup(movie_id), 0)
        fans = tf.gather(tf.RaggedTensor.from_row_splits(self.fan_values, self.fan_row_splits, validate=False), rows)
        count = fans.row_lengths()
        liked_by = tf.reduce_sum(tf.gather(self.user_embeddings, fans), axis=1) / tf.cast(
            tf.maximum(count, 1)[:, tf.newaxis], tf.float32)
        own = tf.gather(self.candidate_embeddings, rows)
        queries = tf.where(tf.expand_dims(count > 0, 1), liked_by, own)
        out = self._movie_neighbours(movie_id, k, queries, unit_scores=False)
        out["fans"] = tf.cast(count, tf.int32)
        return out

    # --- for evaluation and inspection -----------------------------------------------------

    @tf.function(autograph=False, input_signature=[string_spec("user_id")])
    def retrieval_scores(self, user_id):
        """Exact two-tower scores of every catalog movie (nothing dropped), for evaluation.

        Returns:
          scores: [batch, catalog size], catalog order (see ``catalog``).
        """
        rows = self.user_rows.lookup(user_id)
        queries, _ = self._queries(user_id, rows, {name: NO_VALUES for name in USER_FEATURES})
        return {"scores": tf.matmul(queries, self.candidate_embeddings, transpose_b=True)}

    @tf.function(autograph=False, input_signature=[string_spec("user_id"), string_spec("movie_id")])
    def predict_rating(self, user_id, movie_id):
        """The rating model's prediction for each (user_id[i], movie_id[i]) pair.

        Returns:
          rating: [batch]; known_movie: [batch] whether the movie is in the catalog (else the
          rating is the scorer's guess for an unknown movie, which clients refuse).
        """
        rows, positions = self.user_rows.lookup(user_id), self.movie_rows.lookup(movie_id)
        return {"rating": self.rating_scorer.rate(user_id, rows, positions), "known_movie": positions >= 0}

    @tf.function(autograph=False, input_signature=[])
    def catalog(self):
        """Every movie the model knows: movie_id and title, catalog order."""
        return {"movie_id": tf.identity(self.movie_ids), "title": tf.identity(self.titles)}

    @tf.function(autograph=False, input_signature=[string_spec("user_id")])
    def training_history(self, user_id):
        """Each user's training movies (excluded from recommendations by default).

        Returns:
          movie_id: [batch, longest] padded with ""; length: [batch].
        """
        history = self.exclusions.history(self.user_rows.lookup(user_id))
        return {"movie_id": tf.gather(self.movie_ids, history).to_tensor(default_value=""),
                "length": tf.cast(history.row_lengths(), tf.int32)}

    def signatures(self) -> dict:
        """The SavedModel signatures, ``serving_default`` = recommend.

        The tf.functions themselves (not concrete functions) are handed over, so that their
        optional inputs' defaults are written into the SignatureDefs.
        """
        return {name: getattr(self, function) for name, function in SIGNATURE_FUNCTIONS.items()}

