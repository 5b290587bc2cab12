"""The towers' partner trains through the first pair's traced step and leaves it as it was."""

import numpy as np
import pytest
import tensorflow as tf

from twostage.modeling.examples import ExampleBatches
from twostage.modeling.optimizers import make_optimizer
from twostage.modeling.training import TrainingRun, create_variables
from twostage.retrieval.config import RetrievalConfig
from twostage.retrieval.model import CandidateTower, QueryTower, TwoTowerModel
from twostage.retrieval.partner import build_partner, train_partner
from twostage.retrieval.train import example_tables, user_epoch_rows


@pytest.mark.slow
def test_the_partner_trains_through_the_models_step_and_leaves_the_model_as_it_was(small_prepared):
    config, _ = RetrievalConfig(batch_size=64).for_data(len(small_prepared.fit), len(small_prepared.movies), 10 ** 8)
    histories = {part: small_prepared.history(getattr(small_prepared, part)) for part in ("fit", "train")}

    def build(part, seed, prefix=""):
        tf.keras.utils.set_random_seed(seed)
        model = TwoTowerModel(QueryTower(small_prepared.vocabularies, 8, history=histories[part], use_id=False,
                                         history_hidden=16, name=f"{prefix}query_tower"),
                              CandidateTower(small_prepared.vocabularies, 8, name=f"{prefix}candidate_tower"),
                              loss="multinomial", catalog=small_prepared.movie_columns)
        model.compile(optimizer=make_optimizer("adam", 0.003, 0.99))
        return model

    def examples(model):
        return ExampleBatches({"user_id": user_epoch_rows(histories["train"], config.batch_size)}, config.batch_size,
                              shuffle_seed=7, drop_remainder=True, expand=example_tables(model, small_prepared).expand)

    partner = build_partner(lambda: build("train", 2, "partner_"), examples, TrainingRun())
    model = build("fit", 1)
    create_variables(model, examples(model))
    before = model.get_weights()
    assert train_partner(model, partner, examples, 1, TrainingRun()) is partner
    for kept, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(kept, now)
    # Its own history back (the partner's was swapped in with the weights).
    np.testing.assert_array_equal(model.query_tower.rated_movies.row_splits.numpy(), histories["fit"].row_splits)
    initial = build("train", 2, "partner_")
    create_variables(initial, examples(initial))
    moved = [not np.allclose(a, b) for a, b in zip(initial.get_weights(), partner.get_weights())]
    assert sum(moved) >= len(moved) // 2  # trained from the partner's own initial weights
    np.testing.assert_array_equal(partner.query_tower.rated_movies.row_splits.numpy(), histories["train"].row_splits)
