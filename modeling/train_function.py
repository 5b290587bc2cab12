"""A Keras train function that runs several steps per call and traces the train step once."""

from __future__ import annotations

import tensorflow as tf


class SingleTraceSteps:
    """Mixed into a Keras model (before it in the bases): with ``steps_per_execution`` > 1,
    its train function loops over Keras' own one-step function instead of over the step.

    Keras' loop assigns the step's outputs inside ``for _ in tf.range(...)``. They are not
    defined before it, so AutoGraph traces the loop body once more, in a scratch graph, to
    learn their structure: every ``train_step`` (model, loss, optimizer) is traced twice. The
    one-step ``tf.function`` looped over here is traced once, and the loop's two traces reuse
    its concrete function. Each call runs the same steps in the same order, so the weights are
    those of Keras' loop (``tests/modeling/test_train_function.py``).

    A parameter-server coordinator (which schedules the function itself) and autotuned steps
    keep Keras' own function.
    """

    def make_train_function(self, force: bool = False):
        if self.train_function is not None and not force:
            return self.train_function
        steps = self._steps_per_execution
        looped = 1 if steps is None else int(steps.numpy())
        if looped == 1 or self._cluster_coordinator is not None or self.autotune_steps_per_execution:
            return super().make_train_function(force)
        # Keras builds its one-step function while the count reads 1; the count is set back
        # before any call, and the loop below reads it at every call (Keras shortens the last
        # call of an epoch by assigning it).
        steps.assign(1)
        try:
            one_step = super().make_train_function(force=True)
        finally:
            steps.assign(looped)

        def train_function(iterator):
            for _ in tf.range(steps):
                outputs = one_step(iterator)
            return outputs

        self.train_function = self.train_tf_function = tf.function(train_function, reduce_retracing=True)
        return self.train_function
