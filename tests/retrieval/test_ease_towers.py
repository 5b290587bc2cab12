"""EASE's item weights carried by the towers: the widened embeddings, and the choice on validation."""

import numpy as np
import pytest
import tensorflow as tf

from twostage.data.classic import EASE_LAMBDAS
from twostage.data.history import RaggedTable
from twostage.retrieval import ease_towers, train as retrieval_train
from twostage.retrieval.config import RetrievalConfig
from twostage.retrieval.ease_towers import EASE_WEIGHTS, EaseFactors
from twostage.retrieval.model import CandidateTower, QueryTower
from twostage.retrieval.train import catalog_scorer, train_retrieval
from twostage.data.features import FeatureVocabularies


def _towers():
    vocabularies = FeatureVocabularies(user_ids=("u1", "u2"), movie_ids=("a", "b", "c"), user_features={},
                                       genres=(), title_tokens=(), years=())
    history = RaggedTable(np.asarray([1, 1, 2]), np.asarray([0, 2, 1]), 3)  # u1: a, c; u2: b
    return (QueryTower(vocabularies, 4, history=history, use_id=False), CandidateTower(vocabularies, 4),
            vocabularies)


def test_the_towers_concatenate_pooled_input_factors_and_output_factors():
    query, candidate, _ = _towers()
    input_factors = np.asarray([[1, 0], [0, 2], [3, 1]], np.float32)
    output_factors = np.asarray([[1, 1], [2, 0], [0, 5]], np.float32)
    users = {"user_id": tf.constant(["u1", "u2", "stranger"])}
    movies = {"movie_id": tf.constant(["a", "b", "c", "not-in-catalog"])}
    before_query, before_candidate = query(users).numpy(), candidate(movies).numpy()
    layer = EaseFactors(input_factors, output_factors)
    query.attach_ease(layer)
    candidate.attach_ease(layer)
    widened_query, widened_candidate = query(users).numpy(), candidate(movies).numpy()
    np.testing.assert_allclose(widened_query[:, :4], before_query)
    np.testing.assert_allclose(widened_candidate[:, :4], before_candidate)
    # u1 rated a and c: (row a + row c) / sqrt(2); u2 rated b; a stranger pools nothing.
    np.testing.assert_allclose(widened_query[:, 4:], [[4 / np.sqrt(2), 1 / np.sqrt(2)], [0, 2], [0, 0]], rtol=1e-6)
    np.testing.assert_allclose(widened_candidate[:, 4:], [[1, 1], [2, 0], [0, 5], [0, 0]])
    # A request that carries the history pools the same.
    given = query({"user_id": tf.constant([""])}, given_history=tf.ragged.constant([[0, 2]], tf.int64)).numpy()
    np.testing.assert_allclose(given[0, 4:], widened_query[0, 4:], rtol=1e-6)
    layer.set_factors(2 * input_factors, output_factors)
    np.testing.assert_allclose(query(users).numpy()[:, 4:], 2 * widened_query[:, 4:], rtol=1e-6)


def test_a_tower_without_a_history_cannot_carry_ease():
    _, _, vocabularies = _towers()
    with pytest.raises(ValueError, match="without one"):
        QueryTower(vocabularies, 4).attach_ease(EaseFactors(np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32)))


@pytest.mark.slow
def test_ease_is_chosen_on_validation_alone_and_served_from_the_training_part(small_prepared, monkeypatch):
    test_pairs = small_prepared.test.pairs() - small_prepared.train.pairs()
    parts, evaluated_on, chosen_with = [], {}, []
    real_part, real_choose = ease_towers.EaseOfPart, retrieval_train.choose_ease
    real_evaluator = retrieval_train.HeldOutEvaluator

    class Spy(real_part):
        def __init__(self, catalog_ids, part, spectrum=False):
            assert not (part.pairs() & test_pairs), "EASE's history holds test ratings"
            parts.append(len(part))
            super().__init__(catalog_ids, part, spectrum)

    class Evaluator(real_evaluator):
        def __init__(self, catalog_ids, train, test, *args):
            super().__init__(catalog_ids, train, test, *args)
            evaluated_on[id(self)] = test

    def choose(catalog_ids, fit, evaluator, tower_scores, rank):
        chosen_with.append(evaluated_on[id(evaluator)])
        return real_choose(catalog_ids, fit, evaluator, tower_scores, rank)

    monkeypatch.setattr(ease_towers, "EaseOfPart", Spy)
    monkeypatch.setattr(retrieval_train, "HeldOutEvaluator", Evaluator)
    monkeypatch.setattr(retrieval_train, "choose_ease", choose)
    config = RetrievalConfig(epochs=6, batch_size=256, patience=2, ease_rank=32)
    trained = train_retrieval(small_prepared, config)
    choice = trained.ease
    assert trained.config.ease and choice.lam in EASE_LAMBDAS and choice.weight in EASE_WEIGHTS
    assert len(chosen_with) == 1 and chosen_with[0] is small_prepared.validation
    figures = choice.validation["weight"]
    assert figures[choice.weight]["ndcg@10"] == max(f["ndcg@10"] for f in figures.values())
    # On these planted tastes EASE alone is far behind the towers: the smallest weight is
    # chosen, and the sum stays within 2% of the towers alone on validation (1.3% with the
    # multinomial softmax's timed negatives, which change the towers here; 1% before).
    assert choice.weight == min(EASE_WEIGHTS), figures
    assert figures[choice.weight]["ndcg@10"] >= 0.98 * choice.validation["towers"]["ndcg@10"]
    # The factors served come from the whole training part.
    assert parts == [len(small_prepared.fit), len(small_prepared.train)]

    monkeypatch.setattr(ease_towers, "EASE_WEIGHTS", (0.4,))
    trained = train_retrieval(small_prepared, config)
    assert trained.ease.weight == 0.4 and trained.model.query_tower.ease.rank == trained.ease.rank == 32
    users = np.asarray(["1", "2"])
    towers_and_ease = catalog_scorer(trained.model, small_prepared)(users)
    layer, trained.model.query_tower.ease, trained.model.candidate_tower.ease = trained.model.query_tower.ease, None, None
    towers = catalog_scorer(trained.model, small_prepared)(users)
    ease = ease_towers.EaseOfPart(small_prepared.movies.movie_id, small_prepared.train, spectrum=True)
    history_scores = ease.pooled(users, layer.input_factors.numpy()) @ layer.output_factors.numpy()[1:].T
    np.testing.assert_allclose(towers_and_ease, towers + history_scores, rtol=1e-4, atol=1e-4)


def test_beside_towers_that_know_nothing_the_choice_stays_close_to_ease_alone(small_prepared):
    # Towers whose scores are noise as wide as EASE's: a weight capped at one spread would keep
    # half of the noise; the grid reaches far enough for the sum to rank as EASE alone nearly does.
    from twostage.data.metrics import HeldOutEvaluator

    evaluator = HeldOutEvaluator(small_prepared.movies.movie_id, small_prepared.fit, small_prepared.validation)
    rng = np.random.default_rng(0)

    def noise(user_ids):
        return rng.normal(size=(len(user_ids), len(small_prepared.movies.movie_id)))

    choice, _ = ease_towers.choose_ease(small_prepared.movies.movie_id, small_prepared.fit, evaluator, noise, 32)
    alone = choice.validation["lambda"][choice.lam]["ndcg@10"]
    assert choice.weight >= 2.5, choice.validation["weight"]
    assert choice.validation["weight"][choice.weight]["ndcg@10"] >= 0.9 * alone
    assert choice.validation["weight"][1.0]["ndcg@10"] < 0.9 * alone
