"""The data of one run, prepared once: loaded, split, a validation part carved, vocabularies built.

Every consumer (both trainers, the evaluation, the benchmarks, the tests) takes one
:class:`Prepared` instead of loading, splitting and building vocabularies again, and asks
it for feature columns and history tables rather than rebuilding them from the raw tables.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Callable, Dict, Optional

import numpy as np

from twostage.data.errors import DataError
from twostage.data.features import (FeatureVocabularies, build_vocabularies, movie_feature_columns,
                                    user_feature_lookup)
from twostage.data.history import RaggedTable, fans, training_history
from twostage.data.schema import MovieLensData, Movies, Ratings, Users
from twostage.data.shards import ExampleShards, check_matches, is_shard_folder, read_shards, vocabulary_fingerprint
from twostage.data.sources import DataConfig, load_dataset
from twostage.data.splits import split

log = logging.getLogger("twostage")
# From this many training examples on, the stages' "auto" settings are chosen for throughput
# (docs/scale.md): measured at ML-25M shape, Adam's dense update of 160k-row tables, pooling
# whole histories and a refit cost most of a run.
LARGE_DATA_EXAMPLES = 5_000_000
# History movies pooled per user and training step where the whole histories cannot be pooled densely.
SAMPLED_HISTORY = 32


def history_sample_for(batch_size: int, catalog_size: int, dense_pooling_cells: int) -> int:
    """The "auto" history sample of a stage: 0 (whole histories) where a batch's users x
    catalog matrix can be pooled densely, else ``SAMPLED_HISTORY``."""
    return 0 if batch_size * catalog_size <= dense_pooling_cells else SAMPLED_HISTORY


@dataclasses.dataclass(frozen=True)
class Prepared:
    """One dataset split into the parts every stage trains, chooses and is scored on.

    Attributes:
      data: the whole dataset (ratings, catalog, users).
      config: how it was loaded and split.
      train: the training part (what the exported model may know).
      fit: the training part minus the validation part (what models are fitted on while
        their settings are chosen).
      validation: the validation part, carved from the training part.
      test: the held-out part (only evaluation reads it).
      vocabulary_part: the ratings the vocabularies are built from (the training part, or the
        fit part when a tuning run treats the fit part as all it may know).
      shards: the fit and training parts' examples as shard files (data.shards), when the
        source is a folder ``twostage prepare`` wrote.
    """

    data: MovieLensData
    config: DataConfig
    train: Ratings
    fit: Ratings
    validation: Ratings
    test: Ratings
    vocabulary_part: Ratings
    shards: Optional[ExampleShards] = None

    @property
    def movies(self) -> Movies:
        return self.data.movies

    @property
    def users(self) -> Optional[Users]:
        return self.data.users

    @property
    def rating_scale(self) -> tuple:
        return self.data.rating_scale

    # functools.cached_property writes to the instance __dict__, which a frozen dataclass allows.
    @functools.cached_property
    def vocabularies(self) -> FeatureVocabularies:
        """Every vocabulary the towers need, from ``vocabulary_part`` and the catalog."""
        return build_vocabularies(self.vocabulary_part, self.movies, self.users)

    def split_record(self) -> dict:
        """The split settings that decide the parts (what shard files are checked against)."""
        return {**dataclasses.asdict(self.config.split), "validation_fraction": self.config.validation_fraction}

    def fingerprint(self) -> str:
        """Of the vocabularies example rows are coded against (data.shards)."""
        return vocabulary_fingerprint(self.vocabularies.user_ids, self.movies.movie_id)

    @functools.cached_property
    def movie_columns(self) -> Dict[str, np.ndarray]:
        """Per-movie feature strings, catalog order (data.features.movie_feature_columns)."""
        return movie_feature_columns(self.movies)

    @functools.cached_property
    def user_inputs(self) -> Callable[[np.ndarray], Dict[str, np.ndarray]]:
        """User ids -> the query tower's input columns (data.features.user_feature_lookup)."""
        return user_feature_lookup(self.users, self.vocabularies)

    @functools.cached_property
    def user_row_columns(self) -> Dict[str, np.ndarray]:
        """The user features of every user-vocabulary row (row 0, the unknown user: all "")."""
        columns = self.user_inputs(np.asarray(("",) + self.vocabularies.user_ids))
        return {name: values for name, values in columns.items() if name != "user_id"}

    def example_rows(self, ratings: Ratings, with_labels: bool = False) -> Dict[str, np.ndarray]:
        """``ratings`` as integer rows: "user_id" the user-vocabulary row (0: unknown) and
        "movie_id" the catalog row (position + 1; 0: not in the catalog), plus "rating"
        ``with_labels`` (modeling.examples gathers the features per batch)."""
        rows = {"user_id": np.maximum(ratings.users.positions(self.vocabularies.user_ids, offset=1), 0),
                "movie_id": ratings.movies.positions(self.movies.movie_id, offset=1).clip(0)}
        if with_labels:
            rows["rating"] = ratings.rating
        return rows

    def history(self, part: Ratings, with_ratings: bool = False) -> RaggedTable:
        """Each vocabulary user's movies in ``part`` (a history table; see data.history)."""
        return training_history(part, self.vocabularies.user_ids, self.movies, with_ratings)

    def fans(self, liked_rating: float) -> RaggedTable:
        """Each catalog movie's training users who rated it at least ``liked_rating``."""
        return fans(self.train, self.vocabularies.user_ids, self.movies, liked_rating)

    def for_tuning(self, nested: bool = False) -> "Prepared":
        """The same data one level down, for choosing settings without the test part.

        The fit part becomes the training part (and the vocabularies' source), the
        validation part the held-out one; with ``nested``, the fit part is split again for
        an inner validation part, so that a whole training run (refit included) can be
        scored on the outer validation part.
        """
        fit, validation = self.fit, self.validation
        if nested:
            fit, validation = split(self.fit, self.config.split.for_validation(self.config.validation_fraction))
        return Prepared(self.data, self.config, train=self.fit, fit=fit, validation=validation, test=self.validation,
                        vocabulary_part=self.fit)


def prepare(config: DataConfig, data: Optional[MovieLensData] = None, for_training: bool = True) -> Prepared:
    """Loads (unless given), splits and carves the validation part of one dataset.

    Args:
      config: the data source, split and validation share; a folder ``twostage prepare``
        wrote stands for the source it was prepared from.
      data: already-loaded data (else loaded from ``config.source``).
      for_training: attach (and check) a prepared folder's shard files, which only training
        reads; scoring a model on another split of the same data needs the source alone.

    Returns:
      The prepared data; vocabularies and feature columns are built when first asked for.
    """
    shards = read_shards(config.source) if is_shard_folder(config.source) else None
    data = data or load_dataset(shards.source if shards else config.source, config.synthetic)
    train, test = split(data.ratings, config.split)
    fit, validation = split(train, config.split.for_validation(config.validation_fraction))
    for part, ratings, share in (("test", test, f"{config.split.test_fraction:g} held out"),
                                 ("validation", validation, f"{config.validation_fraction:g} of training"),
                                 ("fit", fit, "the rest")):
        if len(ratings) == 0:
            raise DataError(f"{len(data.ratings)} rating(s) leave the {part} part ({share}) empty: "
                            f"give more ratings or another --test-fraction", config.source)
    log.info("data %s: %d ratings, %d movies; training on %d (fit %d + validation %d), %d held out",
             data.name, len(data.ratings), len(data.movies), len(train), len(fit), len(validation), len(test))
    prepared = Prepared(data, config, train=train, fit=fit, validation=validation, test=test, vocabulary_part=train)
    if shards is not None and for_training:
        check_matches(shards, prepared.split_record(), prepared.fingerprint())
        log.info("training examples from %d + %d shard file(s) in %s", len(shards.parts["fit"]),
                 len(shards.parts["train"]), shards.folder)
        prepared = dataclasses.replace(prepared, shards=shards)
    return prepared
