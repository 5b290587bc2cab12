"""The ranking model: predicts the rating a user would give a movie."""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from twostage.data.features import FeatureVocabularies
from twostage.data.history import RaggedTable
from twostage.modeling.encoders import feature_encoders
from twostage.ranking.config import OUTPUTS
from twostage.modeling.distribute import replica_count
from twostage.modeling.layers import IdEmbedding, SeededDropout
from twostage.modeling.pooling import RatedMoviesPooling
from twostage.modeling.tf_setup import require_legacy_keras
from twostage.modeling.train_function import SingleTraceSteps

keras = require_legacy_keras()

# Outputs kept inside [lowest, highest] rating.
BOUNDED_OUTPUTS = ("sigmoid", "clip")


def rating_offset(low: float, high: float, global_mean: float, output: str) -> float:
    """What ``bounded_rating`` adds to a raw output before squashing it into the scale."""
    if output == "sigmoid":
        # Centred so that a zero output predicts the global mean.
        share = min(max((global_mean - low) / (high - low), 1e-3), 1 - 1e-3)
        return math.log(share / (1 - share))
    return global_mean


def squashed_rating(shifted: tf.Tensor, low: float, high: float, output: str) -> tf.Tensor:
    """A raw output plus ``rating_offset``, kept in [low, high] (see ``bounded_rating``)."""
    if output == "sigmoid":
        return low + (high - low) * tf.sigmoid(shifted)
    if output == "clip":
        return tf.clip_by_value(shifted, low, high)
    return shifted


def bounded_rating(raw: tf.Tensor, low: float, high: float, global_mean: float, output: str) -> tf.Tensor:
    """A rating from a raw output (zero predicts the global mean), kept in [low, high].

    Args:
      raw: [batch, 1] raw outputs.
      low, high: the rating scale.
      global_mean: mean training rating.
      output: "sigmoid" (scaled over the scale), "clip" or "linear" (unbounded).
    """
    return squashed_rating(raw + rating_offset(low, high, global_mean, output), low, high, output)


class RatingTaskModel(SingleTraceSteps, tfrs.models.Model):
    """What every rating architecture shares: the TFRS Ranking task (MSE loss, RMSE metric),
    an output kept inside the rating scale, and an optional L2 penalty.

    Subclasses implement ``_raw(features, training) -> (raw [batch, 1], penalised [batch, n])``:
    a zero raw output predicts the global mean.

    Args:
      rating_scale: (lowest, highest) rating.
      global_mean: mean training rating.
      output: "sigmoid" (scaled over the scale), "clip" or "linear".
      l2: penalty on the mean squared norm of the penalised tensor.
    """

    def __init__(self, rating_scale: Sequence[float], global_mean: float, output: str = "sigmoid", l2: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; use one of {OUTPUTS}")
        self.low, self.high = float(rating_scale[0]), float(rating_scale[1])
        self.global_mean = float(global_mean)
        self.output_kind = output
        self.l2 = l2
        # Summed here, averaged in compute_loss: a strategy's replicas may not average for us.
        self.task = tfrs.tasks.Ranking(loss=keras.losses.MeanSquaredError(reduction=keras.losses.Reduction.SUM),
                                       metrics=[keras.metrics.RootMeanSquaredError()])

    # The feature columns the model reads besides user_id and movie_id (none here).
    feature_names: tuple = ()

    def _raw(self, features: Dict[str, tf.Tensor], training: bool):
        raise NotImplementedError

    def index_features(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Those of ``features`` the model reads (ids, ``feature_names``), as its training
        steps read them: a model that looks strings up once before training (RatingModel)
        returns them looked up, this one as they are."""
        return {name: values for name, values in features.items()
                if name in ("user_id", "movie_id") or name in self.feature_names}

    def set_history(self, history: RaggedTable):
        """Pools ``history`` from now on; a model that reads no history ignores it."""

    def _rating(self, raw: tf.Tensor) -> tf.Tensor:
        return bounded_rating(raw, self.low, self.high, self.global_mean, self.output_kind)

    # No Python control flow here depends on tensors: skipping AutoGraph's conversion of
    # every layer saves about two seconds of tracing per model.
    @tf.autograph.experimental.do_not_convert
    def call(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self._rating(self._raw(features, training)[0])

    @tf.autograph.experimental.do_not_convert
    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        raw, penalised = self._raw(features, training)
        examples = tf.cast(tf.shape(raw)[0], tf.float32)
        # The RMSE metric is for evaluation; validation computes its own between epochs.
        loss = self.task(labels=features["rating"][:, tf.newaxis], predictions=self._rating(raw),
                         compute_metrics=not training) / examples
        if self.l2:
            loss += self.l2 * tf.reduce_mean(tf.reduce_sum(tf.square(penalised), axis=1))
        # The mean over the global batch, once the optimizer sums the replicas' gradients.
        return loss / replica_count()


class RatingModel(RatingTaskModel):
    """The design's ranking model: embeddings concatenated -> Dense 256 -> Dense 64 -> Dense 1.

    Trained with ``tfrs.tasks.Ranking`` (mean squared error loss, RMSE metric). Around the
    design's dense stack:

    * the embeddings are those of the user id and the user features the data has, the
      movies the user rated (pooled, the implicit-feedback idea of SVD++), the movie id, its
      genres, title words and release year;
    * the output adds the global mean and per-user and per-movie biases, and is kept inside
      the rating scale (``output``: a scaled sigmoid over [lowest, highest], or clipping).

    Args:
      vocabularies: feature vocabularies (data.features.build_vocabularies).
      rating_scale: (lowest, highest) rating.
      global_mean: mean training rating (the starting point of every prediction).
      embedding_dim: width of the id embeddings.
      hidden_units: the relu layers before the output unit.
      feature_dim: width of each feature's embedding.
      use_features: add the user and movie features.
      history: the users' rated movies (data.history.training_history), or None.
      history_ratings: also pool the history weighted by its ratings (the history must
        carry them).
      history_sample: in training, pool at most this many rated movies per user and step.
      biases: add per-user and per-movie biases.
      output: "sigmoid", "clip" or "linear".
      l2: penalty on the mean squared norm of the batch's input embeddings.
      dropout: dropout rate on the concatenated embeddings, in training.
      use_user_id: embed the user id and give each user a bias (False: the user side is the
        user's features and history alone, and the model keeps no table of users).

    Call args:
      features: "user_id" and "movie_id" (string tensors [batch]) and, when used, the user
        and movie feature columns of data.features.

    Returns:
      [batch, 1] predicted ratings.
    """

    def __init__(self, vocabularies: FeatureVocabularies, rating_scale: Sequence[float], global_mean: float,
                 embedding_dim: int = 32, hidden_units: Sequence[int] = (256, 64), feature_dim: int = 16,
                 use_features: bool = True, history: Optional[RaggedTable] = None, history_ratings: bool = False,
                 history_sample: Optional[int] = None, biases: bool = True, output: str = "sigmoid", l2: float = 0.0,
                 dropout: float = 0.0, use_user_id: bool = True, **kwargs):
        super().__init__(rating_scale, global_mean, output, l2, **kwargs)
        if not use_user_id and history is None and not use_features:
            raise ValueError("a rating model without user ids needs the user's features or history")
        self.use_user_id = use_user_id
        self.user_embedding = IdEmbedding(vocabularies.user_ids, embedding_dim, embed=use_user_id,
                                          name="user_embedding")
        self.movie_embedding = IdEmbedding(vocabularies.movie_ids, embedding_dim, name="movie_embedding")
        self.feature_layers = feature_encoders(vocabularies, feature_dim) if use_features else {}
        self.feature_names = tuple(sorted(self.feature_layers))
        self.user_feature_names = tuple(n for n in self.feature_names if n in vocabularies.user_features)
        self.movie_feature_names = tuple(n for n in self.feature_names if n not in vocabularies.user_features)
        self.rated_movies = RatedMoviesPooling(history, vocabularies.movie_ids, embedding_dim, history_ratings,
                                               history_sample, name="rated_movies") if history is not None else None
        self.user_bias = IdEmbedding(vocabularies.user_ids, 1, name="user_bias") if biases and use_user_id else None
        self.movie_bias = IdEmbedding(vocabularies.movie_ids, 1, name="movie_bias") if biases else None
        self.dropout = SeededDropout(dropout) if dropout else None
        self.rating_head = keras.Sequential(
            [keras.layers.Dense(units, activation="relu") for units in hidden_units] + [keras.layers.Dense(1)],
            name="rating_head")

    def set_history(self, history: RaggedTable):
        """Pools ``history`` from now on (e.g. the whole training part after training on the fit part)."""
        if self.rated_movies is not None:
            self.rated_movies.set_history(history)

    # The dense stack's input is [user side, movie side]; serving precomputes each side's share
    # of the first layer per user and per movie (ranking.scorers), which a subclass that
    # mixes the sides before the first layer (dcn) must switch off.
    splits_first_layer = True

    def user_side(self, features: Dict[str, tf.Tensor], target_movie_ids: Optional[tf.Tensor] = None,
                  given_history: Optional[tuple] = None) -> tf.Tensor:
        """The user's embeddings (id, features, pooled history), [batch, width].

        ``target_movie_ids`` (training only) are left out of the pooled history;
        ``given_history`` (ragged catalog positions, ragged ratings) is pooled instead of the
        baked-in one (a request that carries it).
        """
        parts = [self.user_embedding(features["user_id"])] if self.use_user_id else []
        parts += [self.feature_layers[name](features[name]) for name in self.user_feature_names]
        if self.rated_movies is not None and given_history is not None:
            parts.append(self.rated_movies.pool_given(*given_history))
        elif self.rated_movies is not None:
            rows = self.user_embedding.index(features["user_id"])
            parts.append(self.rated_movies(rows, target_movie_ids))
        return tf.concat(parts, axis=1)

    def movie_side(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        """The movie's embeddings (id, genres, title, year), [batch, width]."""
        parts = [self.movie_embedding(features["movie_id"])]
        parts += [self.feature_layers[name](features[name]) for name in self.movie_feature_names]
        return tf.concat(parts, axis=1)

    def index_features(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """The features with every string looked up (ids -> rows, text -> ragged token ids).

        The model takes either form; training indexes its examples once instead of looking
        the same strings up again in every step of every epoch.
        """
        indexed = {}
        for name, layer in (("user_id", self.user_embedding), ("movie_id", self.movie_embedding)):
            if name in features:
                indexed[name] = layer.index(features[name])
        for name in self.feature_names:
            if name in features:
                indexed[name] = self.feature_layers[name].index(features[name])
        return indexed

    def embeddings(self, features: Dict[str, tf.Tensor], training: bool) -> tf.Tensor:
        """The concatenated input embeddings, [batch, width]: user side, then movie side."""
        user = self.user_side(features, features["movie_id"] if training else None)
        return tf.concat([user, self.movie_side(features)], axis=1)

    def _raw(self, features: Dict[str, tf.Tensor], training: bool):
        joined = self.embeddings(features, training)
        raw = self.rating_head(self.dropout(joined, training=training) if self.dropout else joined)
        if self.movie_bias is not None:
            raw += self.movie_bias(features["movie_id"])
        if self.user_bias is not None:
            raw += self.user_bias(features["user_id"])
        return raw, joined


class AveragedRatingModel(keras.Model):
    """The mean rating of several trained rating models (an ensemble of, say, the best-epoch
    model of the fit part and the model refitted on the whole training part).

    Each member keeps its output inside the rating scale, so their mean does too.

    Args:
      members: trained rating models of one architecture, taking the same features.

    Call args:
      features: what every member reads.

    Returns:
      [batch, 1] mean predicted ratings.
    """

    def __init__(self, members: Sequence[RatingTaskModel], **kwargs):
        super().__init__(name=kwargs.pop("name", "averaged_rating_model"), **kwargs)
        if not members:
            raise ValueError("an averaged rating model needs at least one member")
        self.members = list(members)

    @property
    def feature_names(self) -> tuple:
        """The features the members read (all of them, when they differ)."""
        return tuple(sorted({name for member in self.members for name in member.feature_names}))

    def index_features(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """The features in the members' input form (members share one architecture)."""
        return self.members[0].index_features(features)

    def call(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return tf.add_n([member(features, training=training) for member in self.members]) / len(self.members)

    def set_history(self, history: RaggedTable):
        """Makes every member that reads a history pool ``history``."""
        for member in self.members:
            member.set_history(history)
