"""The optimizers both stages train with, and the moving average of the weights they keep."""

from __future__ import annotations

import tensorflow as tf

from twostage.modeling.tf_setup import require_legacy_keras

keras = require_legacy_keras()

# The moving average of the weights takes every this many steps' weights (momentum raised
# to this power): the same average to within noise, at a quarter of the per-step cost (each
# update is a few ops per variable, most of a small model's step overhead).
AVERAGE_EVERY = 4


class _SubsampledAverage:
    """Mixed into a tf-keras optimizer: its moving average of the weights (``use_ema``) is
    updated every ``AVERAGE_EVERY`` steps with momentum ``ema_momentum ** AVERAGE_EVERY``."""

    def _update_model_variables_moving_average(self, var_list):
        if not self.use_ema:
            return
        momentum = self.ema_momentum ** AVERAGE_EVERY

        def update():
            for variable in var_list:
                average = self._model_variables_moving_average[self._index_dict[self._var_key(variable)]]
                self._distribution_strategy.extended.update(
                    average, lambda mean, value: mean.assign(momentum * mean + (1 - momentum) * value),
                    args=(variable,), group=False)
            return tf.constant(True)

        tf.cond(tf.equal(self.iterations % AVERAGE_EVERY, 0), update, lambda: tf.constant(False))


class _AveragedAdam(_SubsampledAverage, keras.optimizers.Adam):
    pass


class _AveragedAdagrad(_SubsampledAverage, keras.optimizers.Adagrad):
    pass


def make_optimizer(kind: str, learning_rate: float, weight_averaging: float = 0.0) -> keras.optimizers.Optimizer:
    """An "adam" or "adagrad" optimizer, keeping a moving average of the weights (momentum
    ``weight_averaging`` per step; 0: none) that ``fit_choosing_epochs`` validates and keeps."""
    plain = {"adam": keras.optimizers.Adam, "adagrad": keras.optimizers.Adagrad}
    if kind not in plain:
        raise ValueError(f"unknown optimizer {kind!r}; use one of {tuple(plain)}")
    if not weight_averaging:
        return plain[kind](learning_rate)
    averaged = {"adam": _AveragedAdam, "adagrad": _AveragedAdagrad}[kind]
    return averaged(learning_rate, use_ema=True, ema_momentum=weight_averaging)
