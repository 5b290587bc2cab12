"""Typed configuration of the retrieval stage."""

from __future__ import annotations

import dataclasses
from typing import Optional

from twostage.data.errors import check_at_least, check_choice, check_positive, check_share

OPTIMIZERS = ("adagrad", "adam")
LOSSES = ("auto", "full-softmax", "in-batch")
INDEX_KINDS = ("scann", "brute-force")


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    """How the two-tower model is built and trained.

    Defaults were chosen on a validation part carved from the ml-100k training part
    (see benchmarks/tune.py), never on the test part.

    Attributes:
      embedding_dim: width of the query and candidate embeddings.
      use_user_features: feed the user features the data has to the query tower.
      use_movie_features: feed genres, title words and year to the candidate tower.
      use_history: pool the embeddings of the movies each user rated into the query.
      feature_dim: width of each feature's embedding.
      id_dropout: share of training ids replaced by the unknown id (teaches cold start).
      epochs: most epochs to train; the count used is the best on validation.
      batch_size: examples per step; also the number of in-batch negatives.
      learning_rate: optimizer step size.
      optimizer: "adagrad" or "adam".
      loss: "full-softmax" (every catalog movie is a negative) or "in-batch" (the batch's
        other positives, logQ-corrected); "auto" picks full-softmax for catalogs up to
        ``full_softmax_max_catalog`` movies.
      full_softmax_max_catalog: largest catalog "auto" scores in full every step.
      l2: L2 penalty on the embeddings.
      temperature: softmax temperature (None: 1).
      patience: epochs without a better validation figure before stopping (the full-softmax
        validation curve is smooth, so one is enough).
      monitor: validation metric that picks the epoch count (a key of the metrics dict).
      steps_per_execution: training steps per call into the TF runtime (less Python
        overhead per step).
      refit: after picking the epoch count, retrain on the whole training part. Off by
        default: it doubles training time; instead the best-epoch model is kept and its
        query tower pools the whole training part's history.
      seed: seeds initialisation and shuffling.
    """

    embedding_dim: int = 128
    use_user_features: bool = True
    use_movie_features: bool = True
    use_history: bool = True
    feature_dim: int = 16
    id_dropout: float = 0.0
    epochs: int = 30
    batch_size: int = 4096
    learning_rate: float = 0.01
    optimizer: str = "adam"
    loss: str = "auto"
    full_softmax_max_catalog: int = 50_000
    l2: float = 0.02
    temperature: Optional[float] = None
    patience: int = 1
    monitor: str = "recall@100"
    steps_per_execution: int = 4
    refit: bool = False
    seed: int = 42

    def loss_for(self, catalog_size: int) -> str:
        """The loss actually used for a catalog of this size."""
        if self.loss != "auto":
            return self.loss
        return "full-softmax" if catalog_size <= self.full_softmax_max_catalog else "in-batch"

    def __post_init__(self):
        check_choice("retrieval loss", self.loss, LOSSES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("embedding_dim", "batch_size", "epochs", "feature_dim", "steps_per_execution", "patience"):
            check_at_least(f"retrieval {name}", getattr(self, name))
        check_share("retrieval id_dropout", self.id_dropout)
        check_positive("retrieval learning_rate", self.learning_rate)


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """The nearest-neighbour index over candidate embeddings.

    Attributes:
      kind: "scann" (approximate, needs ScaNN's ops where it is loaded) or "brute-force"
        (exact matmul + top-k, stock TensorFlow ops only).
      num_leaves: ScaNN partitions; None picks it from the catalog size.
      num_leaves_to_search: partitions searched per query; None picks it.
      num_reordering_candidates: exact re-scoring depth; None picks it.
    """

    kind: str = "scann"
    num_leaves: Optional[int] = None
    num_leaves_to_search: Optional[int] = None
    num_reordering_candidates: Optional[int] = None

    def __post_init__(self):
        check_choice("index", self.kind, INDEX_KINDS)
        for name in ("num_leaves", "num_leaves_to_search", "num_reordering_candidates"):
            check_at_least(f"ScaNN {name}", getattr(self, name))
