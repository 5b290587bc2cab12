"""EASE and ALS, the classic baselines every evaluation and report shows."""

import numpy as np
import pytest

from twostage.data import classic
from twostage.data.metrics import HeldOutEvaluator, popularity_scorer
from twostage.data.schema import Ratings


def test_ease_is_the_closed_form_by_hand():
    """Three users, three movies, lambda 1: X'X + I = 2I + J, whose inverse is 0.5 I - 0.1 J, so
    every off-diagonal weight is -(-0.1) / 0.4 = 0.25 and the diagonal is zero."""
    ratings = Ratings.from_rows(["u1", "u1", "u2", "u2", "u3", "u3"], ["a", "b", "b", "c", "a", "c"],
                                [5, 4, 3, 5, 2, 4], [1, 2, 3, 4, 5, 6])
    history, users = classic.interaction_matrix(np.asarray(["a", "b", "c"]), ratings)
    weights = classic.ease_weights(history, lam=1.0)
    np.testing.assert_allclose(weights, [[0, 0.25, 0.25], [0.25, 0, 0.25], [0.25, 0.25, 0]], atol=1e-6)
    score = classic.ease_scorer(np.asarray(["a", "b", "c"]), ratings, lam=1.0)
    np.testing.assert_allclose(score(np.asarray(["u1", "stranger"])), [[0.25, 0.25, 0.5], [0, 0, 0]], atol=1e-6)


def test_ease_refuses_a_catalog_too_large_for_its_matrix(monkeypatch):
    from twostage.data.errors import TwostageError

    monkeypatch.setattr(classic, "MAX_EASE_MOVIES", 2)
    with pytest.raises(TwostageError, match="dense 3\\^2 item matrix"):
        classic.ease_scorer(np.asarray(["a", "b", "c"]), Ratings.from_rows(["u"], ["a"], [1], [1]), 1.0)


@pytest.mark.slow
def test_both_beat_popularity_on_generated_data(small_prepared):
    evaluator = HeldOutEvaluator(small_prepared.movies.movie_id, small_prepared.train, small_prepared.test)
    popularity = evaluator.score_metrics(popularity_scorer(small_prepared.movies.movie_id, small_prepared.train),
                                         ks=(10,))["recall@10"]
    for fit in (classic.fit_ease, classic.fit_als):
        model = fit(small_prepared)
        recall = evaluator.score_metrics(model.score, ks=(10,))["recall@10"]
        assert recall > popularity * 1.2, (model.name, recall, popularity)
        assert model.setting in model.validation


def test_settings_are_chosen_without_the_test_part(small_prepared, monkeypatch):
    test_pairs = small_prepared.test.pairs() - small_prepared.train.pairs()
    seen = []

    class Spy(HeldOutEvaluator):
        def __init__(self, catalog_ids, train, test, *sample):
            assert not (test.pairs() & test_pairs) and not (train.pairs() & test_pairs)
            seen.append(len(test))
            super().__init__(catalog_ids, train, test, *sample)

    monkeypatch.setattr(classic, "HeldOutEvaluator", Spy)
    model = classic.fit_ease(small_prepared, lambdas=(10.0, 100.0))
    assert seen == [len(small_prepared.validation)] and set(model.validation) == {10.0, 100.0}
    best = max(model.validation, key=lambda lam: model.validation[lam]["ndcg@10"])
    assert model.setting == best


@pytest.mark.parametrize("shape", [(30, 50), (60, 20)])  # fewer users than movies, and more
def test_ease_spectrum_factors_score_unseen_movies_as_the_closed_form(shape):
    rng = np.random.default_rng(1)
    dense = (rng.random(shape) < 0.3).astype(np.float32)
    dense[:, 0] = 0  # a movie nobody rated scores 0
    history = classic.sparse.csr_matrix(dense)
    spectrum = classic.EaseSpectrum.of(history)
    assert np.all(np.diff(spectrum.eigenvalues) <= 0) and len(spectrum.eigenvalues) <= min(shape)
    for lam in (1.0, 30.0):
        input_factors, output_factors = spectrum.factors(lam, rank=100)
        scores = (history @ input_factors) @ output_factors.T
        unseen = dense == 0
        # rtol: X'X is decomposed in float32 (more users than movies).
        np.testing.assert_allclose(scores[unseen], (history @ classic.ease_weights(history, lam))[unseen], atol=1e-5,
                                   rtol=1e-4)
    narrow = spectrum.factors(30.0, rank=5)
    assert narrow[0].shape == narrow[1].shape == (shape[1], 5) and not narrow[1][0].any()


@pytest.mark.parametrize("users", [30, 60])  # from the spectrum (fewer users than movies), and from X'X
def test_ease_of_a_part_scores_every_movie_as_the_closed_form_for_each_lambda(users):
    rng = np.random.default_rng(2)
    dense = (rng.random((users, 40)) < 0.3).astype(np.float32)
    dense[:, 0] = 0  # a movie nobody rated
    rows, cols = np.nonzero(dense)
    ratings = Ratings.from_rows([f"u{r}" for r in rows], [f"m{c}" for c in cols], np.full(len(rows), 4),
                                np.arange(len(rows)))
    catalog = np.asarray([f"m{c}" for c in range(40)])
    part = classic.EaseOfPart(catalog, ratings)
    assert (part.spectrum is not None) == (users < 40)
    history, user_ids = classic.interaction_matrix(catalog, ratings)
    asked = np.concatenate([user_ids[::-1], ["stranger"]])  # any order; an unknown user scores zeros
    for lam in (1.0, 30.0):
        closed_form = np.asarray(history @ classic.ease_weights(history, lam))
        scores = part.scorer(lam)(asked)
        np.testing.assert_allclose(scores[:-1], closed_form[::-1], atol=1e-5)
        assert not scores[-1].any()
