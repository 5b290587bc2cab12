"""The several-steps train function: the train step traced once, the weights those of Keras' loop."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twostage.modeling.optimizers import make_optimizer
from twostage.modeling.train_function import SingleTraceSteps


class _Linear(tfrs.Model):
    traces = 0

    def __init__(self):
        super().__init__()
        self.out = tf.keras.layers.Dense(1)

    def train_step(self, inputs):
        type(self).traces += 1
        return super().train_step(inputs)

    def compute_loss(self, features, training=False):
        return tf.reduce_mean(tf.square(self.out(features["x"])[:, 0] - features["y"]))


class _SingleTraceLinear(SingleTraceSteps, _Linear):
    traces = 0


def _fit(model_class, steps_per_execution: int, epochs: int = 2):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 3)).astype(np.float32)
    rows = {"x": x, "y": (x @ np.asarray([1.0, -2.0, 0.5], np.float32) + rng.normal(size=320)).astype(np.float32)}
    tf.keras.utils.set_random_seed(3)
    model = model_class()
    model.compile(optimizer=make_optimizer("adam", 0.05, 0.9), steps_per_execution=steps_per_execution)
    # As the fit loop does: a train function that creates variables is traced twice over.
    model.compute_loss({name: values[:8] for name, values in rows.items()}, training=True)
    model.optimizer.build(model.trainable_variables)
    # 10 steps an epoch: with 4 steps a call, each epoch's last call runs 2 (Keras shortens it).
    history = model.fit(tf.data.Dataset.from_tensor_slices(rows).batch(32), epochs=epochs, verbose=0)
    return model, history.history["loss"]


@pytest.mark.parametrize("steps_per_execution", [4, 3])
def test_the_step_is_traced_once_and_trains_the_weights_keras_loop_trains(steps_per_execution):
    _Linear.traces = _SingleTraceLinear.traces = 0
    keras_model, keras_losses = _fit(_Linear, steps_per_execution)
    model, losses = _fit(_SingleTraceLinear, steps_per_execution)
    assert _Linear.traces == 2  # what the single trace saves: Keras' loop traces the step twice
    assert _SingleTraceLinear.traces == 1
    assert int(model._train_counter.numpy()) == int(keras_model._train_counter.numpy()) == 20
    assert losses == keras_losses
    for ours, theirs in zip(model.get_weights(), keras_model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    assert int(model._steps_per_execution.numpy()) == steps_per_execution


def test_one_step_a_call_is_keras_own_function():
    _SingleTraceLinear.traces = 0
    model, _ = _fit(_SingleTraceLinear, 1, epochs=1)
    assert _SingleTraceLinear.traces == 1
    assert int(model._train_counter.numpy()) == 10
