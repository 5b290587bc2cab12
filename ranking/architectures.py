"""The seed systems' rating models, selectable as the ranking stage's architecture.

All share the TFRS Ranking task, the inputs (ids and the feature columns of data.features)
and the output kept inside the rating scale (RatingTaskModel), so the same training,
evaluation and export code serves each; ``twostage benchmark ranking`` compares them.

* ``default``: the design's model (ranking.model.RatingModel).
* ``svd``: user . movie dot product.
* ``rsvd``: biased matrix factorisation: global mean + user bias + movie bias + dot product, L2.
* ``nn``: user and movie embeddings and biases concatenated -> one hidden relu layer.
* ``genre-mlp``: user and movie ids and the movie's genre multi-hot -> 512 -> 256 -> 128 -> 1.
* ``text-cnn``: user id/gender/age/occupation embeddings and movie id/genres/title words
  convolved with windows of 2 to 5, each side -> 200-d tanh features, rating = their dot.
* ``dcn``: a TFRS ``Cross`` layer before the default's dense stack.
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from twostage.data.features import FeatureVocabularies
from twostage.data.history import RaggedTable
from twostage.modeling.encoders import feature_encoders
from twostage.modeling.layers import IdEmbedding
from twostage.modeling.tf_setup import require_legacy_keras
from twostage.data.errors import ConfigError
from twostage.ranking.config import ARCHITECTURES
from twostage.ranking.model import RatingModel, RatingTaskModel

keras = require_legacy_keras()



class DotProductModel(RatingTaskModel):
    """``svd`` (dot product) and ``rsvd`` (with biases and L2): matrix factorisation.

    Args:
      vocabularies: id vocabularies.
      rating_scale, global_mean, output, l2: see RatingTaskModel.
      embedding_dim: factors.
      biases: add per-user and per-movie biases (rsvd).
    """

    def __init__(self, vocabularies: FeatureVocabularies, rating_scale, global_mean, embedding_dim: int = 32,
                 biases: bool = False, output: str = "sigmoid", l2: float = 0.0, **kwargs):
        super().__init__(rating_scale, global_mean, output, l2, **kwargs)
        self.user_embedding = IdEmbedding(vocabularies.user_ids, embedding_dim, name="user_factors")
        self.movie_embedding = IdEmbedding(vocabularies.movie_ids, embedding_dim, name="movie_factors")
        self.user_bias = IdEmbedding(vocabularies.user_ids, 1, name="user_bias") if biases else None
        self.movie_bias = IdEmbedding(vocabularies.movie_ids, 1, name="movie_bias") if biases else None

    def _raw(self, features, training):
        user, movie = self.user_embedding(features["user_id"]), self.movie_embedding(features["movie_id"])
        raw = tf.reduce_sum(user * movie, axis=1, keepdims=True)
        penalised = [user, movie]
        if self.user_bias is not None:
            user_bias, movie_bias = self.user_bias(features["user_id"]), self.movie_bias(features["movie_id"])
            raw += user_bias + movie_bias
            penalised += [user_bias, movie_bias]
        return raw, tf.concat(penalised, axis=1)


class ConcatMLPModel(RatingTaskModel):
    """``nn`` and ``genre-mlp``: ids (and biases or genres) concatenated -> relu layers -> rating.

    Args:
      vocabularies: vocabularies.
      rating_scale, global_mean, output, l2: see RatingTaskModel.
      embedding_dim: id embedding width.
      hidden_units: the relu layers.
      genres: add the movie's genre multi-hot (genre-mlp); else per-user and per-movie bias
        embeddings (nn).
    """

    def __init__(self, vocabularies: FeatureVocabularies, rating_scale, global_mean, embedding_dim: int = 32,
                 hidden_units: Sequence[int] = (128,), genres: bool = False, output: str = "sigmoid",
                 l2: float = 0.0, **kwargs):
        super().__init__(rating_scale, global_mean, output, l2, **kwargs)
        self.user_embedding = IdEmbedding(vocabularies.user_ids, embedding_dim, name="user_embedding")
        self.movie_embedding = IdEmbedding(vocabularies.movie_ids, embedding_dim, name="movie_embedding")
        self.genres = None
        self.biases = None
        if genres and vocabularies.genres:
            self.genres = keras.layers.StringLookup(vocabulary=list(vocabularies.genres), mask_token=None,
                                                    output_mode="multi_hot", name="genre_multi_hot")
        elif not genres:
            self.biases = (IdEmbedding(vocabularies.user_ids, 1, name="user_bias"),
                           IdEmbedding(vocabularies.movie_ids, 1, name="movie_bias"))
        self.feature_names = ("movie_genres",) if self.genres is not None else ()
        self.head = keras.Sequential([keras.layers.Dense(u, activation="relu") for u in hidden_units]
                                     + [keras.layers.Dense(1)], name="head")

    def _raw(self, features, training):
        parts = [self.user_embedding(features["user_id"]), self.movie_embedding(features["movie_id"])]
        if self.biases is not None:
            parts += [self.biases[0](features["user_id"]), self.biases[1](features["movie_id"])]
        joined = tf.concat(parts, axis=1)
        inputs = joined
        if self.genres is not None:
            tokens = tf.strings.split(features["movie_genres"], sep="|")
            tokens = tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, ""))
            inputs = tf.concat([joined, self.genres(tokens)], axis=1)
        return self.head(inputs), joined


class TextCNNModel(RatingTaskModel):
    """``text-cnn``: two 200-d tanh towers, the movie's title read by convolutions.

    Args:
      vocabularies: vocabularies (user features used where the data has them).
      rating_scale, global_mean, output, l2: see RatingTaskModel.
      embedding_dim: width of every embedding.
      filters: convolution filters per window size.
      windows: title convolution window sizes.
      title_length: title words read (longer titles are cut).
    """

    def __init__(self, vocabularies: FeatureVocabularies, rating_scale, global_mean, embedding_dim: int = 32,
                 filters: int = 8, windows: Sequence[int] = (2, 3, 4, 5), title_length: int = 12,
                 output: str = "sigmoid", l2: float = 0.0, **kwargs):
        super().__init__(rating_scale, global_mean, output, l2, **kwargs)
        self.user_embedding = IdEmbedding(vocabularies.user_ids, embedding_dim, name="user_embedding")
        self.user_features = feature_encoders(vocabularies, embedding_dim // 2, sides=("user",),
                                              only=("user_gender", "user_age", "user_occupation"))
        self.movie_embedding = IdEmbedding(vocabularies.movie_ids, embedding_dim, name="movie_embedding")
        self.genres = feature_encoders(vocabularies, embedding_dim, sides=("movie",), only=("movie_genres",)
                                       ).get("movie_genres")
        self.title_tokens = keras.layers.TextVectorization(standardize=None, split="whitespace",
                                                           vocabulary=list(vocabularies.title_tokens) or ["<none>"],
                                                           output_sequence_length=title_length)
        self.title_embedding = keras.layers.Embedding(len(vocabularies.title_tokens) + 2, embedding_dim)
        self.convolutions = [keras.layers.Conv1D(filters, window, padding="same", activation="relu")
                             for window in windows]
        self.user_tower = keras.layers.Dense(200, activation="tanh", name="user_features_200")
        self.movie_tower = keras.layers.Dense(200, activation="tanh", name="movie_features_200")
        names = sorted(self.user_features) + (["movie_genres"] if self.genres is not None else []) + ["movie_title"]
        self.feature_names = tuple(sorted(names))

    def _raw(self, features, training):
        user_parts = [self.user_embedding(features["user_id"])]
        user_parts += [self.user_features[name](features[name]) for name in sorted(self.user_features)]
        title = self.title_embedding(self.title_tokens(features["movie_title"]))
        movie_parts = [self.movie_embedding(features["movie_id"])]
        if self.genres is not None:
            movie_parts.append(self.genres(features["movie_genres"]))
        movie_parts += [tf.reduce_max(conv(title), axis=1) for conv in self.convolutions]
        user = self.user_tower(tf.concat(user_parts, axis=1))
        movie = self.movie_tower(tf.concat(movie_parts, axis=1))
        # tanh features in [-1, 1]: the dot product is scaled so it can span the rating scale.
        raw = tf.reduce_sum(user * movie, axis=1, keepdims=True) / 20.0
        return raw, tf.concat(user_parts + movie_parts[:1], axis=1)


class DeepCrossModel(RatingModel):
    """``dcn``: the default model with a TFRS Cross layer before its dense stack."""

    splits_first_layer = False  # the Cross layer mixes user and movie before the dense stack

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cross = tfrs.layers.dcn.Cross(name="cross")

    def _raw(self, features, training):
        joined = self.embeddings(features, training)
        crossed = self.cross(joined)
        raw = self.rating_head(self.dropout(crossed, training=training) if self.dropout else crossed)
        if self.movie_bias is not None:
            raw += self.movie_bias(features["movie_id"])
        if self.user_bias is not None:
            raw += self.user_bias(features["user_id"])
        return raw, joined


def build_rating_model(architecture: str, vocabularies: FeatureVocabularies, rating_scale: Sequence[float],
                       global_mean: float, history: Optional[RaggedTable], config) -> RatingTaskModel:
    """The rating model ``architecture`` names, configured by a RankingConfig.

    Args:
      architecture: one of ARCHITECTURES.
      vocabularies: feature vocabularies.
      rating_scale: (lowest, highest).
      global_mean: mean training rating.
      history: users' rated movies (default and dcn use it when config.use_history).
      config: the RankingConfig.

    Returns:
      An unbuilt Keras model.
    """
    common = dict(rating_scale=rating_scale, global_mean=global_mean, output=config.output, name="rating_model")
    if architecture in ("default", "dcn"):
        cls = RatingModel if architecture == "default" else DeepCrossModel
        return cls(vocabularies, embedding_dim=config.embedding_dim, hidden_units=config.hidden_units,
                   feature_dim=config.feature_dim, use_features=config.use_features,
                   history=history if config.use_history else None, history_ratings=config.history_ratings,
                   history_sample=config.history_sample or None, biases=config.biases, l2=config.l2,
                   dropout=config.dropout, use_user_id=config.use_user_id, **common)
    if not config.use_user_id:
        raise ConfigError(f"the {architecture} ranking architecture needs user ids; only default and dcn do "
                          f"without them")
    if architecture in ("svd", "rsvd"):
        # rsvd is biased MF *with* L2; without a configured penalty it takes a usual one.
        l2 = config.l2 if architecture == "svd" else (config.l2 or 0.02)
        return DotProductModel(vocabularies, embedding_dim=config.embedding_dim, biases=architecture == "rsvd",
                               l2=l2, **common)
    if architecture in ("nn", "genre-mlp"):
        hidden = (128,) if architecture == "nn" else (512, 256, 128)
        return ConcatMLPModel(vocabularies, embedding_dim=config.embedding_dim, hidden_units=hidden,
                              genres=architecture == "genre-mlp", l2=config.l2, **common)
    if architecture == "text-cnn":
        return TextCNNModel(vocabularies, embedding_dim=config.embedding_dim, l2=config.l2, **common)
    raise ConfigError(f"unknown ranking architecture {architecture!r}; use one of {', '.join(ARCHITECTURES)}")
