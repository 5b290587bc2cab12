"""The shared TFRS model base (modeling.task_model): its train step is traced as written."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twostage.modeling.task_model import TaskModel


class _Error(tf.keras.layers.Layer):
    """The residuals of y = weight * x; with ``branching``, doubled by a Python branch on a
    tensor, which Keras has autograph make a tf.cond inside a converted step."""

    def __init__(self, branching):
        super().__init__()
        self.branching = branching
        self.weight = self.add_weight(name="weight", shape=(), initializer="zeros")

    def call(self, features):
        error = self.weight * features["x"] - features["y"]
        if self.branching:
            if tf.reduce_sum(error) > 0:
                error = 2 * error
        return error


class _LinearLoss:
    """A one-weight least-squares model's loss (``branching``: see _Error)."""

    branching = False

    def __init__(self):
        super().__init__()
        self.error = _Error(self.branching)

    def compute_loss(self, features, training=False):
        return tf.reduce_mean(self.error(features) ** 2)


class _Linear(_LinearLoss, TaskModel):
    pass


class _ConvertedLinear(_LinearLoss, tfrs.models.Model):
    pass


class _Branching(_Linear):
    branching = True


class _ConvertedBranching(_ConvertedLinear):
    branching = True


def _fitted_weight(model_class):
    """The one weight of a least-squares model after 3 full-batch SGD steps."""
    model = model_class()
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01))
    x = np.arange(1, 9, dtype=np.float32)
    model.fit(tf.data.Dataset.from_tensor_slices({"x": x, "y": 2 * x}).batch(8), epochs=3, verbose=0)
    return float(model.error.weight.numpy())


def test_the_step_trains_as_a_tfrs_models_does():
    weight = _fitted_weight(_Linear)
    assert weight == _fitted_weight(_ConvertedLinear)
    assert 0.0 < weight < 2.0


def test_the_step_is_not_converted_so_branching_on_a_tensor_fails_when_traced():
    assert _fitted_weight(_ConvertedBranching) > 0.0  # converted: the branch became graph control flow
    with pytest.raises(TypeError, match="Python `bool`"):
        _fitted_weight(_Branching)
