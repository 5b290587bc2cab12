"""One encoder builder serves both towers and the rating model."""

import pytest
import tensorflow as tf

from twostage.modeling.encoders import feature_encoders
from twostage.modeling.layers import IdEmbedding, PooledTokens
from twostage.ranking.model import RatingModel
from twostage.retrieval.model import CandidateTower, QueryTower


def test_each_feature_gets_the_layer_its_kind_needs(small_prepared):
    encoders = feature_encoders(small_prepared.vocabularies, 8)
    assert list(encoders) == ["user_age", "user_gender", "user_occupation", "user_zip", "movie_genres",
                              "movie_title", "movie_year"]
    assert all(isinstance(encoders[n], IdEmbedding) for n in ("user_age", "user_zip", "movie_year"))
    assert encoders["movie_genres"].separator == "|" and encoders["movie_title"].separator == " "
    assert all(isinstance(encoders[n], PooledTokens) for n in ("movie_genres", "movie_title"))
    columns = {name: values[:5] for name, values in {**small_prepared.movie_columns,
                                                       **small_prepared.user_row_columns}.items()}
    for name, layer in encoders.items():
        assert layer(tf.constant(columns[name])).shape == (5, 8)


def test_sides_and_subsets(small_prepared):
    vocabularies = small_prepared.vocabularies
    assert list(feature_encoders(vocabularies, 4, sides=("user",))) == list(vocabularies.user_features)
    assert list(feature_encoders(vocabularies, 4, sides=("movie",), only=("movie_year",))) == ["movie_year"]
    with pytest.raises(ValueError, match="unknown feature side"):
        feature_encoders(vocabularies, 4, sides=("item",))


def test_a_source_without_demographics_gets_no_user_encoders(small_prepared):
    import dataclasses

    vocabularies = dataclasses.replace(small_prepared.vocabularies, user_features={})
    assert list(feature_encoders(vocabularies, 4)) == ["movie_genres", "movie_title", "movie_year"]


def test_towers_and_ranker_read_the_same_features(small_prepared):
    vocabularies = small_prepared.vocabularies
    query, candidate = QueryTower(vocabularies, 8), CandidateTower(vocabularies, 8)
    ranker = RatingModel(vocabularies, (1.0, 5.0), 3.5)
    assert set(query.feature_names) | set(candidate.feature_names) == set(ranker.feature_names)
