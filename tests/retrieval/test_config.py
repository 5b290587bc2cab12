"""Settings left "auto" are chosen from the data's size; settings given are kept."""

import pytest

from twostage.data.errors import ConfigError
from twostage.data.prepared import LARGE_DATA_EXAMPLES, SAMPLED_HISTORY
from twostage.ranking.config import CHUNKED_EXAMPLES, LARGE_VALIDATION_RATINGS, RankingConfig
from twostage.retrieval.config import PARTNER_AUTO_EXAMPLES, RetrievalConfig

DENSE = 40_000_000


def test_small_data_keeps_the_tuned_defaults():
    retrieval, _ = RetrievalConfig().for_data(72_000, 1682, DENSE)
    assert (retrieval.batch_size, retrieval.optimizer, retrieval.learning_rate, retrieval.loss,
            retrieval.history_sample, retrieval.patience, retrieval.use_user_id, retrieval.weight_averaging) == (
        128, "adam", 0.003, "multinomial", 0, 2, False, 0.993)
    raw, _ = RetrievalConfig(weight_averaging=0.0).for_data(72_000, 1682, DENSE)
    assert raw.patience == 3  # the raw weights' curve is noisier
    per_rating, _ = RetrievalConfig(loss="full-softmax").for_data(72_000, 1682, DENSE)
    assert (per_rating.batch_size, per_rating.optimizer, per_rating.learning_rate, per_rating.patience,
            per_rating.use_user_id, per_rating.weight_averaging) == (4096, "adam", 0.01, 1, True, 0.0)
    ranking, _ = RankingConfig().for_data(72_000, 1682, DENSE, rating_cells=1683 * 944)
    assert (ranking.batch_size, ranking.refit, ranking.history_sample, ranking.user_chunk,
            ranking.validation_ratings, ranking.autorec, ranking.steps_per_execution) == (2048, False, 0, 0, 0, True, 4)
    # Several workers all-reduce the rating model's sparse gradients one step a call.
    assert RankingConfig().for_data(72_000, 1682, DENSE, several_workers=True)[0].steps_per_execution == 1
    # Without the item autoencoder (its matrix's size unknown), the rating model is refitted.
    alone, _ = RankingConfig().for_data(72_000, 1682, DENSE)
    assert (alone.autorec, alone.refit) == (False, True)
    ml_1m, chosen = RankingConfig().for_data(CHUNKED_EXAMPLES, 3706, DENSE)  # rows grouped by user, all else kept
    assert (ml_1m.user_chunk, ml_1m.batch_size, ml_1m.refit, ml_1m.validation_ratings) == (16, 2048, True, 0)


def test_large_data_chooses_for_throughput_and_says_what():
    _, chosen = RetrievalConfig().for_data(LARGE_DATA_EXAMPLES, 62_423, DENSE)
    assert chosen == {"batch_size": 512, "optimizer": "adam", "learning_rate": 0.003, "loss": "multinomial",
                      "history_sample": 0, "patience": 2, "use_user_id": False, "l2": 0.035,
                      "weight_averaging": 0.993, "partner": False, "ease": False}
    retrieval, chosen = RetrievalConfig().for_data(LARGE_DATA_EXAMPLES, 1_000_000, DENSE)
    assert chosen == {"batch_size": 4096, "optimizer": "adagrad", "learning_rate": 0.1, "loss": "in-batch",
                      "history_sample": SAMPLED_HISTORY, "patience": 1, "use_user_id": True, "l2": 0.02,
                      "weight_averaging": 0.0, "partner": False, "ease": False}
    assert retrieval.history_sample == SAMPLED_HISTORY
    ranking, chosen = RankingConfig().for_data(LARGE_DATA_EXAMPLES, 62_423, DENSE)
    assert chosen == {"steps_per_execution": 4, "batch_size": 8192, "refit": False, "history_sample": SAMPLED_HISTORY,
                      "user_chunk": 16, "validation_ratings": LARGE_VALIDATION_RATINGS, "autorec": False}
    ranking, chosen = RankingConfig().for_data(LARGE_DATA_EXAMPLES, 62_423, DENSE, rating_cells=62_424 * 162_542)
    assert not ranking.autorec  # a 10-billion-cell matrix
    ml_1m, _ = RankingConfig().for_data(CHUNKED_EXAMPLES, 3707, DENSE, rating_cells=3707 * 6041)
    assert not ml_1m.autorec and ml_1m.refit  # on by default up to 10M cells only
    wide, _ = RankingConfig().for_data(90_000, 9000, DENSE, rating_cells=9001 * 601)  # generated 600 x 9,000
    assert wide.autorec and not wide.refit
    forced, _ = RankingConfig(autorec=True).for_data(CHUNKED_EXAMPLES, 3707, DENSE, rating_cells=3707 * 6041)
    assert forced.autorec and not forced.refit
    for why, config, servers in (("parameter servers", RankingConfig(), True),
                                     ("default architecture only", RankingConfig(architecture="svd"), False),
                                     ("needs user ids", RankingConfig(use_user_id=False), False)):
        assert not config.for_data(72_000, 1682, DENSE, 1683 * 944, servers)[0].autorec
        assert why in RankingConfig.autorec_possible(config, 1683 * 944, servers)


def test_given_settings_are_never_overridden():
    given = RetrievalConfig(batch_size=1024, optimizer="adam", learning_rate=0.005, loss="full-softmax",
                            history_sample=0, patience=2, use_user_id=True, l2=0.02, weight_averaging=0.99,
                            ease=False, partner=True)
    resolved, chosen = given.for_data(LARGE_DATA_EXAMPLES * 4, 62_423, DENSE)
    assert resolved == given and chosen == {}
    assert RankingConfig(batch_size=512, refit=True, history_sample=8, user_chunk=0, validation_ratings=0,
                         autorec=False, steps_per_execution=2).for_data(10 ** 8, 10 ** 5, DENSE)[1] == {}
    with pytest.raises(ConfigError, match="ranking steps_per_execution 2: several workers train one step a call"):
        RankingConfig(steps_per_execution=2).for_data(72_000, 1682, DENSE, several_workers=True)
    with pytest.raises(ConfigError, match="ranking autorec: its dense rating matrix would have 10,000,000,000 cells"):
        RankingConfig(autorec=True).for_data(10 ** 8, 10 ** 5, DENSE, rating_cells=10 ** 10)
    with pytest.raises(ConfigError, match="ranking autorec: it does not train on parameter servers"):
        RankingConfig(autorec=True).for_data(72_000, 1682, DENSE, rating_cells=1683 * 944, parameter_servers=True)
    with pytest.raises(ConfigError, match="ranking autorec_hidden must be at least 1"):
        RankingConfig(autorec_hidden=0)
    with pytest.raises(ConfigError, match="history_sample must be at least 0"):
        RetrievalConfig(history_sample=-1)
    with pytest.raises(ConfigError, match="history_dropout must be positive"):
        RetrievalConfig(history_dropout=0.0)
    with pytest.raises(ConfigError, match="unknown retrieval history_targets"):
        RetrievalConfig(history_targets="some")
    with pytest.raises(ConfigError, match="unknown retrieval logits_dtype"):
        RetrievalConfig(logits_dtype="float16")
    with pytest.raises(ConfigError, match="retrieval weight_averaging"):
        RetrievalConfig(weight_averaging=1.5)


def test_ease_in_the_towers_is_on_where_its_eigendecomposition_is_small():
    def ease(config=RetrievalConfig(), users=943, movies=1682, servers=False):
        return config.for_data(72_000, movies, DENSE, num_users=users, parameter_servers=servers)[0].ease

    assert ease()  # ml-100k
    assert ease(users=600, movies=9000) and ease(users=6040, movies=3706)  # the smaller side counts
    assert not ease(users=162_541, movies=62_423)  # ML-25M: past EASE's catalog
    assert not ease(users=70_000, movies=10_700)  # ML-10M: a 10,700^2 eigendecomposition
    assert ease(RetrievalConfig(ease=True), users=70_000, movies=10_700)  # asked for: up to EASE's limit
    assert not ease(users=0) and not ease(servers=True) and not ease(RetrievalConfig(use_history=False))
    for config, servers, why in ((RetrievalConfig(ease=True), True, "not added on parameter servers"),
                                 (RetrievalConfig(ease=True, use_history=False), False, "pools the user's history")):
        with pytest.raises(ConfigError, match=f"retrieval ease: .*{why}.*; leave ease unset or false"):
            config.for_data(72_000, 1682, DENSE, num_users=943, parameter_servers=servers)
    with pytest.raises(ConfigError, match="a catalog of 62,423 movies is past EASE's 30,000"):
        RetrievalConfig(ease=True).for_data(10 ** 7, 62_423, DENSE, num_users=1000)
    with pytest.raises(ConfigError, match="retrieval ease_rank must be at least 1"):
        RetrievalConfig(ease_rank=0)


def test_the_towers_partner_is_on_by_default_for_small_multinomial_runs_only():
    def partner(config=RetrievalConfig(), examples=72_000, movies=1682, servers=False):
        return config.for_data(examples, movies, DENSE, num_users=943, parameter_servers=servers)[0].partner

    assert partner() and partner(examples=PARTNER_AUTO_EXAMPLES - 1, movies=9000)  # ml-100k, 600 x 9,000
    assert not partner(examples=PARTNER_AUTO_EXAMPLES)  # ML-1M shape and up
    assert not partner(RetrievalConfig(loss="full-softmax")) and not partner(servers=True)
    assert partner(RetrievalConfig(partner=True, loss="in-batch"), examples=LARGE_DATA_EXAMPLES)  # asked for
    assert not partner(RetrievalConfig(partner=False))
    with pytest.raises(ConfigError, match="retrieval partner: it is not trained on parameter servers.*"
                                          "leave partner unset or false"):
        partner(RetrievalConfig(partner=True), servers=True)
    assert RetrievalConfig().partners == 1
    with pytest.raises(ConfigError, match="retrieval partners must be at least 1"):
        RetrievalConfig(partners=0)
