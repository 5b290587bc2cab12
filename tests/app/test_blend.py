"""twostage.blend: the final list's blend, fitted on validation data only."""

import numpy as np
import pytest

from twostage.blend import conditional_logit, fit_blend, formula, usual_ratings
from twostage.data import HeldOutEvaluator, Ratings, SplitConfig, split
from twostage.retrieval.train import ValidationCandidates


@pytest.mark.slow
def test_blend_is_fitted_on_validation_only(monkeypatch, tmp_path, small_data):
    """The weights must never see the test part: the evaluator its candidates come with (built by
    the retrieval trainer) is checked."""
    from conftest import small_pipeline_config
    from twostage import pipeline
    from twostage.data import HeldOutEvaluator
    from twostage.retrieval import train as retrieval_train

    test_pairs = split(small_data.ratings, SplitConfig())[1].pairs()
    seen = []

    class Spy(HeldOutEvaluator):
        def __init__(self, catalog_ids, train, test, *sample):
            assert not (test.pairs() & test_pairs), "the blend was scored on test ratings"
            assert not (train.pairs() & test_pairs)
            seen.append(len(test))
            super().__init__(catalog_ids, train, test, *sample)

    monkeypatch.setattr(retrieval_train, "HeldOutEvaluator", Spy)
    result = pipeline.train(small_pipeline_config(index="brute-force", epochs=2), str(tmp_path))
    record = result.metadata["blend"]
    assert seen and set(record["validation"]) == {"retrieval", "blend"}
    # Served on the served scores' spread (the partner's sum, the whole history pooled).
    assert record["score_spread"] > 0
    assert record["weight"] == pytest.approx(record["rating_weight"] * record["score_spread"])


def _lists(rng, num_lists, width, catalog):
    """[num_lists, width] distinct catalog positions per list."""
    return np.stack([rng.choice(catalog, width, replace=False) for _ in range(num_lists)])


def _draw(rng, logits):
    """One position per row, drawn from softmax(logits) (the Gumbel-max trick)."""
    return np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)


def test_the_conditional_logit_recovers_the_weights_lists_were_drawn_with():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 4000, 20))
    valid = np.ones((4000, 20), bool)
    valid[:100, 15:] = False  # short lists
    truth = np.array([1.5, -0.7])
    chosen = _draw(rng, np.where(valid, np.tensordot(truth, features, axes=1), -np.inf))
    positives = np.zeros_like(valid)
    positives[np.arange(4000), chosen] = True
    positives[:50] = False  # lists without a positive add nothing
    np.testing.assert_allclose(conditional_logit(features, valid, positives), truth, atol=0.1)


def test_usual_ratings_are_each_movies_mean_prediction_over_its_lists():
    columns = np.array([[0, 1, -1], [1, 2, 0]])
    predicted = np.array([[4.0, 3.0, 9.9], [5.0, 2.0, 2.0]])
    np.testing.assert_allclose(usual_ratings(columns, predicted, 4), [3.0, 4.0, 2.0, 3.2])  # movie 3: the mean


def _validation(rng, rating_weight, popularity_weight, users=1500, catalog=120, width=30):
    """Validation candidates whose held-out movie (one per user) was drawn from softmax(score +
    rating_weight x rating + popularity_weight x log(1 + fit ratings)), with a real evaluator."""
    columns = _lists(rng, users, width, catalog)
    scores = -np.sort(-rng.normal(size=(users, width)), axis=1)
    predicted = np.clip(np.round(rng.normal(3.5, 1.0, size=(users, width)) * 2) / 2, 1, 5)
    popularity = rng.integers(0, 200, size=catalog)
    held = _draw(rng, scores + rating_weight * predicted + popularity_weight * np.log1p(popularity)[columns])
    user_ids = np.array([f"u{i:05d}" for i in range(users)])  # sorted: the evaluator's order
    movie_ids = np.array([f"m{i}" for i in range(catalog)])
    test = Ratings.from_rows(user_ids, movie_ids[columns[np.arange(users), held]], np.full(users, 4.0),
                             np.zeros(users, np.int64))
    train = Ratings.from_rows(user_ids, movie_ids[np.full(users, catalog - 1)], np.full(users, 4.0),
                              np.zeros(users, np.int64))
    columns[columns == catalog - 1] = -1  # a training movie is never a candidate
    evaluator = HeldOutEvaluator(movie_ids, train, test)
    assert list(evaluator.user_ids) == list(user_ids)
    return ValidationCandidates(user_ids, columns, scores, evaluator), predicted, popularity


def test_the_blend_fitted_on_validation_finds_the_rating_and_popularity_weights():
    rng = np.random.default_rng(1)
    candidates, predicted, popularity = _validation(rng, rating_weight=0.6, popularity_weight=-0.4)
    choice = fit_blend(candidates, predicted, popularity)
    assert choice.rating_weight == pytest.approx(0.6, abs=0.2)
    assert choice.popularity_weight == pytest.approx(-0.4, abs=0.2)
    assert choice.usual_weight == pytest.approx(0.0, abs=0.5)
    assert choice.figures["blend"]["ndcg@10"] > choice.figures["retrieval"]["ndcg@10"]
    # Served: the same weights on scores spread twice as wide, the whole training part's counts.
    served = choice.served(popularity * 2, 2.0)
    assert served.rating_weight == pytest.approx(2 * choice.rating_weight)
    np.testing.assert_allclose(served.movie_terms, 2 * choice.movie_terms(popularity * 2), rtol=1e-5)


def test_a_fit_that_does_not_rank_by_retrieval_keeps_retrievals_order(caplog):
    rng = np.random.default_rng(2)
    candidates, predicted, popularity = _validation(rng, rating_weight=0.0, popularity_weight=0.0)
    reversed_scores = ValidationCandidates(candidates.user_ids, candidates.columns, -candidates.scores,
                                           candidates.evaluator)
    choice = fit_blend(reversed_scores, predicted, popularity)
    assert (choice.rating_weight, choice.popularity_weight, choice.usual_weight) == (0.0, 0.0, 0.0)
    assert "keeping retrieval's order" in caplog.text


def test_the_formula_reads_as_a_sum_and_older_exports_show_the_rating_alone():
    assert formula(0.5, -0.25, 0.125) == ("retrieval score + 0.5 x predicted rating - 0.25 x log(1 + training ratings) "
                                         "+ 0.125 x the movie's usual predicted rating")
    assert formula(0.1) == "retrieval score + 0.1 x predicted rating"
