"""A trained rating model in the shape serving needs: (user rows, catalog positions) -> ratings.

Serving asks for the ratings of a user's candidates, each a catalog position, for users
it knows by row (1..n in the user vocabulary's order, data.features.UNKNOWN_USER_ROW for a
user it has never seen).
Both scorers answer ``rate(user_id, user_rows, positions)``, a ``tf.function`` with a fixed
input signature, so that an exported model can be exported again (with another index)
from the SavedModel alone.

* ``PrecomputedRatingScorer``: for the default model, whose first dense layer sees
  [user side, movie side]. That layer's output splits into a user share and a movie share,
  so both are computed once per user and per movie at export; a request then adds two
  gathered rows, and runs only the 64 -> 1 rest of the stack. Exact (to float rounding),
  and an order of magnitude cheaper than embedding titles and genres per candidate per
  request.
* ``ModelRatingScorer``: any other architecture, run on the features of each pair.

A scorer whose ratings are kept inside the rating scale (sigmoid or clipped outputs) also
carries ``rating_range`` ([lowest, highest]): serving uses it to skip rating candidates that
cannot reach a user's top k. Both follow the :class:`RatingScorer` protocol.
"""

from __future__ import annotations

from typing import Dict, Optional, Protocol, Sequence

import numpy as np
import tensorflow as tf

from twostage.ranking.autorec import AutoRecBlend, ItemAutoRec, decoded_rating
from twostage.ranking.model import (BOUNDED_OUTPUTS, AveragedRatingModel, RatingModel, RatingTaskModel,
                                    rating_offset, squashed_rating)

RATE_SIGNATURE = [tf.TensorSpec([None], tf.string, name="user_id"),
                  tf.TensorSpec([None], tf.int64, name="user_rows"),
                  tf.TensorSpec([None], tf.int32, name="positions")]
# The serving graph's shape: each user's candidates, [users] and [users, candidates].
RATE_LISTS_SIGNATURE = [tf.TensorSpec([None], tf.string, name="user_id"),
                        tf.TensorSpec([None], tf.int64, name="user_rows"),
                        tf.TensorSpec([None, None], tf.int32, name="positions")]


class RatingScorer(Protocol):
    """What serving needs of a trained rating model.

    Attributes:
      rating_range: [2] the lowest and highest rating it can predict (a hair wider), or
        None for an unbounded output (serving then rates every candidate).
      highest_ratings: [user rows] the highest rating it gives each user anywhere in the
        catalog, or None (the range's top bounds every user).
    """

    rating_range: Optional[tf.Variable]
    highest_ratings: Optional[tf.Variable]

    def rate(self, user_id: tf.Tensor, user_rows: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
        """[n] ratings of [n] (user id, user row, catalog position) pairs; position -1: not in the catalog."""

    def rate_lists(self, user_id: tf.Tensor, user_rows: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
        """[users, n] ratings of [users, n] catalog positions for [users] users."""


def _in_batches(fn, columns: Dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    size = len(next(iter(columns.values())))
    return np.concatenate([fn({k: tf.constant(v[i:i + batch_size]) for k, v in columns.items()}).numpy()
                           for i in range(0, size, batch_size)], axis=0)


def _members(model: RatingTaskModel) -> list:
    """The rating models whose mean ``model`` is (itself, unless it is an average), the item
    autoencoder of a blend left out (it rates inside the same scale)."""
    if isinstance(model, AutoRecBlend):
        model = model.base
    return list(model.members) if isinstance(model, AveragedRatingModel) else [model]


class _AutoRecTables(tf.Module):
    """An item autoencoder's share of a blend, as tables in the scorer's rows.

    Args:
      autorec: the trained ItemAutoRec, its codes from the whole training part.
      weight: its weight in the blend.
      user_ids: the known users, in row order (row i + 1; row 0: a user it does not know).
      num_movies: catalog size (position ``num_movies``: a movie it does not know).
    """

    def __init__(self, autorec: ItemAutoRec, weight: float, user_ids: Sequence[str], num_movies: int):
        super().__init__(name="autorec_tables")
        rows = np.concatenate([[0], autorec.users.index(tf.constant(np.asarray(user_ids, dtype=str))).numpy()])
        known_users = autorec.rated_users.numpy()[rows]
        known_users[0] = 0.0
        self.user_vectors = tf.Variable(autorec.decoder.kernel.numpy().T[rows], trainable=False, name="user_vectors")
        self.user_bias = tf.Variable(autorec.decoder.bias.numpy()[rows], trainable=False, name="user_bias")
        self.user_weight = tf.Variable(np.float32(weight) * known_users, trainable=False, name="user_weight")
        # Catalog positions are movie rows - 1; the unknown movie goes last, as a code of zeros.
        codes, known_movies = autorec.codes.numpy(), autorec.rated_movies.numpy()
        self.codes = tf.Variable(np.concatenate([codes[1:num_movies + 1], np.zeros_like(codes[:1])]),
                                 trainable=False, name="codes")
        self.movie_known = tf.Variable(np.concatenate([known_movies[1:num_movies + 1], [0.0]]).astype(np.float32),
                                       trainable=False, name="movie_known")
        self.low, self.high = autorec.low, autorec.high

    def blend(self, ratings, user_index, movie_rows):
        """``ratings`` ([n] or [u, n]) averaged with the autoencoder's, where it knows the pair."""
        autorec = decoded_rating(tf.gather(self.codes, movie_rows), tf.gather(self.user_vectors, user_index),
                                 tf.gather(self.user_bias, user_index), self.low, self.high)
        share = tf.gather(self.user_weight, user_index) * tf.gather(self.movie_known, movie_rows)
        return (1.0 - share) * ratings + share * autorec


def _rounding_margin(low: float, high: float) -> float:
    """How far past a rating the bounds serving prunes with are set: float32 rounding (of a
    scaled sigmoid, of a mean, of a product in batches of another shape) stays far inside it."""
    return 1e-4 * (high - low)


def _rating_range(model: RatingTaskModel) -> Optional[tf.Variable]:
    """[lowest, highest] rating ``model`` can predict, or None when its output is unbounded."""
    members = _members(model)
    if any(m.output_kind not in BOUNDED_OUTPUTS for m in members):
        return None
    # A mean stays inside its members' widest range. A hair wider than the scale: float32
    # rounding of a scaled sigmoid or of a mean may land an ulp past it, and serving relies
    # on no rating exceeding these bounds.
    low, high = min(m.low for m in members), max(m.high for m in members)
    margin = _rounding_margin(low, high)
    return tf.Variable(np.float32([low - margin, high + margin]), trainable=False, name="rating_range")


# Up to this many (known user, catalog movie) pairs, the precomputed scorer rates every pair
# once at export and keeps each user's highest rating; past it that costs the export more
# time than the tighter bound saves (docs/serving.md).
HIGHEST_RATINGS_MAX_PAIRS = 4_000_000


def _movie_inputs(movie_columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The catalog's columns with one row past the catalog, for a movie it does not hold."""
    return {name: np.concatenate([values, [""]]).astype(object) for name, values in movie_columns.items()}


def _with_unknown_first(values: np.ndarray) -> np.ndarray:
    """Per-user values as user-row tables hold them: the unknown user's "" first (data.features.UNKNOWN_USER_ROW)."""
    return np.concatenate([np.asarray([""], dtype=object), np.asarray(values, dtype=object)])


class _SplitRatingHead(tf.Module):
    """One RatingModel's tables: its first dense layer split into a user and a movie share.

    Args:
      model: the trained RatingModel.
      users: user columns (the unknown user's row first), as the model reads them.
      movie_inputs: movie columns (one row past the catalog for a movie it does not hold).
    """

    def __init__(self, model: RatingModel, users: Dict[str, np.ndarray], movie_inputs: Dict[str, np.ndarray]):
        super().__init__(name="split_rating_head")
        layers = model.rating_head.layers
        if any(getattr(layer.activation, "__name__", "") != "relu" for layer in layers[:-1]):
            raise ValueError("the rating head's hidden layers must be relu to split its first layer")
        user_side = _in_batches(model.user_side, {n: users[n] for n in ("user_id",) + model.user_feature_names})
        movie_side = _in_batches(model.movie_side,
                                 {n: movie_inputs[n] for n in ("movie_id",) + model.movie_feature_names})
        kernel, bias = (w.numpy() for w in layers[0].weights)
        width = self.user_width = user_side.shape[1]
        self.user_hidden = tf.Variable(user_side @ kernel[:width] + bias, trainable=False, name="user_hidden")
        self.movie_hidden = tf.Variable(movie_side @ kernel[width:], trainable=False, name="movie_hidden")
        self.kernels = [tf.Variable(layer.kernel.numpy(), trainable=False) for layer in layers[1:]]
        # The output layer's bias is a constant: PrecomputedRatingScorer folds it into the user bias.
        self.biases = [tf.Variable(layer.bias.numpy(), trainable=False) for layer in layers[1:-1]]
        self.output_bias = float(layers[-1].bias.numpy()[0])
        zeros = lambda n: np.zeros(n, np.float32)  # noqa: E731
        self.user_bias = (_in_batches(lambda c: model.user_bias(c["user_id"]), users)[:, 0]
                          if model.user_bias is not None else zeros(len(users["user_id"])))
        self.movie_bias = (_in_batches(lambda c: model.movie_bias(c["movie_id"]), movie_inputs)[:, 0]
                           if model.movie_bias is not None else zeros(len(movie_inputs["movie_id"])))
        self.scale = (model.low, model.high, model.output_kind)
        self.offset = rating_offset(model.low, model.high, model.global_mean, model.output_kind)

    def raw(self, user_index, movie_rows):
        """Raw outputs, biases left out: [n, 1] for user_index [n] and movie_rows [n], or
        [u * n, 1] for user_index [u, 1] and movie_rows [u, n]."""
        return self.raw_of(tf.gather(self.user_hidden, user_index), movie_rows)

    def raw_of(self, user_hidden, movie_rows):
        """``raw`` for users' first-layer shares computed elsewhere ([n, width] or [u, 1, width])."""
        hidden = tf.nn.relu(user_hidden + tf.gather(self.movie_hidden, movie_rows))
        hidden = tf.reshape(hidden, [-1, self.user_hidden.shape[1]])
        for i, kernel in enumerate(self.kernels):
            hidden = tf.matmul(hidden, kernel)
            if i < len(self.biases):
                hidden = tf.nn.relu(hidden + self.biases[i])
        return hidden


def _split_members(model: RatingTaskModel):
    """The RatingModels whose mean ``model`` is, if each splits its first layer; else None."""
    members = _members(model)
    if all(isinstance(m, RatingModel) and m.splits_first_layer for m in members):
        return members
    return None


class PrecomputedRatingScorer(tf.Module):
    """The default rating model (or a mean of several) with its per-user and per-movie work
    done at export.

    Each member model is a head (its split first layer and the rest of its stack); their
    biases sit side by side, [rows, heads], with every constant the rating adds before it
    is squashed into the scale folded into the user bias. A request's graph then has a few
    ops per head and a handful for all of them, which is most of what a one-user request's
    latency is made of.

    Args:
      model: the trained RatingModel, or an AveragedRatingModel of them (their history
        inputs already pooling the whole training part).
      user_ids: the known users, in row order (row i + 1).
      user_columns: each user feature the model reads -> values of those users.
      movie_columns: the catalog's feature columns, position order (data.features.movie_feature_columns).
    """

    def __init__(self, model: RatingTaskModel, user_ids: Sequence[str], user_columns: Dict[str, np.ndarray],
                 movie_columns: Dict[str, np.ndarray]):
        super().__init__(name="precomputed_ratings")
        members = _split_members(model)
        if members is None:
            raise ValueError("only RatingModels that split their first layer (or their mean) can be precomputed")
        users = {"user_id": _with_unknown_first(user_ids)}
        users.update({name: _with_unknown_first(values) for name, values in user_columns.items()})
        movie_inputs = _movie_inputs(movie_columns)
        self.heads = [_SplitRatingHead(member, users, movie_inputs) for member in members]
        scales = {head.scale for head in self.heads}
        if len(scales) != 1:
            raise ValueError(f"the averaged rating models squash their outputs differently: {sorted(scales)}")
        self.scale = scales.pop()
        self.user_bias = tf.Variable(np.stack([head.user_bias + head.output_bias + head.offset
                                               for head in self.heads], axis=1).astype(np.float32),
                                     trainable=False, name="user_bias")
        self.movie_bias = tf.Variable(np.stack([head.movie_bias for head in self.heads], axis=1).astype(np.float32),
                                      trainable=False, name="movie_bias")
        self.unknown_movie = len(movie_inputs["movie_id"]) - 1
        self.autorec = (_AutoRecTables(model.autorec, model.weight, user_ids, self.unknown_movie)
                        if isinstance(model, AutoRecBlend) else None)
        self.rating_range = _rating_range(model)
        self.highest_ratings = self._highest_ratings(len(users["user_id"]), self.unknown_movie)

    def _highest_ratings(self, num_rows: int, num_movies: int, users_per_step: int = 64) -> Optional[tf.Variable]:
        """[user rows] the highest rating each known user gets anywhere in the catalog, a hair
        above it (as ``rating_range``), within the range; the unknown user's row: the
        range's top. A tighter bound than the scale's top for serving's pruning. None for an unbounded output, or past
        HIGHEST_RATINGS_MAX_PAIRS pairs.
        """
        if self.rating_range is None or (num_rows - 1) * num_movies > HIGHEST_RATINGS_MAX_PAIRS:
            return None
        high = self.rating_range.numpy()[1]
        catalog = tf.range(num_movies)[tf.newaxis]
        highest = [high]
        for start in range(1, num_rows, users_per_step):
            rows = tf.range(start, min(start + users_per_step, num_rows), dtype=tf.int64)
            ratings = self._ratings(rows, tf.tile(catalog, [tf.size(rows), 1]), per_user=True)
            highest.extend(tf.reduce_max(ratings, axis=1).numpy())
        # A request rates in batches of other shapes, which may round differently.
        margin = _rounding_margin(*self.scale[:2])
        return tf.Variable(np.minimum(np.float32(highest) + margin, high), trainable=False, name="highest_ratings")

    def _ratings(self, user_rows, positions, per_user):
        """[n] ratings of pairs (user_rows, positions [n]), or [u, n] of lists (positions [u, n])."""
        movie_rows = tf.where(positions >= 0, positions, self.unknown_movie)
        # A list's user is gathered once, as [u, 1, width], not once per candidate.
        user_index = user_rows[:, tf.newaxis] if per_user else user_rows
        raw = tf.concat([head.raw(user_index, movie_rows) for head in self.heads], axis=1)
        bias = tf.gather(self.user_bias, user_index) + tf.gather(self.movie_bias, movie_rows)
        ratings = tf.reduce_mean(squashed_rating(tf.reshape(raw, tf.shape(bias)) + bias, *self.scale), axis=-1)
        if self.autorec is not None:
            ratings = self.autorec.blend(ratings, user_index, movie_rows)
        return ratings

    # Traced without AutoGraph, as the serving signatures that call it (serving.module).
    @tf.function(autograph=False, input_signature=RATE_SIGNATURE)
    def rate(self, user_id, user_rows, positions):
        """Predicted ratings of [n] (user, catalog position) pairs; position -1: not in the catalog.

        Returns:
          [n] ratings inside the rating scale.
        """
        del user_id  # the rows say everything the precomputed tables need
        return self._ratings(user_rows, positions, per_user=False)

    @tf.function(autograph=False, input_signature=RATE_LISTS_SIGNATURE)
    def rate_lists(self, user_id, user_rows, positions):
        """Predicted ratings of [users, n] catalog positions for [users] users."""
        del user_id
        return self._ratings(user_rows, positions, per_user=True)


class ModelRatingScorer(tf.Module):
    """Any rating architecture, fed each pair's features from tables baked in at export.

    Args:
      model: the trained rating model.
      user_columns: each user feature the model reads -> values of the known users (row order).
      movie_columns: the catalog's feature columns, position order.
    """

    def __init__(self, model: RatingTaskModel, user_columns: Dict[str, np.ndarray],
                 movie_columns: Dict[str, np.ndarray]):
        super().__init__(name="model_ratings")
        self.model = model
        catalog = movie_columns
        self.movie_columns = {name: tf.Variable(catalog[name].astype(object), trainable=False, name=name)
                              for name in ("movie_id",) + tuple(model.feature_names) if name in catalog}
        self.user_columns = {name: tf.Variable(_with_unknown_first(user_columns[name]), trainable=False, name=name)
                             for name in model.feature_names if name not in catalog}
        self.rating_range = _rating_range(model)
        self.highest_ratings = None  # rating every pair of a large catalog at export would cost too much

    @tf.function(autograph=False, input_signature=RATE_SIGNATURE)
    def rate(self, user_id, user_rows, positions):
        """Predicted ratings of [n] (user, catalog position) pairs; position -1: not in the catalog."""
        inputs = {"user_id": user_id}
        for name, column in self.movie_columns.items():
            inputs[name] = tf.where(positions >= 0, tf.gather(column, tf.maximum(positions, 0)), "")
        for name, column in self.user_columns.items():
            inputs[name] = tf.gather(column, user_rows)
        return self.model(inputs)[:, 0]

    @tf.function(autograph=False, input_signature=RATE_LISTS_SIGNATURE)
    def rate_lists(self, user_id, user_rows, positions):
        """Predicted ratings of [users, n] catalog positions for [users] users."""
        shape = tf.shape(positions)
        users = tf.reshape(tf.broadcast_to(user_id[:, tf.newaxis], shape), [-1])
        rows = tf.reshape(tf.broadcast_to(user_rows[:, tf.newaxis], shape), [-1])
        return tf.reshape(self.rate(users, rows, tf.reshape(positions, [-1])), shape)


def build_rating_scorer(model: RatingTaskModel, user_ids: Sequence[str], user_columns: Dict[str, np.ndarray],
                        movie_columns: Dict[str, np.ndarray]) -> RatingScorer:
    """The fastest exact scorer for ``model`` (see the module docstring).

    Args:
      model: the trained rating model.
      user_ids: the known users, in row order.
      user_columns: each user feature -> values of those users.
      movie_columns: the catalog's feature columns (data.features.movie_feature_columns).
    """
    if _split_members(model) is not None:
        return PrecomputedRatingScorer(model, user_ids, user_columns, movie_columns)
    return ModelRatingScorer(model, user_columns, movie_columns)
