"""Both stages stitched into one ``tf.Module``: retrieve -> drop seen -> rank -> top k."""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from twostage.data.schema import Movies
from twostage.data.features import USER_FEATURES
from twostage.data.history import RaggedTable
from twostage.serving.blend import blend

_USER = tf.TensorSpec([None], tf.string, name="user_id")
_MOVIE = tf.TensorSpec([None], tf.string, name="movie_id")
_K = tf.TensorSpec([], tf.int32, name="k")
_FEATURES = [tf.TensorSpec([None], tf.string, name=name) for name in USER_FEATURES]


def _variable(value, name: str) -> tf.Variable:
    return tf.Variable(value, trainable=False, name=name)


class TwoStageModule(tf.Module):
    """The exported model.

    Retrieval embeds users with the query tower (known users with the features they had in
    training; users never seen with the features their request carries) and asks the index
    for enough candidates that, once the user's training movies are dropped,
    ``num_candidates`` remain; the rating model predicts each (user, candidate) rating; the
    top k by retrieval score + blend_weight * predicted rating come back (the weight was
    chosen on validation data). Users never seen and without features get the most popular
    movies.

    Args:
      query_tower: user features -> query embeddings.
      index: (query embeddings, k) -> (scores, catalog positions); ScaNN or brute force.
      candidate_embeddings: [catalog, dim].
      rating_model: (user_id, movie_id) -> predicted rating.
      movies: the catalog.
      user_ids: the training users (rows 1..n of every per-user table).
      user_features: feature name -> [n] values of the training users (both stages' models).
      movie_features: feature name -> [catalog] values (data.features.movie_feature_columns).
      user_embeddings: [n, dim] query embeddings of the training users.
      history: each user's training movies (rows 1..n).
      fans: each movie's users who liked it (user rows).
      popularity: [catalog] training rating counts.
      num_candidates: candidates handed to the rating model.
      max_k: the largest k a request may ask for.
      blend_weight: final score = retrieval score + blend_weight * predicted rating.
    """

    def __init__(self, query_tower, index, candidate_embeddings: np.ndarray, rating_model, movies: Movies,
                 user_ids: Sequence[str], user_features: Dict[str, np.ndarray],
                 movie_features: Dict[str, np.ndarray], user_embeddings: np.ndarray,
                 history: RaggedTable, fans: RaggedTable, popularity: np.ndarray, num_candidates: int, max_k: int,
                 blend_weight: float):
        super().__init__(name="twostage")
        self.blend_weight = _variable(np.float32(blend_weight), "blend_weight")
        num_movies = len(movies)
        self.query_tower = query_tower
        self.index = index
        self.rating_model = rating_model
        self.num_candidates = min(num_candidates, num_movies)
        self.max_k = min(max_k, self.num_candidates)
        # Retrieve enough that dropping the heaviest user's history still leaves num_candidates.
        self.retrieval_depth = min(num_movies, self.num_candidates + history.max_length)
        self.movie_ids = _variable(movies.movie_id, "movie_ids")
        self.titles = _variable(movies.title, "titles")
        self.candidate_embeddings = _variable(candidate_embeddings, "candidate_embeddings")
        norms = np.linalg.norm(candidate_embeddings, axis=1, keepdims=True)
        self.unit_embeddings = _variable(candidate_embeddings / np.maximum(norms, 1e-12), "unit_embeddings")
        self.user_rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(user_ids), tf.string),
                                                tf.range(1, len(user_ids) + 1, dtype=tf.int64)), default_value=0)
        self.movie_rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(movies.movie_id), tf.range(num_movies, dtype=tf.int64)),
            default_value=-1)
        # Row 0 of every per-user table is the unknown user.
        self.feature_names = tuple(query_tower.feature_names)
        self.user_features = {name: _variable(np.concatenate([[""], values]), name)
                              for name, values in user_features.items()}
        self.movie_features = {name: _variable(values, name) for name, values in movie_features.items()
                               if name != "movie_id"}
        self.user_embeddings = _variable(
            np.concatenate([np.zeros((1, user_embeddings.shape[1]), np.float32), user_embeddings]), "user_embeddings")
        self.history_values = _variable(history.values, "history_values")
        self.history_row_splits = _variable(history.row_splits, "history_row_splits")
        self.fan_values = _variable(fans.values, "fan_values")
        self.fan_row_splits = _variable(fans.row_splits, "fan_row_splits")
        order = np.argsort(-popularity, kind="stable")[: self.retrieval_depth]
        self.popular_positions = _variable(order.astype(np.int32), "popular_positions")
        self.popular_scores = _variable(np.log1p(popularity[order]).astype(np.float32), "popular_scores")

    # --- retrieval -------------------------------------------------------------------------

    def _history(self, rows: tf.Tensor) -> tf.RaggedTensor:
        history = tf.RaggedTensor.from_row_splits(self.history_values, self.history_row_splits, validate=False)
        return tf.gather(history, rows)

    def _drop_history(self, rows: tf.Tensor, scores: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
        """Sets the scores of candidates in the user's training history to -inf."""
        num_movies = tf.shape(self.movie_ids, out_type=tf.int32)[0]
        # Sorted per row and padded past the catalog, so a binary search finds members.
        seen = self._history(rows).to_tensor(default_value=num_movies)
        seen = tf.concat([seen, tf.fill([tf.shape(seen)[0], 1], num_movies)], axis=1)
        at = tf.searchsorted(seen, positions, side="left")
        found = tf.equal(tf.gather(seen, at, batch_dims=1), positions)
        return tf.where(found, tf.constant(-np.inf, scores.dtype), scores)

    def _query_inputs(self, user_id: tf.Tensor, rows: tf.Tensor, requested: Dict[str, tf.Tensor]):
        """Query-tower inputs: a known user's training features, else the request's."""
        inputs = {"user_id": user_id}
        for name in self.feature_names:
            baked = tf.gather(self.user_features[name], rows)
            inputs[name] = tf.where(rows > 0, baked, requested[name])
        return inputs

    def _retrieve(self, user_id: tf.Tensor, requested: Dict[str, tf.Tensor]):
        """Top num_candidates (scores, positions) per user, training movies dropped.

        Returns:
          scores, positions ([batch, num_candidates]) and whether each user is known.
        """
        rows = self.user_rows.lookup(user_id)
        known = rows > 0
        has_features = tf.zeros_like(known)
        for name in self.feature_names:
            has_features = has_features | tf.not_equal(requested[name], "")
        personal = tf.expand_dims(known | has_features, 1)
        queries = self.query_tower(self._query_inputs(user_id, rows, requested))
        scores, positions = self.index(queries, k=self.retrieval_depth)
        positions = tf.cast(positions, tf.int32)
        batch = tf.shape(user_id)[0]
        scores = tf.where(personal, scores, tf.tile(self.popular_scores[tf.newaxis], [batch, 1]))
        positions = tf.where(personal, positions, tf.tile(self.popular_positions[tf.newaxis], [batch, 1]))
        scores = self._drop_history(rows, scores, positions)
        scores, order = tf.math.top_k(scores, k=self.num_candidates)
        return scores, tf.gather(positions, order, batch_dims=1), known

    def _rate(self, user_id: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
        """Predicted ratings of [n] users for [n] catalog positions (-1: a movie not in it)."""
        rows = self.user_rows.lookup(user_id)
        inputs = {"user_id": user_id,
                  "movie_id": tf.where(positions >= 0, tf.gather(self.movie_ids, tf.maximum(positions, 0)), "")}
        for name in self.rating_model.feature_names:
            if name in self.movie_features:
                values = tf.gather(self.movie_features[name], tf.maximum(positions, 0))
                inputs[name] = tf.where(positions >= 0, values, "")
            else:
                inputs[name] = tf.gather(self.user_features[name], rows)
        return self.rating_model(inputs)[:, 0]

    def _predict(self, user_id: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
        """Predicted ratings for [batch, n] pairs given [batch] users and [batch, n] positions."""
        users = tf.broadcast_to(tf.expand_dims(user_id, 1), tf.shape(positions))
        flat = self._rate(tf.reshape(users, [-1]), tf.reshape(positions, [-1]))
        return tf.reshape(flat, tf.shape(positions))

    def _recommend(self, user_id, k, requested):
        k = tf.clip_by_value(k, 1, self.max_k)
        retrieval_scores, positions, known = self._retrieve(user_id, requested)
        predicted = self._predict(user_id, positions)
        # The rating model has not seen users new to it: they keep retrieval's order.
        score = tf.where(tf.expand_dims(known, 1), blend(retrieval_scores, predicted, self.blend_weight),
                         retrieval_scores)
        score = tf.where(tf.math.is_inf(retrieval_scores), retrieval_scores, score)
        score, order = tf.math.top_k(score, k=k)
        positions = tf.gather(positions, order, batch_dims=1)
        return {
            "movie_id": tf.gather(self.movie_ids, positions),
            "title": tf.gather(self.titles, positions),
            "score": score,
            "predicted_rating": tf.gather(predicted, order, batch_dims=1),
            "retrieval_score": tf.gather(retrieval_scores, order, batch_dims=1),
            "known_user": known,
        }

    def _no_features(self, user_id):
        empty = tf.fill(tf.shape(user_id), "")
        return {name: empty for name in USER_FEATURES}

    @tf.function(input_signature=[_USER, _K])
    def recommend(self, user_id, k):
        """Top-k recommendations per user (users never seen get popular movies).

        Args:
          user_id: [batch] user ids.
          k: results per user, clipped to [1, max_k].

        Returns:
          movie_id, title, score, predicted_rating, retrieval_score: [batch, k], best first;
          known_user: [batch].
        """
        return self._recommend(user_id, k, self._no_features(user_id))

    @tf.function(input_signature=[_USER, _K] + _FEATURES)
    def recommend_with_features(self, user_id, k, user_age, user_gender, user_occupation, user_zip):
        """Like ``recommend``; users never seen are served from these features ("" = unknown).

        Known users keep the features they had in training.
        """
        requested = dict(zip(USER_FEATURES, (user_age, user_gender, user_occupation, user_zip)))
        return self._recommend(user_id, k, requested)

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
        return {"movie_id": tf.where(tf.math.is_inf(scores), "", tf.gather(self.movie_ids, positions)),
                "title": tf.where(tf.math.is_inf(scores), "", tf.gather(self.titles, positions)),
                "score": scores, "known_movie": known}

    @tf.function(input_signature=[_MOVIE, _K])
    def similar_movies(self, movie_id, k):
        """"More like this": cosine similarity of candidate embeddings, the movie excluded.

        Returns:
          movie_id, title, score ([batch, k]; "" and -inf for unknown movies), known_movie.
        """
        rows = tf.maximum(self.movie_rows.lookup(movie_id), 0)
        return self._movie_neighbours(movie_id, k, tf.gather(self.unit_embeddings, rows), unit_scores=True)

    @tf.function(input_signature=[_MOVIE, _K])
    def also_liked(self, movie_id, k):
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

    @tf.function(input_signature=[_USER])
    def retrieval_scores(self, user_id):
        """Exact two-tower scores of every catalog movie (nothing dropped), for evaluation.

        Returns:
          scores: [batch, catalog size], catalog order (see ``catalog``).
        """
        rows = self.user_rows.lookup(user_id)
        queries = self.query_tower(self._query_inputs(user_id, rows, self._no_features(user_id)))
        return {"scores": tf.matmul(queries, self.candidate_embeddings, transpose_b=True)}

    @tf.function(input_signature=[_USER, _MOVIE])
    def predict_rating(self, user_id, movie_id):
        """The rating model's prediction for each (user_id[i], movie_id[i]) pair.

        Returns:
          rating: [batch].
        """
        return {"rating": self._rate(user_id, tf.cast(self.movie_rows.lookup(movie_id), tf.int32))}

    @tf.function(input_signature=[])
    def catalog(self):
        """Every movie the model knows: movie_id and title, catalog order."""
        return {"movie_id": tf.identity(self.movie_ids), "title": tf.identity(self.titles)}

    @tf.function(input_signature=[_USER])
    def training_history(self, user_id):
        """Each user's training movies (excluded from recommendations).

        Returns:
          movie_id: [batch, longest] padded with ""; length: [batch].
        """
        history = self._history(self.user_rows.lookup(user_id))
        return {"movie_id": tf.gather(self.movie_ids, history).to_tensor(default_value=""),
                "length": tf.cast(history.row_lengths(), tf.int32)}

    def signatures(self) -> dict:
        """The SavedModel signatures, ``serving_default`` = recommend."""
        return {
            "serving_default": self.recommend.get_concrete_function(),
            "recommend_with_features": self.recommend_with_features.get_concrete_function(),
            "similar_movies": self.similar_movies.get_concrete_function(),
            "also_liked": self.also_liked.get_concrete_function(),
            "retrieval_scores": self.retrieval_scores.get_concrete_function(),
            "predict_rating": self.predict_rating.get_concrete_function(),
            "catalog": self.catalog.get_concrete_function(),
            "training_history": self.training_history.get_concrete_function(),
        }
