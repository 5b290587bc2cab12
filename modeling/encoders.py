"""One builder of the per-feature encoders that both towers and the rating models use.

Which layer reads which feature is decided here once: a categorical feature (a user
feature, the release-year bucket) is an :class:`IdEmbedding`; a list-valued string (genres
joined with "|", title words joined with spaces) is a :class:`PooledTokens` mean.
"""

from __future__ import annotations

from typing import Collection, Dict, Optional

from twostage.data.features import USER_FEATURES, FeatureVocabularies
from twostage.modeling.layers import IdEmbedding, PooledTokens

SIDES = ("user", "movie")


def feature_encoders(vocabularies: FeatureVocabularies, feature_dim: int, sides: Collection[str] = SIDES,
                     only: Optional[Collection[str]] = None) -> Dict[str, "IdEmbedding | PooledTokens"]:
    """An encoder layer per feature the data has, named after the feature.

    Args:
      vocabularies: the feature vocabularies (data.features.build_vocabularies); a feature
        without a vocabulary (a source without demographics, titles without repeated words)
        gets no encoder.
      feature_dim: width of each feature's embedding.
      sides: "user" (data.features.USER_FEATURES) and/or "movie" (MOVIE_FEATURES).
      only: if given, the feature names to keep.

    Returns:
      Feature name -> a Keras layer taking [batch] strings (or their looked-up ids) and
      returning [batch, feature_dim]; user features first, then genres, title, year (the
      order the layers are created in, which fixes their initial weights for a seed).
    """
    unknown = set(sides) - set(SIDES)
    if unknown:
        raise ValueError(f"unknown feature side(s) {sorted(unknown)}; use {SIDES}")
    vocabulary = {}
    if "user" in sides:
        vocabulary.update((name, vocabularies.user_features[name]) for name in USER_FEATURES
                          if name in vocabularies.user_features)
    if "movie" in sides:
        vocabulary.update({"movie_genres": vocabularies.genres, "movie_title": vocabularies.title_tokens,
                           "movie_year": vocabularies.years})
    encoders = {}
    for name, values in vocabulary.items():
        if not values or (only is not None and name not in only):
            continue
        if name == "movie_genres":
            encoders[name] = PooledTokens(values, feature_dim, "|", name=name)
        elif name == "movie_title":
            encoders[name] = PooledTokens(values, feature_dim, " ", name=name)
        else:
            encoders[name] = IdEmbedding(values, feature_dim, name=name)
    return encoders

