"""The tf.data input pipeline and the fit loop both stages share.

Both stages choose how long to train on a validation part carved from the training part,
then keep the best-epoch model or, where their config says so, retrain from scratch on the
whole training part for that many epochs.
Models are built inside the ``tf.distribute`` strategy scope of the pipeline (the default
strategy on one machine), so multi-GPU or multi-worker training needs no redesign.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import tensorflow as tf

log = logging.getLogger("twostage")


# Training examples: a dataset, or a function that makes one for the model being trained.
Examples = Union[tf.data.Dataset, Callable[[tf.keras.Model], tf.data.Dataset]]


def _examples_for(model: tf.keras.Model, examples: Examples) -> tf.data.Dataset:
    return examples if isinstance(examples, tf.data.Dataset) else examples(model)


def _create_variables(model: tf.keras.Model, data: tf.data.Dataset) -> None:
    """Creates the model's and its optimizer's variables on a few rows of ``data``.

    A train function that creates variables is traced twice; with them in place, once.
    """
    # A few rows suffice, and cost less run eagerly.
    model.compute_loss(tf.nest.map_structure(lambda column: column[:8], next(iter(data))), training=True)
    model.optimizer.build(model.trainable_variables)


def _examples_per_step(data: tf.data.Dataset) -> Optional[int]:
    """The batch size of ``data`` when every batch has it (training drops the remainder)."""
    sizes = [spec.shape[0] for spec in tf.nest.flatten(data.element_spec) if spec.shape.rank]
    return next((size for size in sizes if size is not None), None)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress(tf.keras.callbacks.Callback):
    """A progress line every ``every`` seconds inside long epochs: steps done, examples/s, ETA.

    Also measures the training throughput of the whole fit (``examples_per_second``), which
    the pipeline saves with the export.
    """

    def __init__(self, name: str, steps: int, examples_per_step: Optional[int], every: float = 30.0):
        super().__init__()
        self.name, self.steps, self.examples_per_step, self.every = name, steps, examples_per_step, every
        self.epoch, self.epoch_start, self.last = 0, 0.0, 0.0
        self.trained_steps, self.trained_seconds = 0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_start = epoch + 1, time.perf_counter()
        self.last = self.epoch_start

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if now - self.last < self.every or self.steps <= 0:
            return
        self.last = now
        done = batch + 1
        rate = done / (now - self.epoch_start)
        examples = f", {rate * self.examples_per_step:,.0f} examples/s" if self.examples_per_step else ""
        log.info("%s epoch %d: %d/%d steps (%.0f%%)%s, epoch ETA %s", self.name, self.epoch, done, self.steps,
                 100.0 * done / self.steps, examples, _duration((self.steps - done) / rate))

    def on_epoch_end(self, epoch, logs=None):
        self.last_epoch_seconds = time.perf_counter() - self.epoch_start
        self.trained_steps += self.steps
        self.trained_seconds += self.last_epoch_seconds

    def epoch_summary(self) -> str:
        """How long the last epoch's training took, and at what rate."""
        rate = (f", {self.steps * self.examples_per_step / self.last_epoch_seconds:,.0f} examples/s"
                if self.examples_per_step else "")
        return f"{self.last_epoch_seconds:.1f}s training{rate}"

    @property
    def examples_per_second(self) -> Optional[float]:
        """Training examples per second over the epochs so far (validation time excluded)."""
        if not self.examples_per_step or not self.trained_seconds:
            return None
        return self.trained_steps * self.examples_per_step / self.trained_seconds


def _fit_inputs(data: tf.data.Dataset) -> dict:
    """``fit`` arguments for ``data``: one repeated dataset cut into epochs by
    ``steps_per_epoch`` keeps one iterator, where a new one each epoch stalled the loop."""
    steps = int(data.cardinality())
    if steps <= 0:  # unknown or infinite: Keras finds the epoch's end itself
        return {"x": data}
    return {"x": data.repeat(), "steps_per_epoch": steps}


@dataclasses.dataclass(frozen=True)
class EpochSchedule:
    """How many epochs to train and how to choose them.

    Attributes:
      max_epochs: most epochs on the fit part.
      monitor: the key of the validation figures that chooses the epoch.
      patience: stop after this many epochs without a better validation figure.
      higher_is_better: direction of the validation figure.
      refit: retrain on fit + validation for the best epoch count (else keep the best weights).
    """

    max_epochs: int
    monitor: str
    patience: int
    higher_is_better: bool
    refit: bool = True


@dataclasses.dataclass
class FitResult:
    """A trained model and how it got there.

    Attributes:
      model: the final model.
      validation_model: the model at its best epoch on the fit part (the same object as
        ``model`` without refit): the one to score validation data with.
      best_epoch: epochs chosen on validation.
      history: one dict per epoch: loss and the validation figures.
      seconds: wall time of the whole fit, refit included.
      examples_per_second: training examples per second while choosing epochs (validation
        excluded); None where batches vary in size.
    """

    model: tf.keras.Model
    validation_model: tf.keras.Model
    best_epoch: int
    history: List[dict]
    seconds: float
    examples_per_second: Optional[float] = None


class _EpochChooser(tf.keras.callbacks.Callback):
    """Validates after every epoch, remembers the best, stops after ``patience`` worse ones."""

    def __init__(self, name: str, validate, schedule: EpochSchedule, progress: Progress):
        super().__init__()
        self.name, self.validate, self.schedule, self.progress = name, validate, schedule, progress
        self.history, self.best, self.best_epoch, self.best_weights = [], None, 0, None

    def on_train_begin(self, logs=None):
        # Keras walks every layer for this list: once per fit, not once per epoch.
        self.trainable = self.model.trainable_variables

    def on_epoch_end(self, epoch, logs=None):
        validation_start = time.perf_counter()
        epoch += 1
        averaged = getattr(self.model.optimizer, "use_ema", False)
        if averaged:
            # Validate (and keep) the moving average of the weights, then train on from the raw ones.
            # The optimizer's own swap is private, but tf-keras is pinned (and tested here).
            raw = [v.numpy() for v in self.trainable]
            self.model.optimizer._overwrite_model_variables_with_average_value(self.trainable)
        figures = {key: float(value) for key, value in self.validate(self.model).items()}
        figure = figures[self.schedule.monitor]
        improved = self.best is None or (figure > self.best if self.schedule.higher_is_better else figure < self.best)
        self.history.append({"epoch": epoch, "loss": float(logs["loss"]), "validation": figures})
        log.info("%s epoch %d/%d: loss %.4f, validation %s %.4f%s (%s; %.1fs validation)", self.name, epoch,
                 self.schedule.max_epochs, logs["loss"], self.schedule.monitor, figure, " (best)" if improved else "",
                 self.progress.epoch_summary(), time.perf_counter() - validation_start)
        if improved:
            self.best, self.best_epoch = figure, epoch
            self.best_weights = self.model.get_weights()
        elif epoch - self.best_epoch >= self.schedule.patience:
            self.model.stop_training = True
            log.info("%s: stopped after epoch %d: no better validation %s for %d epoch(s); keeping epoch %d "
                     "(%s %.4f)", self.name, epoch, self.schedule.monitor, epoch - self.best_epoch, self.best_epoch,
                     self.schedule.monitor, self.best)
        if averaged:
            for variable, value in zip(self.trainable, raw):
                variable.assign(value)


class _EpochLogger(tf.keras.callbacks.Callback):
    """One line per epoch (of a refit, which has no validation)."""

    def __init__(self, name: str, epochs: int, progress: Progress):
        super().__init__()
        self.name, self.epochs, self.progress = name, epochs, progress

    def on_epoch_end(self, epoch, logs=None):
        log.info("%s epoch %d/%d: loss %.4f (%s)", self.name, epoch + 1, self.epochs, logs["loss"],
                 self.progress.epoch_summary())


def fit_choosing_epochs(name: str, build: Callable[[bool], tf.keras.Model], fit_data: "Examples",
                        validate: Callable[[tf.keras.Model], Dict[str, float]], schedule: EpochSchedule,
                        full_data: Optional["Examples"] = None,
                        strategy: Optional[tf.distribute.Strategy] = None,
                        refit_in_place: Optional[Callable[[tf.keras.Model], None]] = None) -> FitResult:
    """Trains, choosing the epoch count on validation.

    Args:
      name: stage name for progress lines.
      build: refit -> a new compiled model (called inside the strategy scope); refit is
        False while choosing epochs on the fit part, True for the refit on the whole
        training part (models that bake in training data must use the matching part).
      fit_data: the training part minus validation: a dataset, or model -> dataset (for
        examples the model indexes once, before training).
      validate: model -> validation figures (``schedule.monitor`` among them).
      schedule: epochs, patience, direction, refit.
      full_data: the whole training part, for the refit (required when schedule.refit).
      strategy: distribution strategy (default: the current one).
      refit_in_place: for models whose refit differs from the fit only in data this function
        swaps in (e.g. the history a model pools): the refit then retrains the fit's own
        model from its initial weights and optimizer state, reusing its traced train step
        (seconds saved), and the best-epoch model is a copy built with ``build(False)``.

    Returns:
      The trained model, the chosen epoch count and the per-epoch history.
    """
    strategy = strategy or tf.distribute.get_strategy()
    start = time.perf_counter()
    with strategy.scope():
        model = build(False)
    fit_examples = _examples_for(model, fit_data)
    progress = Progress(name, int(fit_examples.cardinality()), _examples_per_step(fit_examples))
    chooser = _EpochChooser(name, validate, schedule, progress)
    _create_variables(model, fit_examples)
    if schedule.refit and refit_in_place is not None:
        initial = (model.get_weights(), [v.numpy() for v in model.optimizer.variables])
    # One fit call for all epochs: a fit call per epoch pays Keras' set-up every time.
    model.fit(epochs=schedule.max_epochs, verbose=0, callbacks=[progress, chooser], **_fit_inputs(fit_examples))
    history, best_epoch = chooser.history, chooser.best_epoch
    model.set_weights(chooser.best_weights)
    validation_model = model
    if schedule.refit:
        if full_data is None:
            raise ValueError("refit needs the whole training part")
        refit_start = time.perf_counter()
        with strategy.scope():
            if refit_in_place is None:
                model = build(True)
                full_examples = _examples_for(model, full_data)
                _create_variables(model, full_examples)
            else:
                validation_model = build(False)
                _create_variables(validation_model, fit_examples)
                validation_model.set_weights(chooser.best_weights)
                model.set_weights(initial[0])
                model.optimizer.set_weights(initial[1])
                refit_in_place(model)
                full_examples = _examples_for(model, full_data)
        refit_progress = Progress(f"{name} refit", int(full_examples.cardinality()), _examples_per_step(full_examples))
        model.fit(epochs=best_epoch, verbose=0, callbacks=[refit_progress, _EpochLogger(f"{name} refit", best_epoch,
                                                                                        refit_progress)],
                  **_fit_inputs(full_examples))
        log.info("%s: refitted on the whole training part for %d epoch(s) (%.1fs)", name, best_epoch,
                 time.perf_counter() - refit_start)
    return FitResult(model=model, validation_model=validation_model, best_epoch=best_epoch, history=history,
                     seconds=time.perf_counter() - start, examples_per_second=progress.examples_per_second)
