"""Feature vocabularies and feature columns, built once from the training data.

The models turn these into ``StringLookup`` / ``TextVectorization`` layers, so the
vocabularies are saved inside the exported model and never recomputed at serving time.
Every feature is optional: a source without demographics (the CSV family) simply has no
user features, and the towers fall back to ids.

All categorical features are strings; an empty string means "unknown" and maps to the
out-of-vocabulary row.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Dict, Optional

import numpy as np

from twostage.data.schema import Movies, Ratings, Users

# Every per-user table (the pooled and the excluded histories, the serving embeddings and
# lookups) keeps this row for a user the model has never seen, and the users of
# FeatureVocabularies.user_ids in rows 1..n: a StringLookup's one out-of-vocabulary index
# comes first, so looking an id up gives its row in every table.
UNKNOWN_USER_ROW = 0
USER_FEATURES = ("user_age", "user_gender", "user_occupation", "user_zip")
MOVIE_FEATURES = ("movie_genres", "movie_title", "movie_year")
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}[^)]*\)\s*$")
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
YEAR_BUCKET = 5  # release years are grouped in 5-year bins


def title_text(title: str) -> str:
    """A title as the text tower reads it: year removed, lower case, words split by spaces.

    "American President, The (1995)" -> "american president the".
    """
    return " ".join(_NON_WORD.sub(" ", _YEAR_SUFFIX.sub("", title).lower()).split())


def year_bucket(year: int) -> str:
    return str(int(year) // YEAR_BUCKET * YEAR_BUCKET) if year > 0 else ""


def zip_prefix(zip_code: str) -> str:
    """The first two characters: a region, without identifying anybody."""
    return zip_code.strip()[:2].upper()


def user_feature_columns(users: Users) -> Dict[str, np.ndarray]:
    """Per-user feature strings, in ``users`` order."""
    return {
        "user_id": users.user_id,
        "user_age": np.asarray([str(a) if a > 0 else "" for a in users.age.tolist()], dtype=str),
        "user_gender": users.gender.astype(str),
        "user_occupation": users.occupation.astype(str),
        "user_zip": np.asarray([zip_prefix(z) for z in users.zip_code.tolist()], dtype=str),
    }


def movie_feature_columns(movies: Movies) -> Dict[str, np.ndarray]:
    """Per-movie feature strings, in catalog order (genres joined with '|')."""
    return {
        "movie_id": movies.movie_id,
        "movie_genres": movies.genre_strings(),
        "movie_title": np.asarray([title_text(t) for t in movies.title.tolist()], dtype=str),
        "movie_year": np.asarray([year_bucket(y) for y in movies.year.tolist()], dtype=str),
    }


@dataclasses.dataclass(frozen=True)
class FeatureVocabularies:
    """Every vocabulary the towers need.

    Attributes:
      user_ids: users of the training part.
      movie_ids: the catalog.
      user_features: feature name -> known values (empty when the source has no users).
      genres: genre names.
      title_tokens: title words seen at least ``min_title_count`` times.
      years: release-year buckets.
    """

    user_ids: tuple
    movie_ids: tuple
    user_features: Dict[str, tuple]
    genres: tuple
    title_tokens: tuple
    years: tuple

    @property
    def has_user_features(self) -> bool:
        return bool(self.user_features)


def build_vocabularies(train: Ratings, movies: Movies, users: Optional[Users],
                       min_title_count: int = 2) -> FeatureVocabularies:
    """Vocabularies from the training part and the catalog.

    Args:
      train: training ratings (the user vocabulary is their users).
      movies: the catalog.
      users: user demographics, or None.
      min_title_count: rarer title words are left out (they would be noise).

    Returns:
      The vocabularies, deterministic (sorted) for a given input.
    """
    user_ids = tuple(train.users.used().tolist())
    user_features = {}
    if users is not None:
        columns = user_feature_columns(users)
        in_train = np.isin(users.user_id, user_ids)
        for name in USER_FEATURES:
            values = sorted(set(columns[name][in_train].tolist()) - {""})
            if values:
                user_features[name] = tuple(values)
    movie_columns = movie_feature_columns(movies)
    genres = sorted({g for gs in movies.genres for g in gs})
    counts = Counter(token for text in movie_columns["movie_title"].tolist() for token in text.split())
    tokens = sorted(t for t, c in counts.items() if c >= min_title_count)
    years = sorted(set(movie_columns["movie_year"].tolist()) - {""})
    return FeatureVocabularies(user_ids=user_ids, movie_ids=tuple(movies.movie_id.tolist()),
                               user_features=user_features, genres=tuple(genres), title_tokens=tuple(tokens),
                               years=tuple(years))


def user_feature_lookup(users: Optional[Users], vocabularies: FeatureVocabularies):
    """Returns user ids -> the query tower's input columns (features "" where unknown)."""
    table = {}
    if vocabularies.has_user_features:
        columns = user_feature_columns(users)
        names = list(vocabularies.user_features)
        for row, user in enumerate(users.user_id.tolist()):
            table[user] = tuple(columns[name][row] for name in names)

    def lookup(user_ids: np.ndarray) -> Dict[str, np.ndarray]:
        user_ids = np.asarray(user_ids, dtype=str)
        out = {"user_id": user_ids}
        for i, name in enumerate(vocabularies.user_features):
            out[name] = np.asarray([table[u][i] if u in table else "" for u in user_ids.tolist()], dtype=str)
        return out

    return lookup
