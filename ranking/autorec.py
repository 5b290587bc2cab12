"""I-AutoRec, the item-based autoencoder of ratings (Sedhain et al. 2015), averaged with the
design's rating model.

Each movie is the column of ratings its users gave it. An encoder squeezes the column into a
code (sigmoid units), a decoder rebuilds every user's rating of the movie from the code, and
the loss counts only the ratings that exist. A user's predicted rating of a movie is then
``code(movie) . decoder_row(user) + decoder_bias(user)``: a factorisation whose movie side is
computed from who rated the movie how, which makes its errors unlike those of a model of
learned id embeddings. The mean of the two (its weight chosen on the validation part) is
what the ranking stage predicts (docs/quality.md).

The model needs each user's decoder row, so it rates only users it was trained on; the
blend falls back to the design's model alone for other users, and for movies nobody rated.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twostage.data.features import FeatureVocabularies
from twostage.modeling.layers import IdEmbedding
from twostage.modeling.tf_setup import require_legacy_keras
from twostage.modeling.train_function import SingleTraceSteps
from twostage.ranking.model import RatingTaskModel

keras = require_legacy_keras()

# Movies encoded at once when the codes of the whole catalog are computed.
_CODE_BATCH = 1024


def rating_matrix(movie_rows: np.ndarray, user_rows: np.ndarray, ratings: np.ndarray, num_movie_rows: int,
                  num_user_rows: int) -> np.ndarray:
    """[movie rows, user rows] float32 ratings, 0 where a user did not rate a movie.

    Args:
      movie_rows, user_rows: [n] vocabulary rows of each rating (0: unknown; such ratings are
        left out).
      ratings: [n] the ratings (all above 0, as every rating scale here is).
      num_movie_rows, num_user_rows: the matrix's shape (vocabulary sizes + 1).
    """
    if len(ratings) and float(np.min(ratings)) <= 0:
        raise ValueError("the item autoencoder marks missing ratings with 0: every rating must be above it")
    matrix = np.zeros((num_movie_rows, num_user_rows), np.float32)
    known = (movie_rows > 0) & (user_rows > 0)
    matrix[movie_rows[known], user_rows[known]] = ratings[known]
    return matrix


def decoded_rating(codes: tf.Tensor, user_vectors: tf.Tensor, user_bias: tf.Tensor, low: float, high: float
                   ) -> tf.Tensor:
    """I-AutoRec's rating: a movie's code . the user's decoder row + the user's bias, kept in
    [low, high] (codes and rows [..., hidden], bias [...]; returns [...])."""
    return tf.clip_by_value(tf.reduce_sum(codes * user_vectors, axis=-1) + user_bias, low, high)


class ItemAutoRec(SingleTraceSteps, tfrs.models.Model):
    """I-AutoRec: movie rating columns -> sigmoid codes -> every user's rating.

    Args:
      vocabularies: the user and movie vocabularies (rows as data.prepared.example_rows gives them).
      ratings: [movie rows, user rows] training ratings (``rating_matrix``).
      hidden: width of the code.
      l2: weight of the L2 penalty on the encoder and decoder kernels (per epoch: each step
        pays the share of its batch in the catalog).
      rating_scale: (lowest, highest) rating; predictions are clipped to it.

    Call args (``call``, after ``update_codes``):
      features: "user_id" and "movie_id", strings or vocabulary rows.

    Returns:
      [batch, 1] predicted ratings.

    Training (``compute_loss``) takes batches of movies: "movie_id" [batch] catalog rows.
    """

    output_kind = "clip"
    feature_names: tuple = ()

    def __init__(self, vocabularies: FeatureVocabularies, ratings: np.ndarray, hidden: int, l2: float,
                 rating_scale, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = float(rating_scale[0]), float(rating_scale[1])
        self.l2 = l2
        self.users = IdEmbedding(vocabularies.user_ids, 1, embed=False, name="autorec_users")
        self.movies = IdEmbedding(vocabularies.movie_ids, 1, embed=False, name="autorec_movies")
        num_movie_rows, num_user_rows = ratings.shape
        if num_user_rows != len(vocabularies.user_ids) + 1 or num_movie_rows != len(vocabularies.movie_ids) + 1:
            raise ValueError(f"the rating matrix is {ratings.shape}; the vocabularies need "
                             f"({len(vocabularies.movie_ids) + 1}, {len(vocabularies.user_ids) + 1})")
        self.ratings = tf.Variable(ratings, trainable=False, name="ratings")
        self.encoder = keras.layers.Dense(hidden, activation="sigmoid", name="encoder",
                                          kernel_initializer=keras.initializers.RandomNormal(stddev=0.03))
        self.decoder = keras.layers.Dense(num_user_rows, name="decoder",
                                          kernel_initializer=keras.initializers.RandomNormal(stddev=0.03))
        self.encoder.build([None, num_user_rows])
        self.decoder.build([None, hidden])
        self.batch_share = tf.Variable(1.0, trainable=False, name="batch_share")
        self.codes = tf.Variable(tf.zeros([num_movie_rows, hidden]), trainable=False, name="codes")
        self.rated_movies = tf.Variable(tf.zeros([num_movie_rows]), trainable=False, name="rated_movies")
        self.rated_users = tf.Variable(tf.zeros([num_user_rows]), trainable=False, name="rated_users")
        self._find_rated()

    def _find_rated(self) -> None:
        rated = tf.cast(self.ratings > 0, tf.float32)
        self.rated_movies.assign(tf.cast(tf.reduce_sum(rated, axis=1) > 0, tf.float32))
        self.rated_users.assign(tf.cast(tf.reduce_sum(rated, axis=0) > 0, tf.float32))

    def set_ratings(self, ratings: np.ndarray) -> None:
        """Encodes ``ratings`` (same shape) from now on, e.g. the whole training part's once
        the fit part chose the epochs: a movie's code then reads every rating it has."""
        self.ratings.assign(ratings)
        self._find_rated()
        self.update_codes()

    @tf.function(autograph=False)
    def update_codes(self) -> None:
        """Computes every movie's code (``call`` reads them); validation does after each epoch."""
        rows = self.ratings.shape[0]
        self.codes.assign(tf.concat([self.encoder(self.ratings[start:start + _CODE_BATCH])
                                     for start in range(0, rows, _CODE_BATCH)], axis=0))

    def known(self, features) -> tf.Tensor:
        """[batch] 1 where the model can rate the pair (user and movie with training ratings), else 0."""
        users, movies = self.users.index(features["user_id"]), self.movies.index(features["movie_id"])
        return tf.gather(self.rated_users, users) * tf.gather(self.rated_movies, movies)

    def call(self, features, training: bool = False) -> tf.Tensor:
        users, movies = self.users.index(features["user_id"]), self.movies.index(features["movie_id"])
        user_vectors = tf.transpose(tf.gather(self.decoder.kernel, users, axis=1))  # [batch, hidden]
        return decoded_rating(tf.gather(self.codes, movies), user_vectors, tf.gather(self.decoder.bias, users),
                              self.low, self.high)[:, tf.newaxis]

    @tf.function(autograph=False, reduce_retracing=True)
    def rate(self, user_rows: tf.Tensor, movie_rows: tf.Tensor) -> tf.Tensor:
        """[n] ratings of (user row, movie row) pairs, traced once (validation calls it every epoch)."""
        return self({"user_id": user_rows, "movie_id": movie_rows})[:, 0]

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        columns = tf.gather(self.ratings, self.movies.index(features["movie_id"]))  # [batch, user rows]
        rebuilt = self.decoder(self.encoder(columns))
        rated = tf.cast(columns > 0, tf.float32)
        loss = tf.reduce_sum(rated * tf.square(columns - rebuilt))
        penalty = tf.reduce_sum(tf.square(self.encoder.kernel)) + tf.reduce_sum(tf.square(self.decoder.kernel))
        # Replicas' gradients are summed: each pays its share of the penalty.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss + self.batch_share * self.l2 / 2 / replicas * penalty


class AutoRecBlend(keras.Model):
    """``(1 - w) x`` the design's rating + ``w x`` I-AutoRec's, where I-AutoRec can rate the
    pair (else the design's alone).

    Args:
      base: the trained rating model (any architecture, or a mean of several).
      autorec: the trained ItemAutoRec, its codes up to date.
      weight: w, in [0, 1].

    Call args:
      features: what ``base`` reads (user_id and movie_id among them).

    Returns:
      [batch, 1] predicted ratings.
    """

    def __init__(self, base: RatingTaskModel, autorec: ItemAutoRec, weight: float, **kwargs):
        super().__init__(name=kwargs.pop("name", "autorec_blend"), **kwargs)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the AutoRec weight must be in [0, 1], not {weight}")
        self.base, self.autorec, self.weight = base, autorec, float(weight)

    @property
    def feature_names(self) -> tuple:
        return tuple(self.base.feature_names)

    def index_features(self, features):
        """The features in ``base``'s input form (I-AutoRec reads ids in either form)."""
        return self.base.index_features(features)

    def set_history(self, history) -> None:
        self.base.set_history(history)

    def call(self, features, training: bool = False) -> tf.Tensor:
        weight = self.weight * self.autorec.known(features)[:, tf.newaxis]
        return (1.0 - weight) * self.base(features, training=training) + weight * self.autorec(features)
