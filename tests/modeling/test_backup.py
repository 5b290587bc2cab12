"""Per-epoch backups: a fit stopped after an epoch and resumed ends where an uninterrupted one does."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twostage.modeling.examples import ExampleBatches
from twostage.modeling.layers import SeededDropout
from twostage.modeling.training import EpochSchedule, TrainingRun, fit_choosing_epochs


class _Regression(tfrs.Model):
    """A small model with training noise (dropout), so the random state must resume too."""

    def __init__(self):
        super().__init__()
        self.hidden = tf.keras.layers.Dense(8, activation="relu")
        self.dropout = SeededDropout(0.3)
        self.out = tf.keras.layers.Dense(1)

    def compute_loss(self, features, training=False):
        predicted = self.out(self.dropout(self.hidden(features["x"]), training=training))[:, 0]
        return tf.reduce_mean(tf.square(predicted - features["y"]))


class _Interrupt(Exception):
    pass


def _fit(tmp_path, stop_after=None, schedule=EpochSchedule(5, "error", 2, higher_is_better=False, refit=True)):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    rows = {"x": x, "y": (x @ np.asarray([1.0, -2.0, 0.5, 0.0], np.float32)).astype(np.float32)}
    epochs_seen = []

    def build(refit):
        tf.keras.utils.set_random_seed(7)
        model = _Regression()
        model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
        return model

    def validate(model):
        epochs_seen.append(len(epochs_seen) + 1)
        if stop_after is not None and len(epochs_seen) > stop_after:
            raise _Interrupt()  # a crash after ``stop_after`` epochs were backed up
        error = model.compute_loss({k: tf.constant(v[:100]) for k, v in rows.items()})
        return {"error": float(error)}

    examples = lambda model: ExampleBatches(rows, 32, shuffle_seed=1, drop_remainder=True)  # noqa: E731
    return fit_choosing_epochs("toy", build, examples, validate, schedule, full_data=examples,
                               run=TrainingRun(backup_dir=str(tmp_path / "backup")))


def test_a_resumed_fit_ends_with_the_weights_and_epoch_choice_of_an_uninterrupted_one(tmp_path):
    whole = _fit(tmp_path / "whole")
    with pytest.raises(_Interrupt):
        _fit(tmp_path / "stopped", stop_after=2)
    resumed = _fit(tmp_path / "stopped")
    assert resumed.best_epoch == whole.best_epoch
    assert [h["validation"] for h in resumed.history] == [h["validation"] for h in whole.history]
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(whole.validation_model.get_weights(), resumed.validation_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_finished_fit_is_restored_not_trained_again(tmp_path):
    whole = _fit(tmp_path)
    again = _fit(tmp_path, stop_after=0)  # would raise if it validated an epoch
    assert again.best_epoch == whole.best_epoch
    for a, b in zip(whole.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_dropout_noise_is_saved_and_restored_with_the_model(tmp_path):
    # Without the generator in the checkpoint, a resumed run would draw a fresh run's masks.
    layer = SeededDropout(0.5)
    checkpoint = tf.train.Checkpoint(layer=layer)
    ones = tf.ones([1, 64])
    layer(ones, training=True)
    path = checkpoint.write(str(tmp_path / "noise"))
    expected = layer(ones, training=True).numpy()
    tf.keras.utils.set_random_seed(0)
    restored = SeededDropout(0.5)
    tf.train.Checkpoint(layer=restored).read(path)
    np.testing.assert_array_equal(restored(ones, training=True).numpy(), expected)
