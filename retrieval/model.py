"""The two-tower retrieval model: a query tower for users, a candidate tower for movies."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from twostage.data.features import FeatureVocabularies
from twostage.data.history import RaggedTable
from twostage.modeling.distribute import cross_replica_concat
from twostage.modeling.encoders import feature_encoders
from twostage.modeling.layers import IdEmbedding, ResidualMLP, training_noise
from twostage.modeling.pooling import HistorySplit, RatedMoviesPooling
from twostage.modeling.tf_setup import require_legacy_keras
from twostage.modeling.train_function import SingleTraceSteps
from twostage.retrieval.availability import RatingTimes
from twostage.retrieval.ease_towers import EaseFactors

keras = require_legacy_keras()


class _FeatureTower(keras.Model):
    """Id embedding plus a linear projection of the other features' embeddings.

    The id embedding carries collaborative signal; the features carry what an id cannot
    (and all there is for an id never seen). During training a share of ids is replaced by
    the unknown id, so that the unknown-id row plus the features learns to stand in for
    users or movies seen for the first time. A tower without its id embedding (``use_id``
    False) keeps no table that grows with the ids.
    """

    def __init__(self, id_name: str, ids: Sequence[str], features: Dict[str, keras.layers.Layer],
                 embedding_dim: int, id_dropout: float, use_id: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.id_name = id_name
        self.id_embedding = IdEmbedding(ids, embedding_dim, embed=use_id, name=id_name)
        self.feature_layers = features
        self.projection = keras.layers.Dense(embedding_dim, use_bias=False, name="feature_projection") \
            if features else None
        self.id_dropout = id_dropout
        self.noise = training_noise()
        self.ease: Optional[EaseFactors] = None
        self.partners, self.partner_scales = [], ()  # other trained pairs' towers of this kind, and their scales

    def attach_ease(self, factors: EaseFactors):
        """Concatenates this tower's side of EASE's factors to its output from now on (after training)."""
        self.ease = factors

    def attach_partner(self, partner: "_FeatureTower", scale: float = 1.0):
        """Concatenates ``partner``'s output (a tower of this kind from another trained pair) times ``scale``
        to this one's, after earlier partners, before EASE's part: two such towers score the sum of the pairs."""
        if any(partner is attached for attached in self.partners) or partner is self:
            raise ValueError(f"{partner.name} is attached to {self.name} already")
        self.partners.append(partner)
        self.partner_scales = self.partner_scales + (float(scale),)

    def call(self, features: Dict[str, tf.Tensor], training: bool = False,
             history_split: Optional[HistorySplit] = None, given_history: Optional[tf.RaggedTensor] = None
             ) -> tf.Tensor:
        ids = self.id_embedding.index(features[self.id_name])
        if training and self.id_dropout > 0:
            drop = self.noise.uniform(tf.shape(ids)) < self.id_dropout
            ids = tf.where(drop, tf.zeros_like(ids), ids)  # row 0: the unknown id
        vector = self.id_embedding(ids) + self.extra(features, training, history_split, given_history)
        if self.projection is not None:
            parts = [layer(features[name]) for name, layer in sorted(self.feature_layers.items())]
            vector += self.projection(tf.concat(parts, axis=1))
        outputs = [vector]
        for partner, scale in zip(self.partners, self.partner_scales):
            outputs.append(scale * partner(features, given_history=given_history))
        if self.ease is not None:
            outputs.append(self.ease_part(features, given_history))
        return outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=1)

    def ease_part(self, features: Dict[str, tf.Tensor], given_history: Optional[tf.RaggedTensor]) -> tf.Tensor:
        """[batch, EASE's rank]: this tower's side of the attached EASE factors."""
        raise NotImplementedError

    def extra(self, features: Dict[str, tf.Tensor], training: bool, history_split: Optional[HistorySplit] = None,
              given_history: Optional[tf.RaggedTensor] = None) -> tf.Tensor:
        """What a subclass adds to the id embedding (nothing here)."""
        return tf.constant(0.0)

    def index_features(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Those of ``features`` this tower reads, looked up (ids -> rows, text -> token ids).

        The tower takes either form; training looks its tables up once (modeling.examples).
        """
        indexed = {}
        if self.id_name in features:
            indexed[self.id_name] = self.id_embedding.index(features[self.id_name])
        for name, layer in self.feature_layers.items():
            if name in features:
                indexed[name] = layer.index(features[name])
        return indexed


class QueryTower(_FeatureTower):
    """Embeds a query (a user): user id, the user features the data has, and the movies the
    user rated in training.

    Args:
      vocabularies: the feature vocabularies (data.features.build_vocabularies).
      embedding_dim: output width.
      feature_dim: width of each feature's embedding.
      use_features: False for a tower without demographics.
      id_dropout: share of training ids replaced by the unknown id.
      history: the users' rated movies (rows follow ``vocabularies.user_ids``), or None.
      history_sample: in training, pool at most this many of a user's rated movies per
        step (modeling.layers.RatedMoviesPooling); None: all.
      use_id: add the user id's embedding (False: the query is the user's features and
        history alone, and the tower keeps no table of users).
      history_hidden: hidden width of a residual MLP over the pooled history
        (modeling.layers.ResidualMLP; 0: the pooled history's linear projection alone).

    After training, ``attach_ease`` may widen the output by EASE's pooled input factors
    (retrieval.ease_towers).

    Call args:
      features: "user_id" and, when the tower uses them, "user_age", "user_gender",
        "user_occupation", "user_zip" (string tensors [batch]; "" for unknown, or their
        looked-up form from ``index_features``); in training also "movie_id", left out of
        each example's history.
      history_split: in training on whole users, each user's history split into input and
        held-out movies (RatedMoviesPooling.split): only the input part is pooled.
      given_history: ragged [batch, (rated)] catalog positions pooled instead of the baked-in
        history (a request that carries the user's movies).

    Returns:
      [batch, embedding_dim (+ EASE's rank)] query embeddings.
    """

    def __init__(self, vocabularies: FeatureVocabularies, embedding_dim: int, feature_dim: int = 16,
                 use_features: bool = True, id_dropout: float = 0.0, history: Optional[RaggedTable] = None,
                 history_sample: Optional[int] = None, use_id: bool = True, history_hidden: int = 0, **kwargs):
        features = feature_encoders(vocabularies, feature_dim, sides=("user",)) if use_features else {}
        super().__init__("user_id", vocabularies.user_ids, features, embedding_dim, id_dropout, use_id, **kwargs)
        self.feature_names = tuple(sorted(features))
        self.rated_movies = None
        if history is not None:
            self.rated_movies = RatedMoviesPooling(history, vocabularies.movie_ids, embedding_dim,
                                                   sample=history_sample, name="rated_movies")
            self.history_projection = keras.layers.Dense(embedding_dim, use_bias=False, name="history_projection")
            self.history_encoder = ResidualMLP(history_hidden, embedding_dim, name="history_encoder") \
                if history_hidden else None

    def attach_ease(self, factors: EaseFactors):
        if self.rated_movies is None:
            raise ValueError("EASE's query side pools the history: this query tower was built without one")
        super().attach_ease(factors)

    def ease_part(self, features: Dict[str, tf.Tensor], given_history: Optional[tf.RaggedTensor]) -> tf.Tensor:
        rows = None if given_history is not None else self.id_embedding.index(features["user_id"])
        return self.ease.query(self.rated_movies, rows, given_history)

    def set_history(self, history: RaggedTable):
        """Pools ``history`` from now on (rows follow the user vocabulary), as do its partners."""
        if self.rated_movies is None:
            raise ValueError("this query tower was built without a history")
        self.rated_movies.set_history(history)
        for partner in self.partners:
            partner.set_history(history)

    def forget_history(self):
        """Drops the baked-in history, its partners' too: the tower then pools given histories only."""
        if self.rated_movies is not None:
            self.rated_movies.forget_history()
        for partner in self.partners:
            partner.forget_history()

    def extra(self, features: Dict[str, tf.Tensor], training: bool, history_split: Optional[HistorySplit] = None,
              given_history: Optional[tf.RaggedTensor] = None) -> tf.Tensor:
        if self.rated_movies is None:
            if history_split is not None or given_history is not None:
                raise ValueError("this query tower was built without a history")
            return tf.constant(0.0)
        if given_history is not None:
            pooled = self.history_projection(self.rated_movies.pool_given(given_history))
        else:
            rows = self.id_embedding.index(features["user_id"])
            target = features.get("movie_id") if training else None
            pooled = self.history_projection(self.rated_movies(rows, target, split=history_split))
        return pooled if self.history_encoder is None else self.history_encoder(pooled)


class CandidateTower(_FeatureTower):
    """Embeds a candidate (a movie): movie id plus genres, title words and release years.

    Args:
      vocabularies: the feature vocabularies.
      embedding_dim: output width.
      feature_dim: width of each feature's embedding.
      use_features: False for an id-only tower.
      id_dropout: share of training ids replaced by the unknown id.

    Call args:
      features: "movie_id" and, when used, "movie_genres" ("|"-joined), "movie_title"
        (data.features.title_text) and "movie_year" (a 5-year bucket).

    After training, ``attach_ease`` may widen the output by EASE's output factors.

    Returns:
      [batch, embedding_dim (+ EASE's rank)] candidate embeddings.
    """

    def __init__(self, vocabularies: FeatureVocabularies, embedding_dim: int, feature_dim: int = 16,
                 use_features: bool = True, id_dropout: float = 0.0, **kwargs):
        features = feature_encoders(vocabularies, feature_dim, sides=("movie",)) if use_features else {}
        super().__init__("movie_id", vocabularies.movie_ids, features, embedding_dim, id_dropout, **kwargs)
        self.feature_names = tuple(sorted(features))

    def ease_part(self, features: Dict[str, tf.Tensor], given_history: Optional[tf.RaggedTensor]) -> tf.Tensor:
        return self.ease.candidate(self.id_embedding.index(features["movie_id"]))


LOSSES = ("full-softmax", "in-batch", "multinomial")


class TwoTowerModel(SingleTraceSteps, tfrs.Model):
    """TFRS retrieval model with a softmax over negatives.

    Two kinds of negatives:

    * ``in-batch``: the other positives of the batch (``tfrs.tasks.Retrieval``), with the
      logQ correction (popular movies are over-sampled as negatives, so their logits are
      lowered by log of their sampling probability) and accidental hits removed (a batch
      positive equal to the query's own positive is not a negative). Under a strategy with
      several replicas, the negatives are the positives of the whole global batch, every
      replica's (gathered, with their gradients), not just the replica's own slice.
    * ``full-softmax``: every catalog movie, exact when the catalog is small enough to
      embed once per step.
    * ``multinomial``: an example is a user, not a rating. Each step splits each user's
      history at random (a share ``history_dropout`` held out), pools the rest into the
      query, and scores every held-out movie with a softmax over the whole catalog (the
      multinomial likelihood of Mult-DAE, Liang et al. 2018). A step covers every rating of
      its users: an epoch costs users x catalog, not ratings x catalog.

    Top-K metrics are not computed while training (they score the whole catalog every step, what
    makes the TFRS tutorial slow); evaluation does that once, with matrix ops, after training.

    Args:
      query_tower: users -> embeddings.
      candidate_tower: movies -> embeddings.
      loss: "full-softmax", "in-batch" or "multinomial".
      catalog: all catalog movies' features (data.features.movie_feature_columns), needed by
        full-softmax: the classes, in order.
      temperature: logits are divided by it (None: 1).
      l2: penalty on the squared norms of the batch's query and positive embeddings
        (only rows in use: a whole-matrix penalty would shrink rarely rated movies every step).
      history_dropout: the multinomial loss's share of each history held out per step.
      history_targets: the movies the multinomial loss scores: "held-out" ones, or "all" of
        the history (Mult-DAE's reconstruction of its noisy input).
      logits_dtype: "float32", or "bfloat16" for the multinomial loss's [users, catalog]
        logits product (AMX / AVX512_BF16 CPUs; the softmax stays in float32).
      rating_times: the times of the ratings trained on (retrieval.availability.RatingTimes):
        the multinomial loss leaves out of each user's softmax the movies first rated after
        their last rating. None: every movie is a negative.

    Call args (``compute_loss``):
      features: a batch of examples (modeling.examples): per rating, "user_id", "movie_id"
        and their features; for ``multinomial``, per user, "user_id" and the user features.
    """

    def __init__(self, query_tower: QueryTower, candidate_tower: CandidateTower, loss: str = "full-softmax",
                 catalog: Optional[Dict[str, Sequence[str]]] = None, temperature: Optional[float] = None,
                 l2: float = 0.0, history_dropout: float = 0.5, history_targets: str = "all",
                 logits_dtype: str = "float32", rating_times: Optional[RatingTimes] = None, **kwargs):
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"unknown retrieval loss {loss!r}; use one of {LOSSES}")
        if loss in ("full-softmax", "multinomial") and catalog is None:
            raise ValueError(f"the {loss} loss needs the catalog's features")
        if loss == "multinomial" and query_tower.rated_movies is None:
            raise ValueError("the multinomial loss needs a query tower with a history")
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.loss_kind = loss
        self.temperature = temperature
        self.l2 = l2
        self.history_dropout = history_dropout
        self.history_targets = history_targets
        self.logits_dtype = tf.as_dtype(logits_dtype)
        self.rating_times = None if rating_times is None else (
            tf.constant(rating_times.first, tf.int64), tf.constant(rating_times.last, tf.int64))
        self.task = tfrs.tasks.Retrieval(temperature=temperature, remove_accidental_hits=True)
        if catalog is not None:
            # Looked up once: the full softmax embeds the whole catalog in every step.
            self.catalog = candidate_tower.index_features({name: tf.constant(list(values))
                                                           for name, values in catalog.items()})

    def train_step(self, inputs):
        # No control flow of these losses depends on tensors: traced as written, not converted by AutoGraph,
        # the step (its optimizer, every layer's call) traces in half the time. The in-batch loss's TFRS task
        # calls len() on a tensor, which needs AutoGraph under a strategy.
        step = super().train_step
        return step(inputs) if self.loss_kind == "in-batch" else tf.autograph.experimental.do_not_convert(step)(inputs)

    def _multinomial_loss(self, features: Dict[str, tf.Tensor], training: bool) -> tf.Tensor:
        rows = self.query_tower.id_embedding.index(features["user_id"])
        split = self.query_tower.rated_movies.split(rows, self.history_dropout)
        query = self.query_tower(features, training=training, history_split=split)
        catalog = self.candidate_tower(self.catalog, training=training)
        logits = tf.cast(tf.matmul(tf.cast(query, self.logits_dtype), tf.cast(catalog, self.logits_dtype),
                                   transpose_b=True), tf.float32)
        if self.temperature:
            logits = logits / self.temperature
        if self.rating_times is not None:  # a user's targets were all rated by then: never masked
            first, last = self.rating_times
            later = first[tf.newaxis, :] > tf.gather(last, tf.cast(rows, tf.int64))[:, tf.newaxis]
            logits = tf.where(later, tf.constant(-1e9, tf.float32), logits)
        log_probabilities = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
        held_out = 1.0 - split.kept if self.history_targets == "held-out" else tf.ones_like(split.kept)
        pairs = tf.stack([split.rowids, split.movies], axis=1)
        loss = -tf.reduce_sum(held_out * tf.gather_nd(log_probabilities, pairs))
        if self.l2:
            # As the per-rating losses penalise them: once per (user, held-out movie) pair
            # (squared norms gathered per pair, not the pairs' embeddings).
            squared = (tf.gather(tf.reduce_sum(tf.square(query), axis=1), split.rowids) +
                       tf.gather(tf.reduce_sum(tf.square(catalog), axis=1), split.movies))
            loss += self.l2 * tf.reduce_sum(held_out * squared)
        return loss

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        if self.loss_kind == "multinomial":
            return self._multinomial_loss(features, training)
        query = self.query_tower(features, training=training)
        if self.loss_kind == "full-softmax":
            catalog = self.candidate_tower(self.catalog, training=training)
            logits = tf.matmul(query, catalog, transpose_b=True)
            if self.temperature:
                logits = logits / self.temperature
            labels = self.candidate_tower.id_embedding.index(features["movie_id"]) - 1
            positive = tf.gather(catalog, labels)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        else:
            positive = self.candidate_tower(features, training=training)
            probability = features.get("sampling_probability")
            # This replica's positives first, so that they stay on the diagonal TFRS expects.
            loss = self.task(query, cross_replica_concat(positive),
                             candidate_sampling_probability=None if probability is None
                             else cross_replica_concat(probability),
                             candidate_ids=cross_replica_concat(features["movie_id"]), compute_metrics=False)
        if self.l2:
            loss += self.l2 * (tf.reduce_sum(tf.square(query)) + tf.reduce_sum(tf.square(positive)))
        return loss
