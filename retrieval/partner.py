"""The towers' partner: a second two-tower pair trained on the whole training part, served
summed with the first (RetrievalConfig.partner)."""

from __future__ import annotations

import logging
import time
from typing import Callable

from twostage.modeling.training import (TrainingRun, create_variables, set_training_state, train_without_validation,
                                        training_state)
from twostage.retrieval.model import TwoTowerModel

log = logging.getLogger("twostage")


def train_partner(model: TwoTowerModel, build_partner: Callable[[], TwoTowerModel], examples: Callable,
                  epochs: int, run: TrainingRun, pool_whole_training_part: Callable[[TwoTowerModel], None]
                  ) -> TwoTowerModel:
    """Trains the towers' partner through ``model``'s traced train step, ``model`` left as it was.

    Args:
      model: the trained two-tower model (its weights are restored afterwards; its history is
        left the whole training part's).
      build_partner: a new compiled model of the same make from another seed, pooling the
        whole training part.
      examples: model -> the whole training part, batched (shuffled by the partner's seed).
      epochs: how many (the count chosen on validation).
      run: the strategy, backups and TensorBoard folder.
      pool_whole_training_part: sets a model's pooled history to the whole training part's.

    Returns:
      The partner model: initialised by ``build_partner``, trained for ``epochs``.
    """
    start = time.perf_counter()
    trained = model.get_weights()
    with run.cluster.strategy.scope():
        partner = build_partner()
        batches = examples(model).for_cluster(run.cluster)
        create_variables(partner, batches)
    # The partner's initial weights and optimizer state go through the model's traced step
    # (tracing a second model costs more than an epoch here), then move to the partner.
    set_training_state(model, training_state(partner))
    pool_whole_training_part(model)
    train_without_validation("retrieval partner", model, batches, epochs, run)
    partner.set_weights(model.get_weights())
    model.set_weights(trained)
    log.info("retrieval: partner trained for %d epoch(s) (%.1fs)", epochs, time.perf_counter() - start)
    return partner
