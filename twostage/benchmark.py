"""``twostage benchmark ranking``: every ranking architecture, same code, same split."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Optional, Sequence

import numpy as np

from twostage.data.prepared import Prepared
from twostage.modeling.training import TrainingRun
from twostage.ranking.architectures import ARCHITECTURES
from twostage.ranking.config import RankingConfig
from twostage.ranking.train import rating_errors, train_ranking

log = logging.getLogger("twostage")


def benchmark_ranking(prepared: Prepared, config: RankingConfig, architectures: Sequence[str] = ARCHITECTURES,
                      trained: Optional[dict] = None, run: Optional[TrainingRun] = None) -> list[dict]:
    """Trains each architecture on the training part and scores it on the test part.

    Each one chooses its epochs on the validation part carved from the training part, as
    ``twostage train`` does; only the final figures are measured on the test part.

    Args:
      prepared: the data, split and validation part.
      config: the ranking settings (the architecture is replaced in turn).
      architectures: which to run.
      trained: if given, filled with architecture -> TrainedRanking (for the report's lists).
      run: the strategy to train under (default: this process alone).

    Returns:
      One row per architecture: architecture, rmse, mae, fit_seconds, parameters (trainable
        weights: a model's baked-in data, such as its rating history, is not counted), epochs.
    """
    rows = []
    for architecture in architectures:
        log.info("benchmark: %s", architecture)
        start = time.perf_counter()
        ranking = train_ranking(prepared, dataclasses.replace(config, architecture=architecture), run=run)
        seconds = time.perf_counter() - start
        errors = rating_errors(ranking.model, ranking.inputs, prepared.test)
        rows.append({"architecture": architecture, "rmse": errors["rmse"], "mae": errors["mae"],
                     "fit_seconds": seconds, "parameters": trainable_parameters(ranking.model),
                     "epochs": ranking.fit.best_epoch})
        if trained is not None:
            trained[architecture] = ranking
    return rows


def trainable_parameters(model) -> int:
    """Trainable weights of ``model``, each counted once (averaged members share none)."""
    return int(sum(np.prod(variable.shape) for variable in model.trainable_variables))


def format_table(rows: list[dict]) -> str:
    lines = [f"{'architecture':<12} {'RMSE':>7} {'MAE':>7} {'fit s':>7} {'parameters':>11} {'epochs':>6}"]
    for r in rows:
        lines.append(f"{r['architecture']:<12} {r['rmse']:>7.4f} {r['mae']:>7.4f} {r['fit_seconds']:>7.1f} "
                     f"{r['parameters']:>11,} {r['epochs']:>6}")
    return "\n".join(lines)
