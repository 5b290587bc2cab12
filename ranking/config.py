"""Typed configuration of the ranking stage."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RankingConfig:
    """The rating model of the design: embeddings concatenated -> 256 -> 64 -> 1.

    Defaults were chosen on a validation part carved from the ml-100k training part
    (see benchmarks/tune.py), never on the test part.

    Attributes:
      embedding_dim: width of the user and of the movie embedding.
      hidden_units: the dense stack (relu), before the single output unit.
      epochs: most epochs; the count used is the best on validation (lowest RMSE).
      batch_size: examples per step.
      learning_rate: Adam step size.
      patience: epochs without a better validation RMSE before stopping.
      refit: after picking the epoch count, retrain on the whole training part.
      seed: seeds initialisation and shuffling.
    """

    embedding_dim: int = 32
    hidden_units: tuple = (256, 64)
    epochs: int = 30
    batch_size: int = 1024
    learning_rate: float = 0.001
    patience: int = 3
    refit: bool = True
    seed: int = 42

    def __post_init__(self):
        if self.embedding_dim < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("embedding_dim, batch_size and epochs must be positive")
