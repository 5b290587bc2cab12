"""Progress of a fit: a line per epoch with its rate, and inside long epochs a line every
half minute with steps done, examples/s and ETA."""

from __future__ import annotations

import logging
import time
from typing import Optional

import tensorflow as tf

log = logging.getLogger("twostage")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class EpochProgress(tf.keras.callbacks.Callback):
    """Measures each epoch's training time and the throughput of the whole fit
    (``examples_per_second``, which the pipeline saves with the export).

    Parameter servers take no batch-level callbacks: there, this is the whole progress.
    """

    def __init__(self, name: str, steps: int, examples_per_step: Optional[int]):
        super().__init__()
        self.name, self.steps, self.examples_per_step = name, steps, examples_per_step
        self.epoch, self.epoch_start = 0, 0.0
        self.trained_steps, self.trained_seconds = 0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_start = epoch + 1, time.perf_counter()

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


class Progress(EpochProgress):
    """Also a progress line every ``every`` seconds inside long epochs: steps done,
    examples/s, ETA."""

    def __init__(self, name: str, steps: int, examples_per_step: Optional[int], every: float = 30.0):
        super().__init__(name, steps, examples_per_step)
        self.every, self.last = every, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
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
