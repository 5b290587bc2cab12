"""Keras layers that turn the features of twostage.data into vectors; both stages' models use them."""

from __future__ import annotations

import random
from typing import Sequence

import tensorflow as tf

from twostage.modeling.tf_setup import require_legacy_keras

keras = require_legacy_keras()

def training_noise() -> tf.random.Generator:
    """The random generator of a layer's training noise (dropout, sampling).

    Seeded from the run's seed (``tf.keras.utils.set_random_seed`` seeds Python's ``random``)
    and tracked by the layer, so the model's checkpoints carry its state: a resumed run draws
    what an uninterrupted one would have drawn. It is not among the model's weights.
    """
    return tf.random.Generator.from_seed(random.randint(0, 2 ** 31 - 1))


class SeededDropout(keras.layers.Layer):
    """Dropout drawn from the layer's own generator (``training_noise``).

    Args:
      rate: share of the inputs zeroed in training (the rest scaled by 1 / (1 - rate)).

    Call args:
      inputs: any shape; training: apply the dropout.

    Returns:
      ``inputs``' shape.
    """

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.noise = training_noise()

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        if not training or not self.rate:
            return inputs
        return tf.nn.experimental.stateless_dropout(inputs, self.rate, seed=self.noise.make_seeds(1)[:, 0])


class ResidualMLP(keras.layers.Layer):
    """A vector plus a learned nonlinear correction of it: x + Dense(swish(Dense(LayerNorm(x)))).

    One block of the deeper encoders of Mult-VAE / RecVAE, for a pooled history whose plain
    mean is a linear function of the movies rated.

    Args:
      hidden: width of the hidden layer.
      width: width of the input and the output.

    Call args:
      inputs: [batch, width].

    Returns:
      [batch, width].
    """

    def __init__(self, hidden: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.hidden = keras.layers.Dense(hidden, activation="swish", name="hidden")
        self.correction = keras.layers.Dense(width, name="correction")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs + self.correction(self.hidden(self.norm(inputs)))


class IdEmbedding(keras.layers.Layer):
    """A string id -> embedding lookup with a vocabulary fixed at construction.

    Ids outside the vocabulary share one out-of-vocabulary row (index 0).

    Args:
      vocabulary: the known ids.
      embedding_dim: embedding width.
      embed: False for the lookup alone (``index``; calling the layer gives zeros): a tower
        that keeps no table per id still finds each id's row in tables such as its history.
    """

    def __init__(self, vocabulary: Sequence[str], embedding_dim: int, embed: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.lookup = keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None)
        self.embedding_dim = embedding_dim
        self.embedding = keras.layers.Embedding(len(vocabulary) + 1, embedding_dim) if embed else None

    def index(self, ids: tf.Tensor) -> tf.Tensor:
        """String ids -> int64 rows (0: out of vocabulary); rows (integers) pass through.

        Training indexes its examples once, not in every step (modeling.examples).
        """
        return ids if ids.dtype.is_integer else self.lookup(ids)

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        """Returns [..., embedding_dim] embeddings of string ids, or of rows from ``index``."""
        rows = self.index(ids)
        if self.embedding is None:
            return tf.zeros(tf.concat([tf.shape(rows), [self.embedding_dim]], axis=0))
        return self.embedding(rows)


class PooledTokens(keras.layers.Layer):
    """Mean of the embeddings of a string's tokens (genres split on "|", title words on spaces).

    An empty string pools to zeros rather than NaN.

    Args:
      vocabulary: known tokens.
      embedding_dim: width.
      separator: token separator.
    """

    def __init__(self, vocabulary: Sequence[str], embedding_dim: int, separator: str, **kwargs):
        super().__init__(**kwargs)
        self.separator = separator
        if separator == " ":
            # Titles: the text-tower of the seed systems, as TextVectorization -> pooled embeddings.
            self.tokens = keras.layers.TextVectorization(standardize=None, split="whitespace",
                                                         vocabulary=list(vocabulary), ragged=True)
        else:
            self.tokens = None
            self.lookup = keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None)
        self.embedding = keras.layers.Embedding(len(vocabulary) + 2, embedding_dim)

    def build(self, input_shape):
        self.embedding.build(None)  # its table is read directly, never through its call
        super().build(input_shape)

    def index(self, text):
        """[batch] strings -> ragged [batch, (tokens)] token ids; token ids (ragged) pass through."""
        if isinstance(text, tf.RaggedTensor):
            return text
        if self.tokens is not None:
            return self.tokens(text)
        tokens = tf.strings.split(text, sep=self.separator)
        # split("") is [""], not []: a movie without genres must pool to zeros.
        return self.lookup(tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, "")))

    def call(self, text) -> tf.Tensor:
        """[batch] strings, or their token ids from ``index`` -> [batch, embedding_dim]."""
        ids = self.index(text)
        table = self.embedding.embeddings
        if isinstance(table, tf.Variable):
            # One fused op (and one for its gradient), a third of the time of a ragged lookup and
            # sum: a multinomial retrieval step pools the whole catalog's tokens (docs/quality.md).
            # Rows without tokens are zeros.
            return tf.sparse.segment_mean(table, ids.flat_values, ids.value_rowids(), num_segments=ids.nrows())
        # A table split over parameter servers: its layer gathers the rows from their shards.
        sums = tf.math.unsorted_segment_sum(self.embedding(ids.flat_values), ids.value_rowids(), ids.nrows())
        count = tf.cast(tf.expand_dims(ids.row_lengths(), 1), sums.dtype)
        return sums / tf.maximum(count, 1.0)
