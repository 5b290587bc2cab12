import numpy as np
import pytest
import tensorflow as tf

from twostage.data import HeldOutEvaluator, SplitConfig, split
from twostage.data.metrics import popularity_scorer
from twostage.retrieval.config import IndexConfig, RetrievalConfig
from twostage.retrieval.index import build_brute_force_index, build_scann_index, scann_parameters
from twostage.retrieval.model import CandidateTower, QueryTower, TwoTowerModel
from twostage.retrieval.train import candidate_embeddings, catalog_scorer, train_retrieval


def test_towers_embed_known_and_unknown_ids():
    query = QueryTower(["1", "2"], 8)
    candidate = CandidateTower(["a", "b", "c"], 8)
    assert query({"user_id": tf.constant(["1", "2", "never-seen"])}).shape == (3, 8)
    assert candidate({"movie_id": tf.constant(["c"])}).shape == (1, 8)


def _batch():
    # Movie "a" is the positive of two queries: for each, the other "a" is an accidental hit.
    return {"user_id": tf.constant(["1", "2", "3"]), "movie_id": tf.constant(["a", "a", "b"]),
            "sampling_probability": tf.constant([0.5, 0.5, 0.1])}


def _softmax_loss(logits, labels):
    logits = logits - logits.max(axis=1, keepdims=True)
    return float(-np.sum(logits[np.arange(len(labels)), labels] - np.log(np.exp(logits).sum(axis=1))))


def test_in_batch_loss_applies_logq_correction_and_drops_accidental_hits():
    model = TwoTowerModel(QueryTower(["1", "2", "3"], 4), CandidateTower(["a", "b"], 4), loss="in-batch")
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
    model = TwoTowerModel(QueryTower(["1", "2", "3"], 4), CandidateTower(catalog, 4), loss="full-softmax",
                          catalog_ids=catalog)
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
def trained(small_data):
    train, test = split(small_data.ratings, SplitConfig())
    fit, validation = split(train, SplitConfig().for_validation(0.1))
    config = RetrievalConfig(epochs=8, batch_size=256, patience=2)
    return train, test, train_retrieval(train, fit, validation, small_data.movies, config)


def test_training_beats_popularity_on_held_out(small_data, trained):
    train, test, result = trained
    evaluator = HeldOutEvaluator(small_data.movies.movie_id, train, test)
    model = evaluator.score_metrics(catalog_scorer(result.model, small_data.movies), ks=(10,))
    popularity = evaluator.score_metrics(popularity_scorer(small_data.movies.movie_id, train), ks=(10,))
    assert model["recall@10"] > popularity["recall@10"] * 1.2, (model, popularity)
    assert 1 <= result.fit.best_epoch <= 8
    assert all("recall@100" in h["validation"] for h in result.fit.history)


def test_scann_and_brute_force_agree_on_a_small_catalog(small_data, trained):
    _, _, result = trained
    embeddings = candidate_embeddings(result.candidate_tower, small_data.movies)
    queries = result.query_tower({"user_id": tf.constant(["1", "2", "3"])})
    _, exact = build_brute_force_index(embeddings, 10)(queries, k=10)
    _, approx = build_scann_index(embeddings, 10)(queries, k=10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.numpy(), approx.numpy())])
    assert overlap >= 0.9


def test_scann_parameters_follow_the_catalog_size():
    small = scann_parameters(1_682, 700)
    assert small["num_leaves_to_search"] == small["num_leaves"]  # exhaustive when tiny
    large = scann_parameters(1_000_000, 10)
    assert large["num_leaves"] == 2000 and large["num_leaves_to_search"] < large["num_leaves"]
    assert scann_parameters(1_000_000, 10, IndexConfig(num_leaves=500))["num_leaves"] == 500


def test_unknown_index_kind():
    with pytest.raises(ValueError, match="unknown index"):
        IndexConfig(kind="faiss")
