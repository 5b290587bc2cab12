"""Both stages stitched into one ``tf.Module``: retrieve -> drop seen -> rank -> top k."""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from twostage.data.features import USER_FEATURES
from twostage.data.history import RaggedTable
from twostage.retrieval.index import top_k_excluding
from twostage.serving.candidate_ranking import CandidateRanking

DEFAULT_K = 10
# Signature name -> the module's tf.function it serves (also reachable on the loaded object).
SIGNATURE_FUNCTIONS = {
    "serving_default": "recommend",
    "retrieve": "retrieve",
    "similar_movies": "similar_movies",
    "also_liked": "also_liked",
    "retrieval_scores": "retrieval_scores",
    "predict_rating": "predict_rating",
    "catalog": "catalog",
    "training_history": "training_history",
}
# Up to this many (users + 1) x catalog cells, each user's training movies are also kept as a
# dense bool row, so that excluding them costs a request one gather instead of a ragged
# gather and a scatter (some 30 ops, a third of a one-user request's graph). ml-1m's
# 6,041 x 3,706 is 22M cells (22 MB); past this, the ragged table alone.
DENSE_SEEN_CELLS = 32_000_000
# From this many users a request, retrieval goes shallow first and ranking skips the
# candidates that cannot reach the top k (TwoStageModule._retrieve_and_rank); below it, the
# extra ops cost more than they save.
PRUNE_FROM_USERS = 8
# Such a request first searches an approximate index this many times num_candidates deep
# (TwoStageModule._searched_in_two_passes; the lists do not depend on either setting): on
# ml-100k, 1 of 100 users is searched again at 1.5, 7 at 1.0...
FIRST_SEARCH_DEPTH = 1.5
# ... and keeps this many times k candidates of an exact index first.
FIRST_EXACT_DEPTH = 4


def _strings(name: str, rank: int = 1) -> tf.TensorSpec:
    return tf.TensorSpec([None] * rank, tf.string, name=name)


_K = tf.TensorSpec([], tf.int32, name="k")
# Optional inputs carry defaults in the SignatureDef: TF Serving fills in what a request
# leaves out. An empty feature means "not given"; one value is shared by every user.
_REQUEST = [_strings("user_id"), _K] + [_strings(name) for name in USER_FEATURES] + [
    _strings("exclude_movie_ids", rank=2), tf.TensorSpec([], tf.bool, name="include_seen")]
_NO_VALUES = tf.constant([], tf.string)
_NO_EXCLUSIONS = tf.zeros([0, 0], tf.string)
_FALSE = tf.constant(False)


def _variable(value, name: str) -> tf.Variable:
    return tf.Variable(value, trainable=False, name=name)


@dataclasses.dataclass
class _Request:
    """A request's users as retrieval sees them (tensors, one row per user).

    Attributes:
      user_id, rows: the ids and their user rows (0: never seen).
      queries: [batch, dim] query embeddings.
      personal: [batch, 1] whether the user gets personal results (else popular movies).
      excluded: [batch, catalog] bool, what the user must not get.
      counts: [batch] how many movies that is, at most.
    """

    user_id: tf.Tensor
    rows: tf.Tensor
    queries: tf.Tensor
    personal: tf.Tensor
    excluded: tf.Tensor
    counts: tf.Tensor

    def gather(self, indices) -> _Request:
        """The request of the users at ``indices``."""
        return _Request(*(tf.gather(getattr(self, field.name), indices) for field in dataclasses.fields(self)))


@dataclasses.dataclass
class ServingTables:
    """What the exported model looks up at request time, all from the training part.

    Attributes:
      movie_ids, titles: the catalog, position order.
      candidate_embeddings: [catalog, dim] candidate-tower embeddings.
      user_ids: the training users (rows 1..n of every per-user table; row 0 is a user never seen).
      user_embeddings: [n, dim] query embeddings of those users (their training features
        and history), so a known user costs a gather, not a pass through the query tower.
      history: each user's training movies (rows 1..n), excluded by default.
      fans: each movie's users who liked it (user rows), for "also liked".
      popularity: [catalog] training rating counts (cold start without features).
    """

    movie_ids: np.ndarray
    titles: np.ndarray
    candidate_embeddings: np.ndarray
    user_ids: np.ndarray
    user_embeddings: np.ndarray
    history: RaggedTable
    fans: RaggedTable
    popularity: np.ndarray


class TwoStageModule(tf.Module):
    """The exported model.

    Retrieval embeds users (known users: their precomputed query embedding; users never
    seen: the query tower over the features the request carries) and asks the index for
    enough candidates that, once the user's training movies and the request's exclusions are
    dropped, ``num_candidates`` remain. The rating model predicts each (user, candidate)
    rating; the top k by retrieval score + blend_weight * predicted rating come back (the
    weight was chosen on validation data). Users never seen and without features get the
    most popular movies.

    Args:
      tables: the lookup tables (ServingTables).
      query_encoder: ``encode({"user_id", user features...}) -> [batch, dim]`` (retrieval.model.QueryEncoder,
        or the one restored from an earlier export).
      index: (query embeddings, k) -> (scores, catalog positions); ScaNN or brute force,
        built for ``max_depth`` neighbours.
      rating_scorer: ``rate(user_id, user_rows, positions) -> [n]`` and ``rate_lists`` for [users, n]
        positions (ranking.scorers).
      num_candidates: candidates handed to the rating model.
      max_k: the largest k a request may ask for.
      max_exclusions: extra exclusions per request that still leave k results.
      blend_weight: final score = retrieval score + blend_weight * predicted rating.
    """

    def __init__(self, tables: ServingTables, query_encoder, index, rating_scorer, num_candidates: int, max_k: int,
                 max_exclusions: int, blend_weight: float):
        super().__init__(name="twostage")
        num_movies = len(tables.movie_ids)
        self.query_encoder = query_encoder
        self.index = index
        self.rating_scorer = rating_scorer
        self.num_candidates = min(num_candidates, num_movies)
        self.max_k = min(max_k, self.num_candidates)
        self.max_depth = max_depth(num_movies, num_candidates, tables.history, max_exclusions)
        self.blend_weight = _variable(np.float32(blend_weight), "blend_weight")
        # The rating range is None for an unbounded output, or an export from before it was
        # kept: every candidate is rated then.
        self.ranking = CandidateRanking(rating_scorer, self.blend_weight, getattr(rating_scorer, "rating_range", None),
                                        getattr(rating_scorer, "highest_ratings", None))
        self.movie_ids = _variable(tables.movie_ids.astype(object), "movie_ids")
        self.titles = _variable(tables.titles.astype(object), "titles")
        self.candidate_embeddings = _variable(tables.candidate_embeddings.astype(np.float32), "candidate_embeddings")
        norms = np.linalg.norm(tables.candidate_embeddings, axis=1, keepdims=True)
        self.unit_embeddings = _variable(tables.candidate_embeddings / np.maximum(norms, 1e-12), "unit_embeddings")
        self.user_ids = _variable(np.asarray(tables.user_ids).astype(object), "user_ids")
        self.user_rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(np.asarray(tables.user_ids).astype(object), tf.string),
                                                tf.range(1, len(tables.user_ids) + 1, dtype=tf.int64)),
            default_value=0)
        self.movie_rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(tables.movie_ids.astype(object)),
                                                tf.range(num_movies, dtype=tf.int32)), default_value=-1)
        dim = tables.user_embeddings.shape[1]
        self.user_embeddings = _variable(
            np.concatenate([np.zeros((1, dim), np.float32), tables.user_embeddings]).astype(np.float32),
            "user_embeddings")
        self.history_values = _variable(tables.history.values, "history_values")
        self.history_row_splits = _variable(tables.history.row_splits, "history_row_splits")
        lengths = np.diff(tables.history.row_splits)
        self.history_lengths = _variable(lengths.astype(np.int32), "history_lengths")
        self.seen = None
        if len(lengths) * num_movies <= DENSE_SEEN_CELLS:
            seen = np.zeros((len(lengths), num_movies), bool)
            seen[np.repeat(np.arange(len(lengths)), lengths), tables.history.values] = True
            self.seen = _variable(seen, "seen")
        self.fan_values = _variable(tables.fans.values, "fan_values")
        self.fan_row_splits = _variable(tables.fans.row_splits, "fan_row_splits")
        self.popularity = _variable(tables.popularity.astype(np.float32), "popularity")
        # Cold-start scores: the whole catalog's for the exact index, and the most popular
        # movies in order for an index that returns neighbours (no sort per request).
        log_popularity = np.log1p(tables.popularity).astype(np.float32)
        self.log_popularity = _variable(log_popularity, "log_popularity")
        order = np.argsort(-tables.popularity, kind="stable")[: self.max_depth]
        self.popular_positions = _variable(order.astype(np.int32), "popular_positions")
        self.popular_scores = _variable(log_popularity[order], "popular_scores")

    # --- request inputs --------------------------------------------------------------------

    @staticmethod
    def _per_user(values: tf.Tensor, batch: tf.Tensor, what: str) -> tf.Tensor:
        """Request values for each user: none given -> empty, one -> shared, else one per user."""
        count = tf.shape(values)[0]
        check = tf.debugging.Assert((count <= 1) | tf.equal(count, batch),
                                    [f"{what} must have no rows, one row, or one per user_id"])
        with tf.control_dependencies([check]):
            # Row 0 of the padded values is the shared (or empty) row; no tf.cond, which costs
            # a function call per request.
            padded = tf.concat([values, tf.zeros(tf.concat([[1], tf.shape(values)[1:]], 0), values.dtype)], 0)
            one_per_user = tf.cast(tf.equal(count, batch), tf.int32)
            return tf.gather(padded, tf.range(batch) * one_per_user)

    # --- retrieval -------------------------------------------------------------------------

    def _history(self, rows: tf.Tensor) -> tf.RaggedTensor:
        history = tf.RaggedTensor.from_row_splits(self.history_values, self.history_row_splits, validate=False)
        return tf.gather(history, rows)

    def _queries(self, user_id, rows, features: Optional[Dict[str, tf.Tensor]]):
        """Query embeddings, and whether each user gets personal results (else popular movies).

        Known users: their precomputed embedding. Users never seen: the query tower over the
        features their request carries, or popular movies when it carries none. The request's
        features are only looked at when a user is new, which keeps the common request lean.
        """
        known = rows > 0
        precomputed = tf.gather(self.user_embeddings, rows)
        if features is None:  # no request features: new users get popular movies
            return precomputed, known

        def with_new_users():
            batch = tf.shape(user_id)[0]
            given = {name: tf.where(known, "", self._per_user(value, batch, name)) for name, value in features.items()}
            has_features = tf.zeros_like(known)
            for value in given.values():
                has_features |= tf.not_equal(value, "")
            queries = self.query_encoder.encode({"user_id": user_id, **given})
            return tf.where(known[:, tf.newaxis], precomputed, queries), known | has_features

        # Plain tf.cond: TensorFlow lowers it into the graph, and the placer puts each branch op
        # on a device of its own. Kept as an If op (to run the taken branch alone), it must sit
        # on one device with every resource its branches read, and on a GPU machine the
        # variables are on the GPU and the hash tables on the CPU: the call failed to place on an
        # H100. On this CPU the two forms measured the same.
        return tf.cond(tf.reduce_all(known), lambda: (precomputed, known), with_new_users)

    def _mask(self, rows, positions, batch):
        """[batch, catalog] bool, True at (rows[i], positions[i]); positions -1 are ignored."""
        num_movies = tf.shape(self.movie_ids, out_type=tf.int32)[0]
        # The last column absorbs what is not in the catalog, and is dropped.
        indices = tf.stack([rows, tf.where(positions >= 0, positions, num_movies)], axis=1)
        mask = tf.scatter_nd(indices, tf.ones(tf.shape(rows), tf.int32), tf.stack([batch, num_movies + 1])) > 0
        return mask[:, :-1]

    def _exclusions(self, rows, exclude_movie_ids, include_seen):
        """What each user must not get: the training history (unless include_seen) and the
        request's exclusions.

        Returns:
          [batch, catalog] bool mask and [batch] counts.
        """
        batch = tf.shape(rows)[0]
        # Row 0 of the history is empty: the unknown user's, and what include_seen asks for.
        seen_rows = rows if include_seen is None else tf.where(include_seen, tf.zeros_like(rows), rows)
        counts = tf.gather(self.history_lengths, seen_rows)
        if self.seen is not None:
            mask = tf.gather(self.seen, seen_rows)
        else:
            # A scatter, not a sort and a binary search: it stays cheap for a batch of heavy users.
            seen = self._history(seen_rows)
            mask = self._mask(tf.cast(seen.value_rowids(), tf.int32), seen.values, batch)

        if exclude_movie_ids is None:
            return mask, counts

        def with_request_exclusions():
            extra = self.movie_rows.lookup(self._per_user(exclude_movie_ids, batch, "exclude_movie_ids"))
            extra_rows = tf.broadcast_to(tf.range(batch)[:, tf.newaxis], tf.shape(extra))
            extra_mask = self._mask(tf.reshape(extra_rows, [-1]), tf.reshape(extra, [-1]), batch)
            return mask | extra_mask, counts + tf.reduce_sum(tf.cast(extra >= 0, tf.int32), axis=1)

        # Most requests exclude nothing: they skip the lookup and scatter.
        return tf.cond(tf.size(exclude_movie_ids) > 0, with_request_exclusions, lambda: (mask, counts))

    def _request(self, user_id, features, exclude_movie_ids, include_seen) -> _Request:
        """What retrieval needs of a request's users.

        ``features``, ``exclude_movie_ids`` and ``include_seen`` are None where the request
        cannot carry them (``recommend_plain``): none given, training movies excluded.
        """
        rows = self.user_rows.lookup(user_id)
        queries, personal = self._queries(user_id, rows, features)
        excluded, counts = self._exclusions(rows, exclude_movie_ids, include_seen)
        return _Request(user_id, rows, queries, personal[:, tf.newaxis], excluded, counts)

    @property
    def _exact(self) -> bool:
        """Whether the index scores the whole catalog (brute force): it then drops the
        exclusions before its top-k, rather than retrieving extra candidates to make room."""
        return hasattr(self.index, "top_k_excluding")

    def _candidates(self, request: _Request, few_users: bool = False):
        """The top num_candidates (scores, positions) per user, exclusions dropped
        ([batch, num_candidates]; -inf where the catalog ran out). ``few_users``: see
        ``_searched``."""
        scores, positions, _ = self._searched(request, self._full_depth(request.counts), few_users)
        return scores, positions

    def _exact_scores(self, request: _Request):
        """[batch, catalog] retrieval scores (log-popularity for users without personal ones)."""
        return tf.where(request.personal, self.index.scores(request.queries), self.log_popularity[tf.newaxis])

    def _full_depth(self, counts):
        """How deep ``_searched`` must go to find num_candidates for users with these
        exclusion counts (an exact index drops them before its top-k)."""
        if self._exact:
            return self.num_candidates
        return tf.minimum(self.num_candidates + tf.reduce_max(tf.concat([counts, [0]], 0)), self.max_depth)

    def _searched(self, request: _Request, depth, few_users: bool = False):
        """The index's top ``depth`` per user, exclusions dropped, as num_candidates columns.

        ``depth`` counts what the index returns: for an exact index, candidates left after
        the exclusions (at most num_candidates; the columns past it are -inf); for an
        approximate one, neighbours before them (at least num_candidates). ``few_users``:
        the request is known to be for a few users, which changes how an approximate
        index's neighbours are compacted, not which come back or in what order.

        Returns:
          scores, positions ([batch, num_candidates]; where fewer were left, score -inf and
          some catalog position) and
          [batch] the depth-th score found: nothing the search left out scores higher.
        """
        if self._exact:
            scores, positions = self.index.top_k_excluding(self._exact_scores(request), request.excluded, depth)
            deepest = scores[:, -1]
            if not (isinstance(depth, int) and depth == self.num_candidates):  # else no padding ops
                padding = [[0, 0], [0, self.num_candidates - depth]]
                scores, positions = tf.pad(scores, padding, constant_values=-np.inf), tf.pad(positions, padding)
            return scores, positions, deepest
        scores, positions = self.index(request.queries, k=depth)
        positions = tf.cast(positions, tf.int32)
        scores = tf.where(request.personal, scores, self.popular_scores[tf.newaxis, :depth])
        positions = tf.where(request.personal, positions, self.popular_positions[tf.newaxis, :depth])
        deepest = scores[:, -1]
        excluded = tf.gather(request.excluded, positions, batch_dims=1)
        excluded.set_shape([None, None])  # the mask may come out of a cond without its rank
        if few_users:
            # A top-k with the excluded neighbours at -inf keeps the others in order in 3 ops,
            # where the ragged mask below runs ~20: 0.07 ms of a 1.1 ms one-user request.
            scores, order = top_k_excluding(scores, excluded, self.num_candidates)
            return scores, tf.gather(positions, order, batch_dims=1), deepest
        # The index returns its neighbours best first: those left once the exclusions are
        # dropped keep that order, and need no top-k (its top 100 of 200 took 7-11 ms of a
        # 1,000-user batch, half as long as the search).
        kept = ~excluded
        shape = tf.stack([tf.shape(scores)[0], self.num_candidates])
        return (tf.ragged.boolean_mask(scores, kept).to_tensor(default_value=-np.inf, shape=shape),
                tf.ragged.boolean_mask(positions, kept).to_tensor(default_value=0, shape=shape), deepest)

    def _movies(self, positions, scores):
        """movie_id and title of positions; "" where the score is -inf (nothing left to return)."""
        missing = tf.math.is_inf(scores)
        return {"movie_id": tf.where(missing, "", tf.gather(self.movie_ids, positions)),
                "title": tf.where(missing, "", tf.gather(self.titles, positions))}

    # --- both stages -----------------------------------------------------------------------

    def _searched_in_two_passes(self, request: _Request, k):
        """``_candidates`` for a batch, with the first candidates' ratings and their floor
        (CandidateRanking), searched shallow first.

        Most users' top k is settled far shallower than num_candidates deep, and deep costs:
        an exact index's top 100 of 1,682 scores is three times its top 10, and making room
        for every exclusion in an approximate one means searching num_candidates + the
        batch's longest history deep (679 on ml-100k: 4-5 times as long as at 100 for 1,000
        users). So the first pass keeps FIRST_EXACT_DEPTH x k candidates of an exact index,
        or searches an approximate one FIRST_SEARCH_DEPTH x num_candidates deep. A user is
        settled if that was deep enough for num_candidates, or if even the deepest result
        found, given the highest rating the user can get, stays under the floor their first
        candidates set. Only the others are searched again, at full depth; the lists are those
        of one full search.
        """
        full_depth = self._full_depth(request.counts)
        if self._exact:
            depth = tf.minimum(full_depth, FIRST_EXACT_DEPTH * k)
            deep_enough = tf.fill(tf.shape(request.counts), depth >= full_depth)
        else:
            depth = tf.minimum(full_depth, int(FIRST_SEARCH_DEPTH * self.num_candidates))
            deep_enough = (depth >= full_depth) | (self.num_candidates + request.counts <= depth)
        scores, positions, deepest = self._searched(request, depth)
        user_id, rows = request.user_id, request.rows
        first = self.ranking.first_ratings(user_id, rows, positions, k)
        floor = self.ranking.floor(rows, scores, first, k)
        settled = deep_enough | (self.ranking.best_final_scores(rows, deepest[:, tf.newaxis])[:, 0] < floor[:, 0])
        unsettled = tf.where(~settled)[:, 0]

        def search_again():
            again = request.gather(unsettled)
            new_scores, new_positions, _ = self._searched(again, self._full_depth(again.counts))
            new_first = self.ranking.first_ratings(again.user_id, again.rows, new_positions, k)
            new_floor = self.ranking.floor(again.rows, new_scores, new_first, k)
            at = unsettled[:, tf.newaxis]
            return tuple(tf.tensor_scatter_nd_update(old, at, new) for old, new in
                         ((scores, new_scores), (positions, new_positions), (first, new_first), (floor, new_floor)))

        # Settled users keep their first pass, floor included.
        return tf.cond(tf.size(unsettled) > 0, search_again, lambda: (scores, positions, first, floor))

    def _retrieve_and_rank(self, request: _Request, k, few_users: bool):
        """(retrieval scores, positions, final scores, predicted ratings) of each user's candidates.

        A request for a few users pays more for the extra ops of rating only the candidates
        that can reach the top k than the rating work they save; so does an unbounded rating
        output, where no candidate can be ruled out.
        """
        user_id, rows = request.user_id, request.rows

        def rate_everything(few: bool):
            scores, positions = self._candidates(request, few)
            return (scores, positions) + self.ranking.rank_all(user_id, rows, scores, positions)

        def rate_the_reachable():
            scores, positions, first, floor = self._searched_in_two_passes(request, k)
            return (scores, positions) + self.ranking.rank_later(user_id, rows, scores, positions, first, floor)

        if few_users or self.ranking.rating_range is None:
            return rate_everything(few_users)
        return tf.cond(tf.size(request.rows) >= PRUNE_FROM_USERS, rate_the_reachable, lambda: rate_everything(True))

    # --- signatures ------------------------------------------------------------------------
    # Traced without AutoGraph: their control flow is explicit (tf.cond), and converting each
    # Python function they call took half of an export's time.

    @tf.function(autograph=False, input_signature=_REQUEST)
    def recommend(self, user_id, k=tf.constant(DEFAULT_K), user_age=_NO_VALUES, user_gender=_NO_VALUES,
                  user_occupation=_NO_VALUES, user_zip=_NO_VALUES, exclude_movie_ids=_NO_EXCLUSIONS,
                  include_seen=_FALSE):
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

    @tf.function(autograph=False, input_signature=[_strings("user_id"), _K])
    def recommend_plain(self, user_id, k=tf.constant(DEFAULT_K)):
        """``recommend`` for the common request of one user: no user features, no extra
        exclusions, the training movies excluded (users never seen get popular movies).

        The same graph with those inputs left out, not looked at, and every candidate rated
        (one user's ratings cost less than telling which are needed): in-process clients send
        such requests here, a tenth less work than ``recommend`` for one user.
        """
        return self._recommend(user_id, k, None, None, None, few_users=True)

    def _recommend(self, user_id, k, features, exclude_movie_ids, include_seen, few_users=False):
        """The top k of ``_candidates`` by blended score (see ``recommend``); None: not given.
        ``few_users``: rate every candidate, without asking how many users there are."""
        k = tf.clip_by_value(k, 1, self.max_k)
        request = self._request(user_id, features, exclude_movie_ids, include_seen)
        retrieval_scores, positions, score, predicted = self._retrieve_and_rank(request, k, few_users)
        rows = request.rows
        score, order = tf.math.top_k(score, k=k)
        positions = tf.gather(positions, order, batch_dims=1)
        return {**self._movies(positions, score), "score": score,
                "predicted_rating": tf.gather(predicted, order, batch_dims=1),
                "retrieval_score": tf.gather(retrieval_scores, order, batch_dims=1), "known_user": rows > 0}

    @tf.function(autograph=False, input_signature=_REQUEST)
    def retrieve(self, user_id, k=tf.constant(DEFAULT_K), user_age=_NO_VALUES, user_gender=_NO_VALUES,
                 user_occupation=_NO_VALUES, user_zip=_NO_VALUES, exclude_movie_ids=_NO_EXCLUSIONS,
                 include_seen=_FALSE):
        """Retrieval's candidates only (no ranking), with the same inputs as ``recommend``.

        k is clipped to [1, num_candidates].

        Returns:
          movie_id, title, retrieval_score: [batch, k] in retrieval order; known_user: [batch].
        """
        features = dict(zip(USER_FEATURES, (user_age, user_gender, user_occupation, user_zip)))
        k = tf.clip_by_value(k, 1, self.num_candidates)
        request = self._request(user_id, features, exclude_movie_ids, include_seen)
        scores, positions = self._candidates(request)
        scores, positions = scores[:, :k], positions[:, :k]
        return {**self._movies(positions, scores), "retrieval_score": scores, "known_user": request.rows > 0}

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

    @tf.function(autograph=False, input_signature=[_strings("movie_id"), _K])
    def similar_movies(self, movie_id, k=tf.constant(DEFAULT_K)):
        """"More like this": cosine similarity of candidate embeddings, the movie excluded.

        Returns:
          movie_id, title, score ([batch, k]; "" and -inf for unknown movies), known_movie.
        """
        rows = tf.maximum(self.movie_rows.lookup(movie_id), 0)
        return self._movie_neighbours(movie_id, k, tf.gather(self.unit_embeddings, rows), unit_scores=True)

    @tf.function(autograph=False, input_signature=[_strings("movie_id"), _K])
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

    @tf.function(autograph=False, input_signature=[_strings("user_id")])
    def retrieval_scores(self, user_id):
        """Exact two-tower scores of every catalog movie (nothing dropped), for evaluation.

        Returns:
          scores: [batch, catalog size], catalog order (see ``catalog``).
        """
        rows = self.user_rows.lookup(user_id)
        queries, _ = self._queries(user_id, rows, {name: _NO_VALUES for name in USER_FEATURES})
        return {"scores": tf.matmul(queries, self.candidate_embeddings, transpose_b=True)}

    @tf.function(autograph=False, input_signature=[_strings("user_id"), _strings("movie_id")])
    def predict_rating(self, user_id, movie_id):
        """The rating model's prediction for each (user_id[i], movie_id[i]) pair.

        Returns:
          rating: [batch].
        """
        rows = self.user_rows.lookup(user_id)
        return {"rating": self.rating_scorer.rate(user_id, rows, self.movie_rows.lookup(movie_id))}

    @tf.function(autograph=False, input_signature=[])
    def catalog(self):
        """Every movie the model knows: movie_id and title, catalog order."""
        return {"movie_id": tf.identity(self.movie_ids), "title": tf.identity(self.titles)}

    @tf.function(autograph=False, input_signature=[_strings("user_id")])
    def training_history(self, user_id):
        """Each user's training movies (excluded from recommendations by default).

        Returns:
          movie_id: [batch, longest] padded with ""; length: [batch].
        """
        history = self._history(self.user_rows.lookup(user_id))
        return {"movie_id": tf.gather(self.movie_ids, history).to_tensor(default_value=""),
                "length": tf.cast(history.row_lengths(), tf.int32)}

    def signatures(self) -> dict:
        """The SavedModel signatures, ``serving_default`` = recommend.

        The tf.functions themselves (not concrete functions) are handed over, so that their
        optional inputs' defaults are written into the SignatureDefs.
        """
        return {name: getattr(self, function) for name, function in SIGNATURE_FUNCTIONS.items()}


def max_depth(num_movies: int, num_candidates: int, history: RaggedTable, max_exclusions: int) -> int:
    """The most neighbours a request may ask the index for: candidates + the longest history
    + extra exclusions, capped at the catalog."""
    return min(num_movies, min(num_candidates, num_movies) + history.max_length + max_exclusions)
