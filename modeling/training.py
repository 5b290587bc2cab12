"""The tf.data input pipeline and the fit loop both stages share.

Both stages choose how long to train on a validation part carved from the training part,
then keep the best-epoch model or, where their config says so, retrain from scratch on the
whole training part for that many epochs.
Models are built and trained under the run's ``tf.distribute`` strategy (modeling.distribute);
each fit can keep a backup after every epoch (modeling.backup) and write TensorBoard scalars.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import tensorflow as tf

from twostage.modeling.backup import FitBackup
from twostage.modeling.distribute import Cluster, default_cluster, sharded_variables, whole_weights
from twostage.modeling.examples import ExampleBatches, ShardedBatches
from twostage.modeling.progress import EpochProgress, Progress

log = logging.getLogger("twostage")


# Training examples: a function that batches them for the model being trained (the model
# looks its feature tables up once, before training).
Examples = Callable[[tf.keras.Model], Union[ExampleBatches, ShardedBatches]]


@dataclasses.dataclass(frozen=True)
class TrainingRun:
    """Where a run's fits train and what they leave behind.

    Attributes:
      cluster: the strategy and this process's part in it.
      backup_dir: per-epoch backups of every fit, one folder each (None: no backups); a fit
        with a backup there resumes from it. Each worker of a cluster has its own.
      tensorboard_dir: per-epoch scalars of every fit, one folder each (None: none).
    """

    cluster: Cluster = dataclasses.field(default_factory=default_cluster)
    backup_dir: Optional[str] = None
    tensorboard_dir: Optional[str] = None

    def backup(self, fit_name: str) -> Optional[FitBackup]:
        if self.backup_dir is None:
            return None
        return FitBackup(os.path.join(self.backup_dir, fit_name.replace(" ", "-")))

    def summaries(self, fit_name: str) -> Optional[tf.summary.SummaryWriter]:
        if self.tensorboard_dir is None or not self.cluster.is_chief:
            return None
        return tf.summary.create_file_writer(os.path.join(self.tensorboard_dir, fit_name.replace(" ", "-")))


def create_variables(model: tf.keras.Model, batches: Union[ExampleBatches, ShardedBatches]) -> None:
    """Creates the model's and its optimizer's variables on a few rows (run eagerly).

    A train function that creates variables is traced twice; with them in place, once.
    """
    model.compute_loss(batches.head(8), training=True)
    model.optimizer.build(model.trainable_variables)


def training_state(model: tf.keras.Model) -> tuple:
    """A copy of the model's weights and its optimizer's state (moments, weight average, step)."""
    return model.get_weights(), [variable.numpy() for variable in model.optimizer.variables]


def set_training_state(model: tf.keras.Model, state: tuple) -> None:
    """Restores ``training_state`` (of this model, or of one built the same way): training then
    starts over from there, through the model's traced train step."""
    model.set_weights(state[0])
    model.optimizer.set_weights(state[1])


def _local_copy(model: tf.keras.Model, build: Callable[[], tf.keras.Model], batches: ExampleBatches) -> tf.keras.Model:
    """``model`` in ordinary variables of this process, built by ``build`` outside any strategy.

    A model trained under parameter servers keeps its variables there, the largest split into
    ``ShardedVariable`` parts: what comes after training (validation figures, the export,
    which must load with plain ``tf.saved_model.load``) works on a copy.
    """
    local = build()
    create_variables(local, batches)
    local.set_weights(whole_weights(model))
    return local


def _progress(cluster: Cluster, name: str, batches: ExampleBatches) -> EpochProgress:
    kind = EpochProgress if cluster.coordinated else Progress
    return kind(name, batches.steps_per_epoch, batches.examples_per_step)


def _fit_inputs(batches: ExampleBatches, first_epoch: int, cluster: Cluster) -> dict:
    """``fit`` arguments: one endless dataset cut into epochs by ``steps_per_epoch`` keeps one
    iterator, where a new one each epoch stalled the loop; under a strategy, each input
    pipeline makes its own slice of every global batch."""
    cluster.check_batch(batch_size=batches.batch_size, what="training")
    if cluster.kind == "default":
        x = batches.epochs(first_epoch)
    elif cluster.coordinated:  # each worker makes its dataset from this function
        x = tf.keras.utils.experimental.DatasetCreator(lambda context: batches.epochs(first_epoch, context))
    else:
        x = cluster.strategy.distribute_datasets_from_function(lambda context: batches.epochs(first_epoch, context))
    return {"x": x, "steps_per_epoch": batches.steps_per_epoch, "initial_epoch": first_epoch}


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
      sharded_variables: under parameter servers, the variables split over them (name ->
        parts); the returned models hold ordinary copies.
    """

    model: tf.keras.Model
    validation_model: tf.keras.Model
    best_epoch: int
    history: List[dict]
    seconds: float
    examples_per_second: Optional[float] = None
    sharded_variables: Dict[str, int] = dataclasses.field(default_factory=dict)


class _EpochChooser(tf.keras.callbacks.Callback):
    """Validates after every epoch, remembers the best, stops after ``patience`` worse ones;
    keeps a backup of each epoch and writes its scalars when the run asks for them."""

    def __init__(self, name: str, validate, schedule: EpochSchedule, progress: EpochProgress, cluster: Cluster,
                 backup: Optional[FitBackup] = None, summaries: Optional[tf.summary.SummaryWriter] = None):
        super().__init__()
        self.name, self.validate, self.schedule, self.progress = name, validate, schedule, progress
        self.cluster, self.backup, self.summaries = cluster, backup, summaries
        self.history, self.best, self.best_epoch, self.best_weights = [], None, 0, None
        self.stopped = False

    def resume(self, state: dict) -> None:
        """Takes up the choice where a backup left it."""
        self.history, self.best, self.best_epoch = state["history"], state["best"], state["best_epoch"]
        self.best_weights, self.stopped = state["best_weights"], state["stopped"]

    def state(self) -> dict:
        return {"history": self.history, "best": self.best, "best_epoch": self.best_epoch, "stopped": self.stopped}

    def on_train_begin(self, logs=None):
        # Keras walks every layer for these lists (50-110 ms a time on ml-100k's models, as long
        # as an item autoencoder's epoch): once per fit, not once per epoch.
        self.trainable = self.model.trainable_variables
        self.variables = self.model.weights

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
        figure = self.cluster.agree(figures[self.schedule.monitor])
        improved = self.best is None or (figure > self.best if self.schedule.higher_is_better else figure < self.best)
        self.history.append({"epoch": epoch, "loss": float(logs["loss"]), "validation": figures})
        log.info("%s epoch %d/%d: loss %.4f, validation %s %.4f%s (%s; %.1fs validation)", self.name, epoch,
                 self.schedule.max_epochs, logs["loss"], self.schedule.monitor, figure, " (best)" if improved else "",
                 self.progress.epoch_summary(), time.perf_counter() - validation_start)
        _write_scalars(self.summaries, epoch, logs["loss"], self.progress, figures)
        if improved:
            self.best, self.best_epoch = figure, epoch
            self.best_weights = [variable.numpy() for variable in self.variables]  # model.get_weights()'s order
        elif epoch - self.best_epoch >= self.schedule.patience:
            self.model.stop_training = self.stopped = True
            log.info("%s: stopped after epoch %d: no better validation %s for %d epoch(s); keeping epoch %d "
                     "(%s %.4f)", self.name, epoch, self.schedule.monitor, epoch - self.best_epoch, self.best_epoch,
                     self.schedule.monitor, self.best)
        if averaged:
            for variable, value in zip(self.trainable, raw):
                variable.assign(value)
        if self.backup is not None:
            self.backup.save(self.model, epoch, self.state(), self.best_weights if improved else None,
                             finished=self.stopped or epoch == self.schedule.max_epochs)


class _EpochLogger(tf.keras.callbacks.Callback):
    """One line per epoch of a refit (which has no validation), its backup and scalars."""

    def __init__(self, name: str, epochs: int, progress: EpochProgress, backup: Optional[FitBackup] = None,
                 summaries: Optional[tf.summary.SummaryWriter] = None):
        super().__init__()
        self.name, self.epochs, self.progress, self.backup, self.summaries = name, epochs, progress, backup, summaries

    def on_epoch_end(self, epoch, logs=None):
        log.info("%s epoch %d/%d: loss %.4f (%s)", self.name, epoch + 1, self.epochs, logs["loss"],
                 self.progress.epoch_summary())
        _write_scalars(self.summaries, epoch + 1, logs["loss"], self.progress)
        if self.backup is not None:
            self.backup.save(self.model, epoch + 1, {}, finished=epoch + 1 == self.epochs)


def _write_scalars(writer: Optional[tf.summary.SummaryWriter], epoch: int, loss: float, progress: EpochProgress,
                   figures: Optional[Dict[str, float]] = None) -> None:
    """TensorBoard scalars of one epoch: loss, training examples/s, validation figures."""
    if writer is None:
        return
    with writer.as_default(step=epoch):
        tf.summary.scalar("loss", loss)
        if progress.examples_per_step:
            tf.summary.scalar("examples_per_second",
                              progress.steps * progress.examples_per_step / progress.last_epoch_seconds)
        for key, value in (figures or {}).items():
            tf.summary.scalar(f"validation/{key}", value)
    writer.flush()


def _resume(name: str, backup: Optional[FitBackup], model: tf.keras.Model, cluster: Cluster) -> Optional[dict]:
    """The backed-up state to go on from (the model restored to it), or None to start afresh.

    Workers restart from the last epoch every one of them backed up (one may have stopped
    an epoch before the others).
    """
    if backup is None:
        return None
    epochs = backup.epochs()
    epoch = cluster.lowest(epochs[-1] if epochs else 0)
    state = backup.restore(model, epoch) if epoch else None
    if state is not None:
        log.info("%s: %s from the backup of epoch %d (%s)", name,
                 "finished" if state["finished"] else "resuming", state["epoch"], backup.directory)
    return state


def fit_choosing_epochs(name: str, build: Callable[[bool], tf.keras.Model], fit_data: Examples,
                        validate: Callable[[tf.keras.Model], Dict[str, float]], schedule: EpochSchedule,
                        full_data: Optional[Examples] = None, run: Optional[TrainingRun] = None,
                        refit_in_place: Optional[Callable[[tf.keras.Model], None]] = None) -> FitResult:
    """Trains, choosing the epoch count on validation.

    Args:
      name: stage name for progress lines (and the run's backup and TensorBoard folders).
      build: refit -> a new compiled model (called inside the strategy scope); refit is
        False while choosing epochs on the fit part, True for the refit on the whole
        training part (models that bake in training data must use the matching part).
      fit_data: model -> the training part minus validation, batched (the model looks its
        feature tables up once, before training).
      validate: model -> validation figures (``schedule.monitor`` among them).
      schedule: epochs, patience, direction, refit.
      full_data: the whole training part, for the refit (required when schedule.refit).
      run: the strategy, backups and TensorBoard folder (default: this process alone, none).
      refit_in_place: for models whose refit differs from the fit only in data this function
        swaps in (e.g. the history a model pools): the refit then retrains the fit's own
        model from its initial weights and optimizer state, reusing its traced train step
        (seconds saved), and the best-epoch model is a copy built with ``build(False)``.

    Returns:
      The trained model, the chosen epoch count and the per-epoch history.
    """
    run = run or TrainingRun()
    strategy = run.cluster.strategy
    if run.cluster.coordinated:
        # Swapping a model's data in place needs variables of open shape, which parameter
        # servers cannot hand to their workers' steps: the refit builds its own model.
        refit_in_place = None
    start = time.perf_counter()
    with strategy.scope():
        model = build(False)
        fit_batches = fit_data(model).for_cluster(run.cluster)
        create_variables(model, fit_batches)
    sharded = sharded_variables(model) if run.cluster.coordinated else {}
    if run.cluster.coordinated:
        log.info("%s: %s", name, ", ".join(f"{variable} in {parts} parts" for variable, parts in sharded.items())
                 or "no variable large enough to split over the parameter servers")
    progress = _progress(run.cluster, name, fit_batches)
    backup = run.backup(name)
    chooser = _EpochChooser(name, validate, schedule, progress, run.cluster, backup, run.summaries(name))
    if schedule.refit and refit_in_place is not None:
        initial = training_state(model)
    state = _resume(name, backup, model, run.cluster)
    if state is not None:
        chooser.resume(state)
    if state is None or not state["finished"]:
        # One fit call for all epochs: a fit call per epoch pays Keras' set-up every time.
        model.fit(epochs=schedule.max_epochs, verbose=0, callbacks=[progress, chooser],
                  **_fit_inputs(fit_batches, state["epoch"] if state else 0, run.cluster))
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
                full_batches = full_data(model).for_cluster(run.cluster)
                create_variables(model, full_batches)
            else:
                validation_model = build(False)
                create_variables(validation_model, fit_batches)
                validation_model.set_weights(chooser.best_weights)
                set_training_state(model, initial)
                refit_in_place(model)
                full_batches = full_data(model).for_cluster(run.cluster)
        train_without_validation(f"{name} refit", model, full_batches, best_epoch, run)
        log.info("%s: refitted on the whole training part for %d epoch(s) (%.1fs)", name, best_epoch,
                 time.perf_counter() - refit_start)
    if run.cluster.coordinated:
        fit_model = validation_model
        validation_model = _local_copy(fit_model, lambda: build(False), fit_batches)
        model = validation_model if model is fit_model else _local_copy(model, lambda: build(True), full_batches)
    return FitResult(model=model, validation_model=validation_model, best_epoch=best_epoch, history=history,
                     seconds=time.perf_counter() - start, examples_per_second=progress.examples_per_second,
                     sharded_variables=sharded)


def train_without_validation(name: str, model: tf.keras.Model, batches: Union[ExampleBatches, ShardedBatches],
                             epochs: int, run: TrainingRun) -> None:
    """Trains ``model`` for a number of epochs chosen before (a refit): no validation, one line,
    backup and scalars per epoch; a backup of this fit name resumes it.

    Args:
      name: the fit's name (progress lines, backup and TensorBoard folders).
      model: a compiled model with its variables (already trained ones keep their traced step).
      batches: its training examples, for the run's cluster.
      epochs: how many.
      run: the strategy, backups and TensorBoard folder.
    """
    backup = run.backup(name)
    state = _resume(name, backup, model, run.cluster)
    if state is None or not state["finished"]:
        progress = _progress(run.cluster, name, batches)
        logger = _EpochLogger(name, epochs, progress, backup, run.summaries(name))
        model.fit(epochs=epochs, verbose=0, callbacks=[progress, logger],
                  **_fit_inputs(batches, state["epoch"] if state else 0, run.cluster))
