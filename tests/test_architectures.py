"""Every selectable ranking architecture builds, trains, saves, reloads and stays in scale."""

import numpy as np
import pytest
import tensorflow as tf

from twostage.data import SplitConfig, split
from twostage.data.features import build_vocabularies
from twostage.data.history import training_history
from twostage.data.training import make_dataset
from twostage.ranking.architectures import ARCHITECTURES, build_rating_model
from twostage.ranking.config import RankingConfig
from twostage.ranking.train import RatingInputs


@pytest.fixture(scope="module")
def setup(small_data):
    train, _ = split(small_data.ratings, SplitConfig())
    vocabularies = build_vocabularies(train, small_data.movies, small_data.users)
    inputs = RatingInputs(small_data.movies, small_data.users, vocabularies)
    return train, vocabularies, inputs, training_history(train, vocabularies.user_ids, small_data.movies)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_architecture_trains_saves_and_reloads(architecture, setup, tmp_path):
    train, vocabularies, inputs, history = setup
    config = RankingConfig(architecture=architecture)

    def build():
        tf.keras.utils.set_random_seed(1)
        model = build_rating_model(architecture, vocabularies, (1.0, 5.0), float(train.rating.mean()), history,
                                   config)
        model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
        return model

    model = build()
    batches = make_dataset(inputs(train, with_labels=True), 512, shuffle_seed=0)
    losses = model.fit(batches, epochs=2, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    sample = {k: tf.constant(v) for k, v in inputs(train.take(np.arange(200))).items()}
    predicted = model(sample).numpy()
    assert predicted.shape == (200, 1) and predicted.min() >= 1.0 and predicted.max() <= 5.0
    assert set(model.feature_names) <= set(sample) - {"user_id", "movie_id"}
    model.save_weights(str(tmp_path / "weights"))
    reloaded = build()
    reloaded(sample)
    reloaded.load_weights(str(tmp_path / "weights"))
    np.testing.assert_allclose(reloaded(sample).numpy(), predicted, rtol=1e-5)


def test_unknown_architecture(setup):
    train, vocabularies, _, history = setup
    with pytest.raises(ValueError, match="unknown ranking architecture 'xgboost'"):
        build_rating_model("xgboost", vocabularies, (1, 5), 3.5, history, RankingConfig())
