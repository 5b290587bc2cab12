"""Data for twostage: MovieLens readers, the synthetic generator, splits, vocabularies and metrics.

No Keras layers and no fit loop (those are twostage.modeling): this package knows no model,
and everything above imports it, never the reverse.
"""

from twostage.data.errors import ConfigError, DataError, TwostageError
from twostage.data.metrics import HeldOutEvaluator
from twostage.data.prepared import Prepared, prepare
from twostage.data.schema import MovieLensData, Movies, Ratings, Users
from twostage.data.sources import SYNTHETIC, DataConfig, load_dataset
from twostage.data.splits import SplitConfig, split
from twostage.data.synthetic import SyntheticConfig, generate

__all__ = [
    "ConfigError", "DataError", "TwostageError", "Prepared", "prepare", "HeldOutEvaluator", "MovieLensData", "Movies", "Ratings", "Users",
    "SYNTHETIC", "DataConfig", "load_dataset", "SplitConfig", "split", "SyntheticConfig", "generate",
]
