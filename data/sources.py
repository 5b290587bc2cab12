"""One entry point for every data source the command line accepts."""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from twostage.data.errors import DataError
from twostage.data.readers import read_movielens
from twostage.data.schema import MovieLensData
from twostage.data.splits import SplitConfig
from twostage.data.synthetic import SyntheticConfig, generate
from twostage.data.tfds_source import load_tfds

SYNTHETIC = "synthetic"
log = logging.getLogger("twostage")


def load_dataset(source: str, synthetic: Optional[SyntheticConfig] = None) -> MovieLensData:
    """Loads ``synthetic``, a TFDS name (``movielens/100k-ratings``) or a local folder/.zip.

    Args:
      source: what ``--data`` says ("synthetic:users=N,movies=N,ratings=N" sizes the generator).
      synthetic: generator settings when ``source`` is "synthetic".

    Returns:
      The dataset in the common schema, one rating per (user, movie): a pair rated again
      keeps its latest rating (``merged_ratings`` counts the earlier ones dropped), as
      MovieLens exports and real logs hold re-ratings.

    Raises:
      DataError: the source cannot be read.
    """
    if not source:
        raise DataError("no data source given: use --data synthetic, --data movielens/100k-ratings or --data PATH")
    if source == SYNTHETIC:
        data = generate(synthetic or SyntheticConfig()).data
    elif source.startswith(SYNTHETIC + ":"):
        data = generate(SyntheticConfig.parse(source[len(SYNTHETIC) + 1:])).data
    elif source.startswith("movielens/"):
        data = load_tfds(source)
    else:
        data = read_movielens(source)
    ratings, merged = data.ratings.latest_per_pair()
    if merged:
        log.info("%s: %d re-rating(s) of a (user, movie) pair merged: each pair keeps its latest rating",
                 data.name, merged)
    return dataclasses.replace(data, ratings=ratings, merged_ratings=data.merged_ratings + merged)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the ratings come from and how they are split.

    Attributes:
      source: "synthetic", a TFDS name (movielens/100k-ratings) or a folder/.zip path.
      split: the train/test split.
      validation_fraction: share of the training part carved out to choose settings.
      synthetic: generator settings when source is "synthetic".
    """

    source: str = SYNTHETIC
    split: SplitConfig = SplitConfig()
    validation_fraction: float = 0.1
    synthetic: SyntheticConfig = SyntheticConfig()
