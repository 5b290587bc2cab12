"""Data for twostage: MovieLens readers, the synthetic generator, splits and metrics.

This package knows no model stage; retrieval and ranking import it, never the reverse.
"""

from twostage.data.errors import DataError, TwostageError
from twostage.data.metrics import HeldOutEvaluator
from twostage.data.schema import MovieLensData, Movies, Ratings, Users
from twostage.data.sources import SYNTHETIC, DataConfig, load_dataset
from twostage.data.splits import SplitConfig, split
from twostage.data.synthetic import SyntheticConfig, generate

__all__ = [
    "DataError", "TwostageError", "HeldOutEvaluator", "MovieLensData", "Movies", "Ratings", "Users",
    "SYNTHETIC", "DataConfig", "load_dataset", "SplitConfig", "split", "SyntheticConfig", "generate",
]
