"""The TFRS model every trained model of both stages derives from."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs


class TaskModel(tfrs.models.Model):
    """``tfrs.models.Model`` whose train step is traced as written, without autograph's conversion.

    Keras traces the train step inside a ``tf.function`` with autograph on, and then has autograph
    rewrite every layer's ``call`` it reaches (parsing and transforming its source) so that Python
    control flow on tensors becomes graph control flow. The models' layers have none: their only
    branches are on Python settings. Traced as written, the retrieval model's first trace took
    3.9-4.8 s instead of 7.0-8.3 s on ml-100k (docs/quality.md). A layer that branched on a
    tensor would fail when traced ("using a tf.Tensor as a Python bool"), not run wrongly.

    Subclasses implement ``compute_loss(features, training) -> scalar loss`` as for
    ``tfrs.models.Model``.
    """

    @tf.autograph.experimental.do_not_convert
    def train_step(self, inputs):
        return super().train_step(inputs)
