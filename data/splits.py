"""Train/test splits, and the validation part carved from the training part.

``random`` is exactly ``numpy.random.default_rng(seed).permutation(n)`` over the ratings in
file order, the first ``round((1 - test_fraction) * n)`` rows for training, so that figures
compare with the TFRS tutorials' 80/20 split. ``temporal`` holds out each user's last
ratings by timestamp.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from twostage.data.errors import ConfigError, DataError
from twostage.data.schema import Ratings

METHODS = ("random", "temporal")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How ratings are split.

    Attributes:
      method: "random" or "temporal".
      seed: seed of the random permutation (random split only).
      test_fraction: share of ratings held out (per user, for the temporal split).
    """

    method: str = "random"
    seed: int = 42
    test_fraction: float = 0.2

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown split {self.method!r}; use one of {', '.join(METHODS)}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test fraction must be between 0 and 1, got {self.test_fraction}")

    def for_validation(self, validation_fraction: float) -> "SplitConfig":
        """The config that carves a validation part out of a training part.

        The seed is offset so the validation permutation is not the test permutation again.
        """
        return SplitConfig(self.method, self.seed + 1, validation_fraction)


def split_indices(ratings: Ratings, config: SplitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training and the held-out part.

    Args:
      ratings: all ratings, in source order.
      config: the split.

    Returns:
      (train rows, held-out rows); the random split keeps permutation order.
    """
    n = len(ratings)
    if n < 2:
        raise DataError(f"cannot split {n} rating(s) into training and test parts")
    if config.method == "random":
        order = np.random.default_rng(config.seed).permutation(n)
        cut = int(round((1.0 - config.test_fraction) * n))
        return order[:cut], order[cut:]
    # temporal: sort by user, then time, then file order; hold out each user's last share.
    order = np.lexsort((np.arange(n), ratings.timestamp, ratings.users.codes))
    users = ratings.users.codes[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, n])
    held = np.rint(config.test_fraction * counts).astype(int)
    position = np.arange(n) - np.repeat(starts, counts)
    is_test = position >= np.repeat(counts - held, counts)
    return np.sort(order[~is_test]), np.sort(order[is_test])


def split(ratings: Ratings, config: SplitConfig) -> tuple[Ratings, Ratings]:
    """Splits ratings into (training part, held-out part); see :func:`split_indices`."""
    train, test = split_indices(ratings, config)
    return ratings.take(train), ratings.take(test)
