"""Typed configuration of the ranking stage."""

from __future__ import annotations

import dataclasses
from typing import Optional

from twostage.data.errors import (ConfigError, check_at_least, check_choice, check_positive, check_share,
                                  choose_switch)
from twostage.data.prepared import LARGE_DATA_EXAMPLES, history_sample_for

# The rating models that can be trained: this design's and the seed systems' (ranking.architectures).
ARCHITECTURES = ("default", "svd", "rsvd", "nn", "genre-mlp", "text-cnn", "dcn")
OUTPUTS = ("sigmoid", "clip", "linear")
# Validation ratings predicted each epoch from LARGE_DATA_EXAMPLES on (a seeded sample).
LARGE_VALIDATION_RATINGS = 500_000
# From this many training examples on, training rows are shuffled in chunks of one user's
# rows (``user_chunk``): an epoch there takes minutes, and pooling each distinct user's
# history is most of a step (docs/scale.md).
CHUNKED_EXAMPLES = 500_000
# Most (catalog x users) cells of the dense rating matrix the item autoencoder trains on
# (100M: 400 MB in float32; ML-25M shape has 10,000M).
AUTOREC_MAX_CELLS = 100_000_000
# Most cells where it is on by default: ml-100k has 1.6M and generated 600 x 9,000 5.4M (it
# helped on both). ML-1M shape (22M) is left out: there it cost 55 s of the 120 s its
# end-to-end run may take, and it lost to the refit it replaces on the generated data's
# validation part (docs/quality.md).
AUTOREC_AUTO_CELLS = 10_000_000


@dataclasses.dataclass(frozen=True)
class RankingConfig:
    """The rating model of the design: embeddings concatenated -> 256 -> 64 -> 1.

    Defaults were chosen on a validation part carved from the ml-100k training part
    (see benchmarks/tune.py), never on the test part.

    Attributes:
      architecture: "default" (this design) or one of the seed systems' models
        (ranking.architectures.ARCHITECTURES).
      embedding_dim: width of the user and of the movie embedding.
      hidden_units: the dense stack (relu), before the single output unit.
      use_features: feed the user and movie features the data has.
      use_history: pool the embeddings of the movies the user rated (SVD++'s idea).
      history_ratings: also pool the history weighted by each rating's distance from the mean
        rating (what the user liked, not only what they watched).
      history_sample: in training, pool at most this many rated movies per user and step (0:
        all; None: all where a batch's users x catalog matrix pools densely, else 32).
      biases: add per-user and per-movie biases to the global mean.
      use_user_id: embed the user id (and give it a bias). False: the user side is the user's
        features and history alone; the model keeps no table of users, as an export whose
        requests carry the history needs (default and dcn architectures only).
      output: "sigmoid" (scaled over the rating scale), "clip" or "linear" (clip won on
        validation; docs/benchmarks.md).
      feature_dim: width of each feature's embedding.
      l2: penalty on the mean squared norm of each batch's input embeddings.
      dropout: dropout rate on the concatenated embeddings.
      epochs: most epochs; the count used is the best on validation (lowest RMSE).
      batch_size: examples per step (None: 2048, or 8192 from LARGE_DATA_EXAMPLES on).
      learning_rate: Adam step size.
      user_chunk: shuffle training rows in chunks of at most this many rows of one user, so
        that a batch pools fewer distinct users' histories (0: row by row; rows read from
        shard files keep the files' order). None: 16 from CHUNKED_EXAMPLES on (at ML-1M
        shape it cut an epoch's time by 40% for 0.0006 of validation RMSE), else 0.
      patience: epochs without a better validation RMSE before stopping.
      steps_per_execution: training steps per call into the TF runtime (less Python
        overhead per step; the train step is still traced once, modeling.train_function).
        None: 4, or 1 where several workers train together: their sparse gradients are
        gathered by collectives whose shapes differ from worker to worker, which TensorFlow
        aborts inside a several-step loop.
      validation_ratings: validate each epoch on a seeded sample of at most this many
        validation ratings (0: all). None: all below LARGE_DATA_EXAMPLES, 500,000 from there
        (at ML-25M shape predicting all 2M cost a fifth of an epoch; the RMSE of 500,000
        ratings is known to about 0.001).
      weight_averaging: momentum of an exponential moving average of the weights, which is
        what is validated and kept (0: off).
      refit: after picking the epoch count, retrain on the whole training part. Without
        it, the best-epoch model is kept and its history input then pools the whole training
        part. None: refit below LARGE_DATA_EXAMPLES (where a refit costs seconds, not an
        hour), unless averaged with the item autoencoder (there a refit gained 0.0017 of
        RMSE on a nested ml-100k split for half again the stage's time, docs/quality.md).
      average_refit: serve the mean rating of the refit model and the best-epoch model of
        the fit part (a two-model ensemble that costs no extra training; it beat either
        model alone on a nested validation split, docs/design.md).
      autorec: average the rating with an item autoencoder's (I-AutoRec, ranking.autorec),
        its weight chosen on the validation part. None: on for the default architecture with
        user ids, not on parameter servers, where the [catalog x users] rating matrix has at most
        ``AUTOREC_AUTO_CELLS`` cells (the average cut the RMSE of a nested ml-100k split from
        0.898 to 0.885, and of generated 600 x 9,000 from 0.709 to 0.707, docs/quality.md);
        True: on up to ``AUTOREC_MAX_CELLS``.
      autorec_hidden: width of the autoencoder's code.
      autorec_l2: its L2 penalty on both kernels.
      autorec_learning_rate: its Adam step size.
      autorec_batch_size: movies per step (the default pair with autorec_learning_rate was chosen
        on nested validation: docs/quality.md, "Training time").
      autorec_epochs: most epochs (the count used is the best on validation).
      autorec_patience: epochs without a better validation RMSE before it stops.
      seed: seeds initialisation and shuffling.
    """

    architecture: str = "default"
    embedding_dim: int = 32
    hidden_units: tuple = (256, 64)
    use_features: bool = True
    use_history: bool = True
    history_ratings: bool = False
    history_sample: Optional[int] = None
    biases: bool = True
    use_user_id: bool = True
    output: str = "clip"
    feature_dim: int = 16
    l2: float = 0.0
    dropout: float = 0.3
    epochs: int = 30
    batch_size: Optional[int] = None
    learning_rate: float = 0.005
    user_chunk: Optional[int] = None
    patience: int = 1
    steps_per_execution: Optional[int] = None
    validation_ratings: Optional[int] = None
    weight_averaging: float = 0.985
    refit: Optional[bool] = None
    average_refit: bool = True
    autorec: Optional[bool] = None
    autorec_hidden: int = 300
    autorec_l2: float = 100.0
    autorec_learning_rate: float = 0.006
    autorec_batch_size: int = 512
    autorec_epochs: int = 100
    autorec_patience: int = 3
    seed: int = 42

    def __post_init__(self):
        check_choice("ranking architecture", self.architecture, ARCHITECTURES)
        check_choice("rating output", self.output, OUTPUTS)
        for name in ("embedding_dim", "batch_size", "epochs", "feature_dim", "patience", "steps_per_execution",
                     "autorec_hidden", "autorec_batch_size", "autorec_epochs", "autorec_patience"):
            check_at_least(f"ranking {name}", getattr(self, name))
        check_share("ranking dropout", self.dropout)
        check_share("ranking weight_averaging", self.weight_averaging)
        check_positive("ranking learning_rate", self.learning_rate)
        check_positive("ranking autorec_learning_rate", self.autorec_learning_rate)
        check_at_least("ranking autorec_l2", self.autorec_l2, 0)
        check_at_least("ranking history_sample", self.history_sample, 0)
        check_at_least("ranking user_chunk", self.user_chunk, 0)
        check_at_least("ranking validation_ratings", self.validation_ratings, 0)

    def for_data(self, num_examples: int, catalog_size: int, dense_pooling_cells: int, rating_cells: int = 0,
                 parameter_servers: bool = False, several_workers: bool = False) -> tuple["RankingConfig", dict]:
        """This config with every "auto" (None) setting chosen for the data's size.

        Args:
          num_examples: training examples.
          catalog_size: movies in the catalog.
          dense_pooling_cells: the most users x catalog cells history pooling multiplies densely.
          rating_cells: cells of the item autoencoder's [catalog x users] rating matrix (0:
            not known, and the autoencoder stays off unless asked for).
          parameter_servers: training runs on parameter servers.
          several_workers: several workers train together (multi-worker), all-reducing gradients.

        Returns:
          The resolved config and {setting: value} of what was chosen.
        """
        large = num_examples >= LARGE_DATA_EXAMPLES
        chosen = {}
        self.check_workers(several_workers)
        if self.steps_per_execution is None:
            chosen["steps_per_execution"] = 1 if several_workers else 4
        if self.batch_size is None:
            chosen["batch_size"] = 8192 if large else 2048
        autorec = choose_switch("ranking autorec", self.autorec, lambda automatic: self.autorec_possible(
            rating_cells, parameter_servers, AUTOREC_AUTO_CELLS if automatic else AUTOREC_MAX_CELLS))
        if autorec is not None:
            chosen["autorec"] = autorec
        if self.refit is None:
            chosen["refit"] = not large and not chosen.get("autorec", self.autorec)
        if self.user_chunk is None:
            chosen["user_chunk"] = 16 if num_examples >= CHUNKED_EXAMPLES else 0
        if self.validation_ratings is None:
            chosen["validation_ratings"] = LARGE_VALIDATION_RATINGS if large else 0
        if self.history_sample is None:
            chosen["history_sample"] = history_sample_for(chosen.get("batch_size", self.batch_size), catalog_size,
                                                          dense_pooling_cells)
        return dataclasses.replace(self, **chosen), chosen

    def check_workers(self, several_workers: bool) -> None:
        """ConfigError where several workers would train several steps a call (checked before training)."""
        if several_workers and (self.steps_per_execution or 1) > 1:
            raise ConfigError(f"ranking steps_per_execution {self.steps_per_execution}: several workers train one "
                              "step a call (their gathered sparse gradients differ in shape); leave it unset or 1")

    def autorec_possible(self, rating_cells: int, parameter_servers: bool, most_cells: int = AUTOREC_MAX_CELLS
                         ) -> Optional[str]:
        """Why the item autoencoder cannot (or, past ``most_cells``, is not) averaged in, or None."""
        if self.architecture != "default":
            return f"it is averaged with the default architecture only, not {self.architecture!r}"
        if not self.use_user_id:
            return "it needs user ids (use_user_id), as it keeps a decoder row per user"
        if parameter_servers:
            return "it does not train on parameter servers (its rating matrix is not split)"
        if not 0 < rating_cells <= most_cells:
            return (f"its dense rating matrix would have {rating_cells:,} cells (catalog x users), past "
                    f"{most_cells:,}" if rating_cells else "the size of its rating matrix is not known")
        return None
