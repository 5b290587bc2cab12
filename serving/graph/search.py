"""Retrieval inside the serving graph: each user's candidates from the index, exclusions dropped.

An exact index (``NeighbourIndex.is_exact``) scores the whole catalog and drops a user's
exclusions before its top-k; an approximate one is searched deep enough to make room for
them, and they are dropped from its neighbours. Batches may search shallow first
(``CandidateSearch.in_two_passes``); the lists are those of one full search.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from twostage.retrieval.index import NeighbourIndex, top_k_excluding
from twostage.serving.graph.candidate_ranking import CandidateRanking
from twostage.serving.graph.inputs import Request

# A batch first searches an approximate index this many times num_candidates deep, and keeps
# this many times k candidates of an exact one (CandidateSearch.in_two_passes): deep enough
# to settle most users at once; the lists do not depend on either (docs/serving.md).
FIRST_SEARCH_DEPTH = 1.5
FIRST_EXACT_DEPTH = 4
# The approximate index's first depth where movie terms differ: fewer users settle by the
# floor, so more must be settled by depth.
FIRST_SEARCH_DEPTH_WITH_TERMS = 3.0


def terms_vary(movie_terms: np.ndarray) -> bool:
    """Whether movies' terms in the final score differ (CandidateSearch ``movie_terms_vary``)."""
    return bool(np.ptp(movie_terms) > 0)


class CandidateSearch:
    """The index and the cold-start fallbacks, searched for a request's users.

    Users without personal results (never seen, no features) get the most popular movies
    instead of the index's answer.

    Args:
      index: the nearest-neighbour index over the candidate embeddings.
      ranking: the ranking stage (the two-pass search rates the first candidates).
      num_candidates: candidates per user handed to the ranking stage.
      max_depth: the most neighbours the index was built to return.
      log_popularity: [catalog] cold-start scores for an exact index.
      popular_positions, popular_scores: [max_depth] the most popular movies in order, and
        their scores, for an index that returns neighbours.
      movie_terms_vary: movies' terms in the final score differ. The shallow pass of
        ``in_two_passes`` then settles fewer users by its floor (a movie it did not reach may
        have the catalog's largest term): an exact index, which scores the whole catalog
        either way, searches once at full depth, and an approximate one searches deeper first
        (FIRST_SEARCH_DEPTH_WITH_TERMS; docs/serving.md).
    """

    def __init__(self, index: NeighbourIndex, ranking: CandidateRanking, num_candidates: int, max_depth: int,
                 log_popularity: tf.Variable, popular_positions: tf.Variable, popular_scores: tf.Variable,
                 movie_terms_vary: bool = False):
        self.index = index
        self.movie_terms_vary = movie_terms_vary
        self.ranking = ranking
        self.num_candidates = num_candidates
        self.max_depth = max_depth
        self.log_popularity = log_popularity
        self.popular_positions = popular_positions
        self.popular_scores = popular_scores
        # Whether the index scores the whole catalog (brute force): it then drops the
        # exclusions before its top-k, rather than retrieving extra candidates to make room.
        self.exact = index.is_exact()

    def candidates(self, request: Request, few_users: bool = False):
        """The top num_candidates (scores, positions) per user, exclusions dropped
        ([batch, num_candidates]; -inf where the catalog ran out). ``few_users``: see
        ``searched``."""
        scores, positions, _ = self.searched(request, self.full_depth(request.counts), few_users)
        return scores, positions

    def exact_scores(self, request: Request):
        """[batch, catalog] retrieval scores (log-popularity for users without personal ones)."""
        return tf.where(request.personal, self.index.scores(request.queries), self.log_popularity[tf.newaxis])

    def full_depth(self, counts):
        """How deep ``searched`` must go to find num_candidates for users with these
        exclusion counts (an exact index drops them before its top-k)."""
        if self.exact:
            return self.num_candidates
        return tf.minimum(self.num_candidates + tf.reduce_max(tf.concat([counts, [0]], 0)), self.max_depth)

    def searched(self, request: Request, depth, few_users: bool = False):
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
        if self.exact:
            scores, positions = self.index.top_k_excluding(self.exact_scores(request), request.excluded, depth)
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
            # where the ragged mask below runs ~20.
            scores, order = top_k_excluding(scores, excluded, self.num_candidates)
            return scores, tf.gather(positions, order, batch_dims=1), deepest
        # The index returns its neighbours best first: those left once the exclusions are
        # dropped keep that order, and need no top-k (which would cost a batch half as much
        # again as the search).
        kept = ~excluded
        shape = tf.stack([tf.shape(scores)[0], self.num_candidates])
        return (tf.ragged.boolean_mask(scores, kept).to_tensor(default_value=-np.inf, shape=shape),
                tf.ragged.boolean_mask(positions, kept).to_tensor(default_value=0, shape=shape), deepest)

    def in_two_passes(self, request: Request, k):
        """``candidates`` for a batch, with the first candidates' ratings and their floor
        (CandidateRanking), searched shallow first.

        Most users' top k is settled far shallower than num_candidates deep, and deep costs:
        an exact index's top-k grows with k, and making room for every exclusion in an
        approximate one means searching num_candidates + the batch's longest history deep
        (docs/serving.md). So the first pass keeps FIRST_EXACT_DEPTH x k candidates of an exact index,
        or searches an approximate one FIRST_SEARCH_DEPTH x num_candidates deep. A user is
        settled if that was deep enough for num_candidates, or if even the deepest result
        found, given the highest rating the user can get, stays under the floor their first
        candidates set. Only the others are searched again, at full depth; the lists are those
        of one full search. Where movie terms vary, an exact index's one pass is at full depth.
        """
        full_depth = self.full_depth(request.counts)
        if self.exact and self.movie_terms_vary:
            depth, deep_enough = full_depth, tf.fill(tf.shape(request.counts), True)
        elif self.exact:
            depth = tf.minimum(full_depth, FIRST_EXACT_DEPTH * k)
            deep_enough = tf.fill(tf.shape(request.counts), depth >= full_depth)
        else:
            first = FIRST_SEARCH_DEPTH_WITH_TERMS if self.movie_terms_vary else FIRST_SEARCH_DEPTH
            depth = tf.minimum(full_depth, int(first * self.num_candidates))
            deep_enough = (depth >= full_depth) | (self.num_candidates + request.counts <= depth)
        scores, positions, deepest = self.searched(request, depth)
        user_id, rows = request.user_id, request.rows
        first = self.ranking.first_ratings(user_id, rows, positions, k)
        floor = self.ranking.floor(rows, scores, positions, first, k)
        settled = deep_enough | (self.ranking.best_final_scores(rows, deepest[:, tf.newaxis])[:, 0] < floor[:, 0])
        unsettled = tf.where(~settled)[:, 0]

        def search_again():
            again = request.gather(unsettled)
            new_scores, new_positions, _ = self.searched(again, self.full_depth(again.counts))
            new_first = self.ranking.first_ratings(again.user_id, again.rows, new_positions, k)
            new_floor = self.ranking.floor(again.rows, new_scores, new_positions, new_first, k)
            at = unsettled[:, tf.newaxis]
            return tuple(tf.tensor_scatter_nd_update(old, at, new) for old, new in
                         ((scores, new_scores), (positions, new_positions), (first, new_first), (floor, new_floor)))

        # Settled users keep their first pass, floor included.
        return tf.cond(tf.size(unsettled) > 0, search_again, lambda: (scores, positions, first, floor))
