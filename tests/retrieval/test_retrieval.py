import numpy as np
import pytest
import tensorflow as tf

from twostage.data import ConfigError, HeldOutEvaluator, Ratings
from twostage.data.features import FeatureVocabularies, build_vocabularies, user_feature_lookup
from twostage.data.history import training_history
from twostage.data.metrics import popularity_scorer
from twostage.retrieval.availability import RatingTimes
from twostage.retrieval.config import IndexConfig, RetrievalConfig
from twostage.retrieval.index import build_brute_force_index, build_scann_index, scann_parameters
from twostage.modeling.layers import PooledTokens
from twostage.modeling.pooling import HistorySplit, RatedMoviesPooling
from twostage.retrieval.model import CandidateTower, QueryTower, TwoTowerModel
from twostage.retrieval.ease_towers import SPREAD_USERS
from twostage.retrieval.train import (MIN_USER_STEPS, candidate_embeddings, catalog_scorer, query_embeddings,
                                      train_retrieval, user_epoch_rows)


def _ids_only(users, movies):
    return FeatureVocabularies(user_ids=tuple(users), movie_ids=tuple(movies), user_features={}, genres=(),
                               title_tokens=(), years=())


def test_towers_embed_known_and_unknown_ids():
    vocabularies = _ids_only(["1", "2"], ["a", "b", "c"])
    query = QueryTower(vocabularies, 8)
    candidate = CandidateTower(vocabularies, 8)
    assert query({"user_id": tf.constant(["1", "2", "never-seen"])}).shape == (3, 8)
    assert candidate({"movie_id": tf.constant(["c"])}).shape == (1, 8)


def test_feature_towers_use_every_feature_the_data_has(small_data):
    vocabularies = build_vocabularies(small_data.ratings, small_data.movies, small_data.users)
    query = QueryTower(vocabularies, 8)
    candidate = CandidateTower(vocabularies, 8)
    assert query.feature_names == ("user_age", "user_gender", "user_occupation", "user_zip")
    assert candidate.feature_names == ("movie_genres", "movie_title", "movie_year")
    inputs = user_feature_lookup(small_data.users, vocabularies)(np.asarray(["1", "unknown"]))
    assert inputs["user_gender"][1] == ""  # unknown users have no features
    with_features = query({k: tf.constant(v) for k, v in inputs.items()}).numpy()
    inputs["user_occupation"] = np.asarray(["", ""])
    assert not np.allclose(with_features, query({k: tf.constant(v) for k, v in inputs.items()}).numpy())


def test_pooled_tokens_average_and_handle_empty_strings():
    genres = PooledTokens(["Action", "Drama"], 4, "|")
    out = genres(tf.constant(["Action|Drama", "Action", ""])).numpy()
    vectors = genres.embedding.embeddings.numpy()
    action, drama = vectors[genres.lookup(tf.constant(["Action", "Drama"])).numpy()]
    np.testing.assert_allclose(out[0], (action + drama) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[1], action, rtol=1e-6)
    np.testing.assert_array_equal(out[2], np.zeros(4))
    titles = PooledTokens(["star", "wars"], 4, " ")
    assert titles(tf.constant(["star wars", "unknown words"])).shape == (2, 4)


def test_history_pooling_leaves_the_target_out():
    train = Ratings.from_rows(["u", "u", "u"], ["a", "b", "c"], [5, 4, 3], [1, 2, 3])
    pooling = RatedMoviesPooling(training_history(train, ["u"], _catalog(["a", "b", "c", "d"])), ["a", "b", "c", "d"], 4)
    rows = tf.constant([1, 1, 0], tf.int64)
    out = pooling(rows, tf.constant(["a", "d", "a"])).numpy()
    vectors = pooling.embedding.embeddings.numpy()
    np.testing.assert_allclose(out[0], vectors[[1, 2]].mean(axis=0), rtol=1e-6)  # "a" left out
    np.testing.assert_allclose(out[1], vectors[[0, 1, 2]].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(out[2], np.zeros(4))  # unknown user: no history
    np.testing.assert_allclose(pooling(rows[:1]).numpy()[0], vectors[[0, 1, 2]].mean(axis=0), rtol=1e-6)


def _catalog(ids):
    from twostage.data.schema import Movies

    return Movies(np.asarray(ids), np.asarray(ids), tuple(() for _ in ids), np.zeros(len(ids), np.int32))


def _batch():
    # Movie "a" is the positive of two queries: for each, the other "a" is an accidental hit.
    return {"user_id": tf.constant(["1", "2", "3"]), "movie_id": tf.constant(["a", "a", "b"]),
            "sampling_probability": tf.constant([0.5, 0.5, 0.1])}


def _softmax_loss(logits, labels):
    logits = logits - logits.max(axis=1, keepdims=True)
    return float(-np.sum(logits[np.arange(len(labels)), labels] - np.log(np.exp(logits).sum(axis=1))))


def test_in_batch_loss_applies_logq_correction_and_drops_accidental_hits():
    vocabularies = _ids_only(["1", "2", "3"], ["a", "b"])
    model = TwoTowerModel(QueryTower(vocabularies, 4), CandidateTower(vocabularies, 4), loss="in-batch")
    assert model.task.factorized_metrics == []  # no top-K metrics while training
    features = _batch()
    q = model.query_tower(features).numpy()
    c = model.candidate_tower(features).numpy()
    logits = q @ c.T - np.log([0.5, 0.5, 0.1])[None, :]  # logQ: popular negatives lowered
    hits = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], bool)  # same movie, not the diagonal
    logits[hits] = -1e9
    expected = _softmax_loss(logits, np.arange(3))
    assert model.compute_loss(features).numpy() == pytest.approx(expected, rel=1e-4)
    uncorrected = q @ c.T
    uncorrected[hits] = -1e9
    assert _softmax_loss(uncorrected, np.arange(3)) != pytest.approx(expected, rel=1e-3)


def test_full_softmax_loss_scores_the_whole_catalog():
    catalog = ["a", "b", "c", "d"]
    vocabularies = _ids_only(["1", "2", "3"], catalog)
    model = TwoTowerModel(QueryTower(vocabularies, 4), CandidateTower(vocabularies, 4), loss="full-softmax",
                          catalog={"movie_id": catalog})
    features = _batch()
    q = model.query_tower(features).numpy()
    c = model.candidate_tower({"movie_id": tf.constant(catalog)}).numpy()
    expected = _softmax_loss(q @ c.T, np.array([0, 0, 1]))
    assert model.compute_loss(features).numpy() == pytest.approx(expected, rel=1e-4)


def test_auto_loss_follows_the_catalog_size():
    config = RetrievalConfig()
    assert config.loss_for(1_682) == "multinomial"
    assert config.loss_for(62_423) == "multinomial"
    assert config.loss_for(1_000_000) == "in-batch"


@pytest.fixture(scope="module")
def trained(small_prepared):
    # Refitted and with two partners, so that the tests below also cover the refit's model and
    # more than one partner.
    return train_retrieval(small_prepared, RetrievalConfig(epochs=8, batch_size=256, patience=2, refit=True,
                                                           partners=2))


@pytest.mark.slow
def test_training_beats_popularity_on_held_out(small_prepared, trained):
    result, train = trained, small_prepared.train
    evaluator = HeldOutEvaluator(small_prepared.movies.movie_id, train, small_prepared.test)
    model = evaluator.score_metrics(catalog_scorer(result.model, small_prepared), ks=(10,))
    popularity = evaluator.score_metrics(popularity_scorer(small_prepared.movies.movie_id, train), ks=(10,))
    assert model["recall@10"] > popularity["recall@10"] * 1.2, (model, popularity)
    assert 1 <= result.fit.best_epoch <= 8
    assert all("recall@100" in h["validation"] for h in result.fit.history)
    assert (result.config.loss, result.config.use_user_id) == ("multinomial", False)  # the defaults here
    assert result.fit.examples_per_second > 0  # in ratings


@pytest.mark.slow
def test_the_refit_serves_towers_trained_on_the_whole_training_part(small_prepared, trained):
    served, best_epoch = trained.model, trained.fit.validation_model
    assert trained.config.refit and served is not best_epoch
    whole, fit = (small_prepared.history(part).row_splits for part in (small_prepared.train, small_prepared.fit))
    np.testing.assert_array_equal(served.query_tower.rated_movies.row_splits.numpy(), whole)
    np.testing.assert_array_equal(best_epoch.query_tower.rated_movies.row_splits.numpy(), fit)
    # Retrained from the same initial weights on more ratings: other weights than the best epoch's.
    movies = [tower.candidate_tower.id_embedding.trainable_weights[0].numpy() for tower in (served, best_epoch)]
    assert movies[0].shape == movies[1].shape and not np.allclose(*movies)


@pytest.mark.slow
def test_a_scorer_that_embeds_its_users_once_scores_as_the_plain_one(small_prepared, trained):
    users = np.asarray(["1", "2", "3", "5"])
    plain = catalog_scorer(trained.model, small_prepared)
    once = catalog_scorer(trained.model, small_prepared, users)
    np.testing.assert_allclose(once(users[[3, 0]]), plain(users[[3, 0]]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="other users"):
        once(np.asarray(["1", "4"]))


@pytest.mark.slow
def test_scann_and_brute_force_agree_on_a_small_catalog(small_prepared, trained):
    result, user_inputs = trained, small_prepared.user_inputs
    embeddings = candidate_embeddings(result.candidate_tower, small_prepared.movie_columns)
    queries = result.query_tower({k: tf.constant(v) for k, v in user_inputs(np.asarray(["1", "2", "3"])).items()})
    _, exact = build_brute_force_index(embeddings, 10)(queries, k=10)
    _, approx = build_scann_index(embeddings, 10)(queries, k=10)  # ScaNN's exact scorer
    np.testing.assert_array_equal(np.sort(exact.numpy(), axis=1), np.sort(approx.numpy(), axis=1))
    # The partitioned, hashed and re-ordered search larger catalogs get, every leaf searched.
    leaves = IndexConfig(num_leaves=4, num_leaves_to_search=4, num_reordering_candidates=40)
    _, tree = build_scann_index(embeddings, 10, leaves)(queries, k=10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.numpy(), tree.numpy())])
    assert overlap >= 0.9


@pytest.mark.slow
def test_query_embeddings_in_chunks_equal_one_call(small_prepared, trained):
    users = np.asarray(small_prepared.vocabularies.user_ids[:7] + ("never-seen",))
    whole = query_embeddings(trained.query_tower, small_prepared.user_inputs, users, batch_size=len(users))
    chunked = query_embeddings(trained.query_tower, small_prepared.user_inputs, users, batch_size=3)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    # The towers', their partners', then EASE's.
    members = 1 + trained.config.partners
    assert whole.shape == (8, members * trained.config.embedding_dim + trained.ease.rank)


@pytest.mark.slow
def test_the_served_towers_score_the_sum_of_the_pair_and_its_partners(small_prepared, trained):
    dim, query, candidate = trained.config.embedding_dim, trained.query_tower, trained.candidate_tower
    assert trained.config.partner and trained.config.partners == 2 == len(trained.partners)
    assert [record["seed"] for record in trained.partners] == [trained.config.seed + 1, trained.config.seed + 2]
    users = {k: tf.constant(v) for k, v in small_prepared.user_inputs(np.asarray(["1", "2", "3"])).items()}
    movies = {k: tf.constant(v[:20]) for k, v in small_prepared.movie_columns.items()}
    served_query, served_movies = query(users).numpy(), candidate(movies).numpy()
    alone = []
    for number, (record, partner_query, partner_candidate) in enumerate(
            zip(trained.partners, query.partners, candidate.partners), 1):
        scale, columns = record["scale"], slice(number * dim, (number + 1) * dim)
        assert 0.5 < scale < 2
        np.testing.assert_allclose(served_query[:, columns], scale * partner_query(users).numpy(), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(served_movies[:, columns], partner_candidate(movies).numpy(), rtol=1e-5, atol=1e-6)
        # Pooling the whole training part, as the first pair does.
        np.testing.assert_array_equal(partner_query.rated_movies.row_splits.numpy(),
                                      small_prepared.history(small_prepared.train).row_splits)
        alone.append(served_query[:, columns] / scale)
    # Each from its own seed's initial weights: no two members alike.
    members = [served_query[:, :dim]] + alone
    assert not any(np.allclose(a, b, atol=1e-3) for i, a in enumerate(members) for b in members[i + 1:])
    with pytest.raises(ValueError, match="attached to .* already"):
        query.attach_partner(query.partners[0])


@pytest.mark.slow
def test_the_score_spread_is_the_served_models_over_the_validation_candidates_model(small_prepared, trained):
    # The refit keeps the fit part's best-epoch model (which chose the candidates) apart.
    users = trained.validation_candidates.user_ids[:SPREAD_USERS]
    chosen_on = np.std(catalog_scorer(trained.fit.validation_model, small_prepared)(users))
    served = np.std(catalog_scorer(trained.model, small_prepared)(users))
    assert trained.score_spread == pytest.approx(served / chosen_on, rel=1e-5)
    assert trained.score_spread > 1.3  # the served scores sum two pairs of towers


def test_scann_parameters_follow_the_catalog_size():
    small = scann_parameters(1_682, 700)
    assert small == {"scoring": "brute-force"}  # exact when tiny
    assert scann_parameters(1_682, 700, IndexConfig(num_leaves=10))["num_leaves_to_search"] == 10
    large = scann_parameters(1_000_000, 10)
    assert large["num_leaves"] == 1000 and large["num_leaves_to_search"] < large["num_leaves"]
    assert scann_parameters(1_000_000, 10, IndexConfig(num_leaves=500))["num_leaves"] == 500


def test_unknown_index_kind():
    with pytest.raises(ConfigError, match="unknown index"):
        IndexConfig(kind="faiss")


def test_indexes_say_whether_they_are_exact():
    """The serving graph asks the NeighbourIndex protocol, not hasattr, whether to drop
    exclusions before the top-k (exact) or search deeper (ScaNN)."""
    embeddings = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    exact, scann = build_brute_force_index(embeddings, 5), build_scann_index(embeddings, 5)
    assert exact.is_exact() and not scann.is_exact()
    queries = tf.constant(embeddings[:2])
    assert exact.scores(queries).shape == (2, 30)
    excluded = tf.one_hot([0, 1], 30, on_value=True, off_value=False)
    _, columns = exact.top_k_excluding(exact.scores(queries), excluded, 3)
    assert 0 not in columns.numpy()[0] and 1 not in columns.numpy()[1]


_TIMED_TRAIN = Ratings.from_rows(["1", "1", "1", "2", "2"], ["a", "b", "c", "b", "d"], [5, 4, 3, 2, 1], [1, 2, 3, 4, 5])


def _history_model(history_targets="held-out", l2=0.0, logits_dtype="float32", timed=False):
    catalog = ["a", "b", "c", "d"]
    vocabularies = _ids_only(["1", "2"], catalog)
    history = training_history(_TIMED_TRAIN, ["1", "2"], _catalog(catalog))
    query = QueryTower(vocabularies, 4, history=history, use_id=False)
    # User 1 last rated at 3, before "d" was first rated (5): "d" is no negative for them.
    times = RatingTimes.of(np.asarray(catalog), np.asarray(["1", "2"]), _TIMED_TRAIN) if timed else None
    return TwoTowerModel(query, CandidateTower(vocabularies, 4), loss="multinomial", catalog={"movie_id": catalog},
                         l2=l2, history_targets=history_targets, logits_dtype=logits_dtype,
                         rating_times=times), catalog


@pytest.mark.parametrize("targets,timed", [("held-out", False), ("all", False), ("all", True)])
def test_multinomial_loss_scores_each_users_held_out_movies_against_the_catalog(targets, timed):
    model, catalog = _history_model(targets, l2=0.01, timed=timed)
    pooling = model.query_tower.rated_movies
    features = {"user_id": tf.constant(["1", "2"])}
    model.compute_loss(features, training=True)  # builds the layers
    # A fixed split: user 1 keeps "a" and holds out "b", "c"; user 2 keeps "d", holds out "b".
    fixed = HistorySplit(tf.constant([0, 0, 0, 1, 1], tf.int64), tf.constant([0, 1, 2, 1, 3], tf.int64),
                         tf.constant([1.0, 0.0, 0.0, 0.0, 1.0]), tf.constant(2, tf.int64))
    pooling.split = lambda rows, rate: fixed
    loss = model.compute_loss(features, training=True).numpy()
    table = pooling.embedding.embeddings.numpy()
    projection = model.query_tower.history_projection.kernel.numpy()
    q = table[[0, 3]] @ projection  # each user's kept movie, pooled and projected; no id embedding
    c = model.candidate_tower({"movie_id": tf.constant(catalog)}).numpy()
    available = np.ones((2, 4), bool)
    if timed:
        available[0, 3] = False  # user 1's softmax leaves "d" out
    logits = q @ c.T
    log_p = logits - np.log((np.exp(logits) * available).sum(axis=1, keepdims=True))
    pairs = [(0, 1), (0, 2), (1, 1)] if targets == "held-out" else [(0, 0), (0, 1), (0, 2), (1, 1), (1, 3)]
    expected = -sum(log_p[u, m] for u, m in pairs)
    expected += 0.01 * sum(np.sum(q[u] ** 2) + np.sum(c[m] ** 2) for u, m in pairs)
    assert loss == pytest.approx(expected, rel=1e-4)


def test_bfloat16_logits_give_the_float32_loss_to_bfloat16_precision_and_train():
    losses, gradients = {}, {}
    for dtype in ("float32", "bfloat16"):
        tf.keras.utils.set_random_seed(3)
        model, _ = _history_model("all", logits_dtype=dtype)
        model.query_tower.rated_movies.split = lambda rows, rate: HistorySplit(
            tf.constant([0, 0, 0, 1, 1], tf.int64), tf.constant([0, 1, 2, 1, 3], tf.int64),
            tf.constant([1.0, 0.0, 1.0, 0.0, 1.0]), tf.constant(2, tf.int64))
        features = {"user_id": tf.constant(["1", "2"])}
        model.compute_loss(features, training=True)
        with tf.GradientTape() as tape:
            losses[dtype] = model.compute_loss(features, training=True)
        gradient = tape.gradient(losses[dtype], model.candidate_tower.trainable_variables)
        gradients[dtype] = np.concatenate([tf.convert_to_tensor(g).numpy().ravel() for g in gradient])
    assert losses["bfloat16"].dtype == tf.float32
    assert losses["bfloat16"].numpy() == pytest.approx(losses["float32"].numpy(), rel=2e-2)
    assert losses["bfloat16"].numpy() != losses["float32"].numpy()  # the product did run in bfloat16
    np.testing.assert_allclose(gradients["bfloat16"], gradients["float32"], rtol=0.1, atol=1e-2)


def test_history_split_holds_out_the_asked_share_and_pools_the_rest():
    model, _ = _history_model()
    model.compute_loss({"user_id": tf.constant(["1", "2"])}, training=True)
    pooling = model.query_tower.rated_movies
    split = pooling.split(tf.constant([1, 2, 0] * 2000, tf.int64), 0.3)
    assert split.num_users.numpy() == 6000
    np.testing.assert_array_equal(split.movies.numpy()[:5], [0, 1, 2, 1, 3])  # user 1, user 2; unknown: none
    assert split.kept.numpy().mean() == pytest.approx(0.7, abs=0.02)
    pooled = pooling(None, split=split).numpy()
    kept, rowids, movies = split.kept.numpy(), split.rowids.numpy(), split.movies.numpy()
    table = pooling.embedding.embeddings.numpy()
    for user in range(6):
        chosen = movies[(rowids == user) & (kept == 1)]
        expected = table[chosen].mean(axis=0) if len(chosen) else np.zeros(4)
        np.testing.assert_allclose(pooled[user], expected, rtol=1e-5, atol=1e-7)


def test_a_tower_without_id_embedding_keeps_no_user_table():
    model, _ = _history_model()
    model.compute_loss({"user_id": tf.constant(["1"])}, training=True)
    assert model.query_tower.id_embedding.embedding is None
    assert not any("user_id" in v.name and "embedding" in v.name for v in model.query_tower.trainable_variables)
    with pytest.raises(ValueError, match="needs a query tower with a history"):
        TwoTowerModel(QueryTower(_ids_only(["1"], ["a"]), 4), CandidateTower(_ids_only(["1"], ["a"]), 4),
                      loss="multinomial", catalog={"movie_id": ["a"]})


def test_user_epochs_repeat_users_with_a_history_to_a_minimum_of_steps():
    history = training_history(Ratings.from_rows(["1", "1", "3"], ["a", "b", "a"], [5, 4, 3], [1, 2, 3]),
                               ["1", "2", "3"], _catalog(["a", "b"]))
    rows = user_epoch_rows(history, batch_size=4)
    assert set(rows) == {1, 3}  # user 2 has no history
    assert len(rows) >= MIN_USER_STEPS * 4 and np.sum(rows == 1) == np.sum(rows == 3)
