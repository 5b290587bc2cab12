"""Both stages stitched into one ``tf.Module``: retrieve -> drop seen -> rank -> top k."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from twostage.data.schema import Movies, Ratings


class TrainingHistory:
    """Each known user's training movies as catalog positions, sorted, ragged.

    Args:
      ratings: the training ratings.
      user_ids: the user vocabulary; row 0 is kept empty for unknown users.
      movies: the catalog.
    """

    def __init__(self, ratings: Ratings, user_ids: Sequence[str], movies: Movies):
        row = {user: i + 1 for i, user in enumerate(user_ids)}
        column = {movie: i for i, movie in enumerate(movies.movie_id.tolist())}
        rows = np.fromiter((row.get(u, 0) for u in ratings.user_id.tolist()), np.int64, len(ratings))
        cols = np.fromiter((column.get(m, -1) for m in ratings.movie_id.tolist()), np.int64, len(ratings))
        keep = (rows > 0) & (cols >= 0)
        pairs = np.unique(rows[keep] * len(movies) + cols[keep])  # sorted by row, then position
        rows, cols = pairs // len(movies), pairs % len(movies)
        self.values = cols.astype(np.int32)
        self.row_splits = np.searchsorted(rows, np.arange(len(user_ids) + 2)).astype(np.int64)
        self.max_length = int(np.diff(self.row_splits).max(initial=0))


class TwoStageModule(tf.Module):
    """The exported model.

    Retrieval embeds the users with the query tower and asks the index for enough
    candidates that, once the user's training movies are dropped, ``num_candidates`` remain;
    the rating model scores each (user, candidate) pair; the top k by score come back.
    Users not seen in training get the most popular movies, ranked by popularity.

    Args:
      query_tower: user features -> query embeddings.
      index: (query embeddings, k) -> (scores, catalog positions); ScaNN or brute force.
      candidate_embeddings: [catalog, dim], for exact scores of the whole catalog.
      rating_model: (user_id, movie_id) -> predicted rating.
      movies: the catalog.
      user_ids: the training users.
      history: each user's training movies.
      popularity: [catalog] training rating counts.
      num_candidates: candidates handed to the rating model.
      max_k: the largest k a request may ask for.
    """

    def __init__(self, query_tower, index, candidate_embeddings: np.ndarray, rating_model, movies: Movies,
                 user_ids: Sequence[str], history: TrainingHistory, popularity: np.ndarray,
                 num_candidates: int, max_k: int):
        super().__init__(name="twostage")
        num_movies = len(movies)
        self.query_tower = query_tower
        self.index = index
        self.rating_model = rating_model
        self.num_candidates = min(num_candidates, num_movies)
        self.max_k = min(max_k, self.num_candidates)
        # Retrieve enough that dropping the heaviest user's history still leaves num_candidates.
        self.retrieval_depth = min(num_movies, self.num_candidates + history.max_length)
        self.movie_ids = tf.Variable(movies.movie_id, trainable=False, name="movie_ids")
        self.titles = tf.Variable(movies.title, trainable=False, name="titles")
        self.candidate_embeddings = tf.Variable(candidate_embeddings, trainable=False, name="candidate_embeddings")
        self.user_rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(user_ids), tf.string),
                                                tf.range(1, len(user_ids) + 1, dtype=tf.int64)),
            default_value=0)
        self.history_values = tf.Variable(history.values, trainable=False, name="history_values")
        self.history_row_splits = tf.Variable(history.row_splits, trainable=False, name="history_row_splits")
        order = np.argsort(-popularity, kind="stable")[: self.retrieval_depth]
        self.popular_positions = tf.Variable(order.astype(np.int32), trainable=False, name="popular_positions")
        self.popular_scores = tf.Variable(np.log1p(popularity[order]).astype(np.float32), trainable=False,
                                          name="popular_scores")

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

    def _retrieve(self, user_id: tf.Tensor):
        """Top num_candidates (scores, positions) per user, training movies dropped."""
        rows = self.user_rows.lookup(user_id)
        queries = self.query_tower({"user_id": user_id})
        scores, positions = self.index(queries, k=self.retrieval_depth)
        positions = tf.cast(positions, tf.int32)
        batch = tf.shape(user_id)[0]
        known = tf.expand_dims(rows > 0, 1)
        scores = tf.where(known, scores, tf.tile(self.popular_scores[tf.newaxis], [batch, 1]))
        positions = tf.where(known, positions, tf.tile(self.popular_positions[tf.newaxis], [batch, 1]))
        scores = self._drop_history(rows, scores, positions)
        scores, order = tf.math.top_k(scores, k=self.num_candidates)
        return scores, tf.gather(positions, order, batch_dims=1), known

    def _predict(self, user_id: tf.Tensor, movie_id: tf.Tensor) -> tf.Tensor:
        """Predicted ratings for [batch, n] pairs given [batch] users and [batch, n] movies."""
        users = tf.broadcast_to(tf.expand_dims(user_id, 1), tf.shape(movie_id))
        flat = self.rating_model({"user_id": tf.reshape(users, [-1]), "movie_id": tf.reshape(movie_id, [-1])})
        return tf.reshape(flat, tf.shape(movie_id))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([], tf.int32, name="k")])
    def recommend(self, user_id, k):
        """Top-k recommendations per user.

        Args:
          user_id: [batch] user ids.
          k: results per user, clipped to [1, max_k].

        Returns:
          movie_id, title, score, predicted_rating, retrieval_score: each [batch, k], best first.
        """
        k = tf.clip_by_value(k, 1, self.max_k)
        retrieval_scores, positions, known = self._retrieve(user_id)
        movie_ids = tf.gather(self.movie_ids, positions)
        predicted = self._predict(user_id, movie_ids)
        # The rating model knows nothing of unknown users; they keep retrieval's popularity order.
        score = tf.where(known, predicted, retrieval_scores)
        score = tf.where(tf.math.is_inf(retrieval_scores), retrieval_scores, score)
        score, order = tf.math.top_k(score, k=k)
        positions = tf.gather(positions, order, batch_dims=1)
        return {
            "movie_id": tf.gather(self.movie_ids, positions),
            "title": tf.gather(self.titles, positions),
            "score": score,
            "predicted_rating": tf.gather(predicted, order, batch_dims=1),
            "retrieval_score": tf.gather(retrieval_scores, order, batch_dims=1),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def retrieval_scores(self, user_id):
        """Exact two-tower scores of every catalog movie (nothing dropped), for evaluation.

        Returns:
          scores: [batch, catalog size], catalog order (see ``catalog``).
        """
        queries = self.query_tower({"user_id": user_id})
        return {"scores": tf.matmul(queries, self.candidate_embeddings, transpose_b=True)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None], tf.string, name="movie_id")])
    def predict_rating(self, user_id, movie_id):
        """The rating model's prediction for each (user_id[i], movie_id[i]) pair.

        Returns:
          rating: [batch].
        """
        return {"rating": self.rating_model({"user_id": user_id, "movie_id": movie_id})[:, 0]}

    @tf.function(input_signature=[])
    def catalog(self):
        """Every movie the model knows: movie_id and title, catalog order."""
        return {"movie_id": tf.identity(self.movie_ids), "title": tf.identity(self.titles)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
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
            "retrieval_scores": self.retrieval_scores.get_concrete_function(),
            "predict_rating": self.predict_rating.get_concrete_function(),
            "catalog": self.catalog.get_concrete_function(),
            "training_history": self.training_history.get_concrete_function(),
        }
