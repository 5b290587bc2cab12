"""The optimizers: names, and the moving average of the weights the fit loop validates and keeps."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twostage.modeling.examples import ExampleBatches
from twostage.modeling.optimizers import AVERAGE_EVERY, make_optimizer
from twostage.modeling.training import EpochSchedule, fit_choosing_epochs


class _Linear(tfrs.Model):
    def __init__(self):
        super().__init__()
        self.out = tf.keras.layers.Dense(1)

    def compute_loss(self, features, training=False):
        return tf.reduce_mean(tf.square(self.out(features["x"])[:, 0] - features["y"]))


def _fit(weight_averaging: float):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3)).astype(np.float32)
    rows = {"x": x, "y": (x @ np.asarray([1.0, -2.0, 0.5], np.float32) + rng.normal(size=256)).astype(np.float32)}
    validated = []

    def build(refit):
        tf.keras.utils.set_random_seed(3)
        model = _Linear()
        model.compile(optimizer=make_optimizer("adam", 0.05, weight_averaging))
        return model

    def validate(model):
        validated.append([w.copy() for w in model.get_weights()])
        return {"epochs": float(len(validated))}  # every epoch is better: the last is kept

    examples = lambda model: ExampleBatches(rows, 32, shuffle_seed=1, drop_remainder=True)  # noqa: E731
    result = fit_choosing_epochs("toy", build, examples, validate,
                                 EpochSchedule(3, "epochs", 1, higher_is_better=True, refit=False))
    return result, validated


def test_the_weight_average_is_validated_and_kept_while_training_goes_on_from_the_raw_weights():
    plain, plain_validated = _fit(0.0)
    averaged, averaged_validated = _fit(0.9)
    # Training itself is untouched: the same losses epoch by epoch, so each epoch went on
    # from the raw weights, not from the average that was validated.
    assert [h["loss"] for h in averaged.history] == [h["loss"] for h in plain.history]
    # What was validated is the average (not the raw weights), and the best epoch's is kept.
    assert not np.allclose(averaged_validated[-1][0], plain_validated[-1][0])
    for kept, validated in zip(averaged.model.get_weights(), averaged_validated[-1]):
        np.testing.assert_array_equal(kept, validated)
    for kept, validated in zip(plain.model.get_weights(), plain_validated[-1]):
        np.testing.assert_array_equal(kept, validated)


def test_optimizers_by_name():
    assert isinstance(make_optimizer("adagrad", 0.1), tf.keras.optimizers.Adagrad)
    adam = make_optimizer("adam", 0.01, 0.99)
    assert isinstance(adam, tf.keras.optimizers.Adam) and adam.use_ema and adam.ema_momentum == 0.99
    assert not make_optimizer("adam", 0.01).use_ema
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        make_optimizer("sgd", 0.01)


def test_the_average_takes_every_fourth_step_with_the_momentum_to_the_fourth():
    variable = tf.Variable([1.0])
    optimizer = make_optimizer("adam", 0.1, 0.5)

    @tf.function
    def step():
        optimizer.apply_gradients([(tf.constant([1.0]), variable)])

    values = []
    for _ in range(9):
        step()
        values.append(float(variable.numpy()[0]))
    expected, momentum = 1.0, 0.5 ** AVERAGE_EVERY  # the average starts at the initial weights
    for value in values[::AVERAGE_EVERY]:  # steps 1, 5 and 9
        expected = momentum * expected + (1 - momentum) * value
    assert optimizer._model_variables_moving_average[0].numpy()[0] == pytest.approx(expected, rel=1e-6)
