import numpy as np
import tensorflow as tf

from twostage.benchmark import format_table, trainable_parameters
from twostage.data.features import FeatureVocabularies
from twostage.ranking.architectures import build_rating_model
from twostage.ranking.autorec import AutoRecBlend, ItemAutoRec, rating_matrix
from twostage.ranking.config import RankingConfig


def test_parameters_count_trainable_weights_not_the_data_a_model_holds():
    vocabularies = FeatureVocabularies(user_ids=("u1", "u2", "u3"), movie_ids=("m1", "m2"), user_features={},
                                       genres=(), title_tokens=(), years=())
    ratings = rating_matrix(np.array([1, 2]), np.array([1, 3]), np.array([4.0, 2.0]), 3, 4)
    autorec = ItemAutoRec(vocabularies, ratings, hidden=5, l2=1.0, rating_scale=(1.0, 5.0))
    base = build_rating_model("rsvd", vocabularies, (1.0, 5.0), 3.0, None, RankingConfig(architecture="rsvd",
                                                                                        embedding_dim=4))
    blend = AutoRecBlend(base, autorec, 0.5)
    blend({"user_id": tf.constant(["u1"]), "movie_id": tf.constant(["m1"])})
    # rsvd: 4 user rows x (4 factors + 1 bias) + 3 movie rows x (4 + 1); the autoencoder: its
    # encoder (4 users x 5 + 5) and decoder (5 x 4 users + 4), not its 3 x 4 rating matrix or codes.
    assert trainable_parameters(blend) == 4 * 5 + 3 * 5 + (4 * 5 + 5) + (5 * 4 + 4)
    table = format_table([{"architecture": "default", "rmse": 0.9, "mae": 0.7, "fit_seconds": 1.0,
                           "parameters": trainable_parameters(blend), "epochs": 3}])
    assert "default" in table and " 84 " in table
