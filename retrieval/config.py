"""Typed configuration of the retrieval stage."""

from __future__ import annotations

import dataclasses
from typing import Optional

from twostage.data.classic import MAX_EASE_MOVIES
from twostage.data.errors import check_at_least, choose_switch, check_choice, check_positive, check_share
from twostage.data.metrics import VALIDATION_USERS
from twostage.data.prepared import LARGE_DATA_EXAMPLES, history_sample_for

OPTIMIZERS = ("auto", "adagrad", "adam")
LOSSES = ("auto", "full-softmax", "in-batch", "multinomial")
HISTORY_TARGETS = ("held-out", "all")
INDEX_KINDS = ("scann", "brute-force")
LOGITS_DTYPES = ("float32", "bfloat16")
# The multinomial loss's weight average (per-step momentum), chosen on validation parts.
MULTINOMIAL_WEIGHT_AVERAGING = 0.993
# The towers' ensemble partner (a second training on the whole training part) is on by default
# below this many training ratings, where it costs seconds; ML-1M shape (1M) is past it, as
# its end-to-end run is past its time target already (docs/scale.md).
PARTNER_AUTO_EXAMPLES = 500_000
# EASE in the towers eigendecomposes a dense matrix of the smaller of users and movies: on by
# default up to this side (a few seconds), possible up to EASE's own limit when asked for.
EASE_TOWERS_AUTO_SIDE = 8_000


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    """How the two-tower model is built and trained.

    Defaults were chosen on validation parts carved from the training parts of ml-100k,
    generated ML-1M-shape data and generated 600 users x 9,000 movies (benchmarks/tune.py;
    docs/benchmarks.md), never on a test part.

    Attributes:
      embedding_dim: width of the query and candidate embeddings.
      use_user_features: feed the user features the data has to the query tower.
      use_movie_features: feed genres, title words and year to the candidate tower.
      use_history: pool the embeddings of the movies each user rated into the query.
      history_sample: in training, pool at most this many of each user's rated movies per
        step, drawn anew each step (0: the whole history; serving always pools it whole).
        None: the whole history where a batch's users x catalog matrix is small enough to
        pool densely, else 32.
      feature_dim: width of each feature's embedding.
      id_dropout: share of training ids replaced by the unknown id (teaches cold start).
      epochs: most epochs to train; the count used is the best on validation.
      batch_size: examples per step; also the number of in-batch negatives. None: 4096.
      learning_rate: optimizer step size. None: 0.01 for Adam, 0.1 for Adagrad.
      optimizer: "adagrad", "adam" or "auto": Adam, or from ``LARGE_DATA_EXAMPLES`` on
        Adagrad (whose sparse updates touch only the rows of a batch).
      loss: "full-softmax" (every catalog movie is a negative), "in-batch" (the batch's
        other positives, logQ-corrected) or "multinomial" (an example is a user: a random
        part of the history in, the rest scored against the whole catalog); "auto" picks
        multinomial for catalogs up to ``whole_catalog_max`` movies, else in-batch.
      whole_catalog_max: largest catalog "auto" scores in full every step (a step's
        logits are users x catalog).
      history_hidden: hidden width of a residual MLP over the pooled history (0: none). 256
        scored higher than none on ml-100k and 600 x 9,000 validation parts (docs/quality.md).
      history_dropout: share of each user's history the multinomial loss holds out per step.
      logits_dtype: "float32" or "bfloat16": the type of the multinomial loss's [users x
        catalog] logits product (the softmax stays in float32).
      history_targets: what the multinomial loss scores: the "held-out" movies, or "all" of
        the history (the input part too, as Mult-DAE reconstructs its noisy input).
      use_user_id: give the query tower a user-id embedding; None: not with the multinomial
        loss (the query is then the user's features and history alone).
      l2: L2 penalty on the embeddings. None: 0.035 for the multinomial loss (chosen on
        ml-100k, ML-1M-shape and 600 x 9,000 validation parts), 0.02 for the per-rating ones.
      temperature: softmax temperature (None: 1).
      weight_averaging: momentum of an exponential moving average of the weights (per
        step), which is what is validated and kept (0: off). None: 0.993 for the multinomial
        loss (its random history splits make single steps noisy; the average scored higher
        on ml-100k, ML-1M-shape and 600 x 9,000 validation parts, docs/quality.md), off for
        the per-rating losses.
      patience: epochs without a better validation figure before stopping. None: 1 for the
        per-rating losses (the full-softmax validation curve is smooth); for the multinomial
        one 2 with its weight average, 3 without (its random history splits make the raw
        weights' curve noisy).
      monitor: validation metric that picks the epoch count (a key of the metrics dict).
      validation_users: most validation users scored after each epoch (a seeded sample
        beyond it; scoring 160k users x 62k movies every epoch would cost minutes).
      steps_per_execution: training steps per call into the TF runtime (less Python
        overhead per step).
      ease: add EASE's item weights to the towers after training (retrieval.ease_towers):
        two fixed factor tables widen both embeddings, so the index scores two-tower +
        weight x EASE, lambda and weight chosen on validation. None: on where the history is
        used, training is not on parameter servers, the catalog fits EASE and the smaller of
        users and movies is at most ``EASE_TOWERS_AUTO_SIDE``.
      ease_rank: the EASE factors' width (at most the history's rank).
      refit: after picking the epoch count, retrain on the whole training part for that many
        epochs (from the same initial weights, the traced train step reused) and serve that
        model; off, the best-epoch model is served, its query tower pooling the whole training
        part's history. Off by default: on test-shaped ml-100k validation parts it raised
        NDCG@10 by about 1% but added 16-21 s (26-40%) to ml-100k's train_seconds
        (docs/quality.md).
      partner: serve the towers summed with more pairs ("partners"), each trained on the whole
        training part for the chosen epoch count from another seed's initial weights (seed + 1,
        seed + 2, ...), its scores put on the first pair's spread; EASE then counts once per
        member. Partners cannot be validated (they learnt from the validation part): the epoch
        count, EASE and the ranking stage's choices are made with the first pair. None: on for
        the multinomial loss below ``PARTNER_AUTO_EXAMPLES`` training ratings, not on parameter
        servers (on test-like ml-100k validation parts one partner raised NDCG@10 in 9 of 9 runs,
        by 1.1%; level on generated 600 x 9,000; docs/quality.md).
      partners: how many partner pairs ``partner`` trains (seeds seed + 1 onwards). 1: a second
        one added 0.3% NDCG@10 on test-like ml-100k validation parts, level on generated
        600 x 9,000, for 15% more of ml-100k's train_seconds (docs/quality.md).
      as_of_last_rating: ask each user's lists as of their last training rating, leaving out
        movies first rated after it (retrieval.availability; ``evaluate`` then sends that
        time). None: chosen on validation NDCG@10.
      timed_negatives: the multinomial loss leaves out of each user's softmax the movies first
        rated (in the part trained on) after the user's last rating there: they could not
        have been the user's, so they say nothing against them (retrieval.availability.
        RatingTimes). On test-like ml-100k validation parts it raised recall@10 by 0.6%
        (docs/quality.md).
      seed: seeds initialisation and shuffling.
    """

    embedding_dim: int = 128
    use_user_features: bool = True
    use_movie_features: bool = True
    use_history: bool = True
    history_sample: Optional[int] = None
    feature_dim: int = 16
    id_dropout: float = 0.0
    epochs: int = 30
    batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    optimizer: str = "auto"
    loss: str = "auto"
    whole_catalog_max: int = 200_000
    history_hidden: int = 256
    history_dropout: float = 0.5
    history_targets: str = "all"
    logits_dtype: str = "float32"
    use_user_id: Optional[bool] = None
    l2: Optional[float] = None
    temperature: Optional[float] = None
    weight_averaging: Optional[float] = None
    patience: Optional[int] = None
    monitor: str = "recall@100"
    validation_users: int = VALIDATION_USERS
    steps_per_execution: int = 4
    ease: Optional[bool] = None
    ease_rank: int = 256
    refit: bool = False
    partner: Optional[bool] = None
    partners: int = 1
    as_of_last_rating: Optional[bool] = None
    timed_negatives: bool = True
    seed: int = 42

    def for_data(self, num_examples: int, catalog_size: int, dense_pooling_cells: int, num_users: int = 0,
                 parameter_servers: bool = False) -> tuple["RetrievalConfig", dict]:
        """This config with every "auto" setting chosen for the data's size.

        Args:
          num_examples: training examples.
          catalog_size: movies in the catalog.
          dense_pooling_cells: the most users x catalog cells history pooling multiplies densely.
          num_users: users with training ratings (0: not known, and EASE stays off unless asked for).
          parameter_servers: training runs on parameter servers.

        Returns:
          The resolved config and {setting: value} of what was chosen.
        """
        large = num_examples >= LARGE_DATA_EXAMPLES
        chosen = {}
        if self.loss == "auto":
            chosen["loss"] = self.loss_for(catalog_size)
        per_user = chosen.get("loss", self.loss) == "multinomial"
        if self.batch_size is None:
            # Rating losses: not larger with the data, as in-batch negatives make a step's cost
            # grow with the square of the batch (8.2k examples/s at 8192 against 13.3k at
            # 4096). Users: more per step at scale, where embedding the catalog once per step
            # is the cost to spread.
            chosen["batch_size"] = (512 if large else 128) if per_user else 4096
        if self.optimizer == "auto":
            # Adagrad's sparse updates where per-rating steps touch few rows of large tables;
            # a step of users touches the whole catalog anyway.
            chosen["optimizer"] = "adagrad" if large and not per_user else "adam"
        if self.learning_rate is None:
            adagrad = chosen.get("optimizer", self.optimizer) == "adagrad"
            chosen["learning_rate"] = 0.1 if adagrad else 0.003 if per_user else 0.01
        if self.weight_averaging is None:
            chosen["weight_averaging"] = MULTINOMIAL_WEIGHT_AVERAGING if per_user else 0.0
        if self.patience is None:
            # The multinomial loss's random history splits make its raw curve noisy; its
            # weight average's is smooth enough for 2.
            averaged = chosen.get("weight_averaging", self.weight_averaging)
            chosen["patience"] = (2 if averaged else 3) if per_user else 1
        if self.l2 is None:
            chosen["l2"] = 0.035 if per_user else 0.02
        if self.use_user_id is None:
            chosen["use_user_id"] = not per_user
        if self.history_sample is None:
            # Only the per-rating losses pool in training what serving pools whole.
            chosen["history_sample"] = 0 if per_user else history_sample_for(
                chosen.get("batch_size", self.batch_size), catalog_size, dense_pooling_cells)
        partner = choose_switch("retrieval partner", self.partner, lambda automatic: self.partner_possible(
            num_examples, parameter_servers, per_user, automatic))
        if partner is not None:
            chosen["partner"] = partner
        side = min(num_users, catalog_size)
        ease = choose_switch("retrieval ease", self.ease, lambda automatic: self.ease_possible(
            side, catalog_size, parameter_servers, EASE_TOWERS_AUTO_SIDE if automatic else MAX_EASE_MOVIES))
        if ease is not None:
            chosen["ease"] = ease
        return dataclasses.replace(self, **chosen), chosen

    def ease_possible(self, side: int, catalog_size: int, parameter_servers: bool, most_side: int) -> Optional[str]:
        """Why EASE cannot (or, past ``most_side`` users or movies, is not) added to the towers, or None."""
        if not self.use_history:
            return "its query side pools the user's history (use_history)"
        if parameter_servers:
            return "it is not added on parameter servers (its factor tables are not split)"
        if catalog_size > MAX_EASE_MOVIES:
            return f"a catalog of {catalog_size:,} movies is past EASE's {MAX_EASE_MOVIES:,}"
        if not 0 < side <= most_side:
            return (f"it eigendecomposes a {side:,}^2 matrix (the smaller of users and movies), past {most_side:,}"
                    if side else "the number of users is not known")
        return None

    def partner_possible(self, num_examples: int, parameter_servers: bool, per_user: bool, automatic: bool
                         ) -> Optional[str]:
        """Why the towers' partner cannot be (or, ``automatic``, is not by default) trained, or None."""
        if parameter_servers:
            return "it is not trained on parameter servers (it retrains the towers in place)"
        if automatic and not per_user:
            return "it is on by default with the multinomial loss only"
        if automatic and num_examples >= PARTNER_AUTO_EXAMPLES:
            return f"{num_examples:,} training ratings are past its default's {PARTNER_AUTO_EXAMPLES:,}"
        return None

    def loss_for(self, catalog_size: int) -> str:
        """The loss actually used for a catalog of this size."""
        if self.loss != "auto":
            return self.loss
        return "multinomial" if catalog_size <= self.whole_catalog_max else "in-batch"

    def __post_init__(self):
        check_choice("retrieval loss", self.loss, LOSSES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("embedding_dim", "batch_size", "epochs", "feature_dim", "steps_per_execution", "patience",
                     "validation_users", "ease_rank", "partners"):
            check_at_least(f"retrieval {name}", getattr(self, name))
        check_share("retrieval id_dropout", self.id_dropout)
        check_choice("retrieval history_targets", self.history_targets, HISTORY_TARGETS)
        check_choice("retrieval logits_dtype", self.logits_dtype, LOGITS_DTYPES)
        check_share("retrieval history_dropout", self.history_dropout)
        check_positive("retrieval history_dropout", self.history_dropout)
        if self.learning_rate is not None:
            check_positive("retrieval learning_rate", self.learning_rate)
        check_at_least("retrieval history_sample", self.history_sample, 0)
        check_at_least("retrieval history_hidden", self.history_hidden, 0)
        check_at_least("retrieval l2", self.l2, 0)
        if self.weight_averaging is not None:
            check_share("retrieval weight_averaging", self.weight_averaging)


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
