import numpy as np
import pytest
import tensorflow as tf

from twostage.data import ConfigError, HeldOutEvaluator, Ratings
from twostage.data.features import FeatureVocabularies, build_vocabularies, user_feature_lookup
from twostage.data.history import training_history
from twostage.data.metrics import popularity_scorer
from twostage.retrieval.config import IndexConfig, RetrievalConfig
from twostage.retrieval.index import build_brute_force_index, build_scann_index, scann_parameters
from twostage.modeling.layers import PooledTokens, RatedMoviesPooling
from twostage.retrieval.model import CandidateTower, QueryTower, TwoTowerModel
from twostage.retrieval.train import candidate_embeddings, catalog_scorer, train_retrieval


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
    assert config.loss_for(1_682) == "full-softmax"
    assert config.loss_for(1_000_000) == "in-batch"


@pytest.fixture(scope="module")
def trained(small_prepared):
    return train_retrieval(small_prepared, RetrievalConfig(epochs=8, batch_size=256, patience=2))


@pytest.mark.slow
def test_training_beats_popularity_on_held_out(small_prepared, trained):
    result, train = trained, small_prepared.train
    evaluator = HeldOutEvaluator(small_prepared.movies.movie_id, train, small_prepared.test)
    model = evaluator.score_metrics(catalog_scorer(result.model, small_prepared), ks=(10,))
    popularity = evaluator.score_metrics(popularity_scorer(small_prepared.movies.movie_id, train), ks=(10,))
    assert model["recall@10"] > popularity["recall@10"] * 1.2, (model, popularity)
    assert 1 <= result.fit.best_epoch <= 8
    assert all("recall@100" in h["validation"] for h in result.fit.history)


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
