"""The towers' partners: more two-tower pairs trained on the whole training part, served
summed with the first (RetrievalConfig.partner, .partners)."""

from __future__ import annotations

import logging
import time
from typing import Callable

from twostage.modeling.training import (TrainingRun, create_variables, set_training_state, train_without_validation,
                                        training_state)
from twostage.retrieval.model import TwoTowerModel

log = logging.getLogger("twostage")


def build_partner(build: Callable[[], TwoTowerModel], examples: Callable, run: TrainingRun) -> TwoTowerModel:
    """The towers' partner, built by ``build`` (which seeds it) with its variables, under the run's strategy.

    Built before the first pair trains: seeding (``tf.random.set_seed``) clears the runtime's
    kernel cache, and after the first pair's fit that made the partner's first epoch re-create
    every kernel of the traced step (about 1.2 s on ml-100k).
    """
    with run.cluster.strategy.scope():
        partner = build()
        create_variables(partner, examples(partner).for_cluster(run.cluster))
    return partner


def train_partner(model: TwoTowerModel, partner: TwoTowerModel, examples: Callable, epochs: int,
                  run: TrainingRun, name: str = "retrieval partner") -> TwoTowerModel:
    """Trains the towers' partner through ``model``'s traced train step, ``model`` left as it was.

    The weights swapped in and out include the pooled history's variables, so ``model``
    trains on the partner's history (the whole training part) and gets its own back.

    Args:
      model: the trained two-tower model (its weights and optimizer state are restored afterwards).
      partner: ``build_partner``'s model: of the same make as ``model`` from another seed,
        pooling the whole training part.
      examples: model -> the whole training part, batched (shuffled by the partner's seed).
      epochs: how many (the count chosen on validation).
      run: the strategy, backups and TensorBoard folder.
      name: the fit's name in logs and backups (one per partner).

    Returns:
      ``partner``, trained for ``epochs`` from its initial weights.
    """
    start = time.perf_counter()
    trained = training_state(model)
    batches = examples(model).for_cluster(run.cluster)
    # The partner's initial weights and optimizer state go through the model's traced step
    # (tracing a second model costs more than an epoch here), then move to the partner.
    set_training_state(model, training_state(partner))
    train_without_validation(name, model, batches, epochs, run)
    partner.set_weights(model.get_weights())
    set_training_state(model, trained)
    log.info("%s trained for %d epoch(s) (%.1fs)", name, epochs, time.perf_counter() - start)
    return partner
