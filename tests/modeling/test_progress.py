"""Long epochs say how far they are, how fast and how long is left."""

import logging
import time

from twostage.modeling.progress import Progress


def test_progress_lines_carry_steps_rate_and_eta(caplog):
    progress = Progress("retrieval", steps=100, examples_per_step=4096, every=0.0)
    with caplog.at_level(logging.INFO, logger="twostage"):
        progress.on_epoch_begin(0)
        time.sleep(0.01)
        progress.on_train_batch_end(24)
        progress.on_epoch_end(0)
    line = caplog.messages[-1]
    assert line.startswith("retrieval epoch 1: 25/100 steps (25%), ") and "examples/s, epoch ETA " in line
    assert progress.examples_per_second > 0
    assert progress.epoch_summary().endswith("examples/s") and "s training" in progress.epoch_summary()


def test_no_line_before_the_interval_and_no_rate_without_a_fixed_batch(caplog):
    progress = Progress("ranking", steps=10, examples_per_step=None, every=3600.0)
    with caplog.at_level(logging.INFO, logger="twostage"):
        progress.on_epoch_begin(0)
        progress.on_train_batch_end(3)
        progress.on_epoch_end(0)
    assert not caplog.messages and progress.examples_per_second is None
