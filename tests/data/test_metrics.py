import numpy as np
import pytest

from twostage.data import HeldOutEvaluator, Ratings


def _ratings(pairs):
    users, movies = zip(*pairs)
    return Ratings.from_rows(users, movies, [4.0] * len(pairs), list(range(len(pairs))))


@pytest.fixture
def evaluator():
    catalog = np.asarray(["a", "b", "c", "d", "e"])
    train = _ratings([("u1", "a"), ("u2", "b")])
    test = _ratings([("u1", "b"), ("u1", "c"), ("u2", "e")])
    return HeldOutEvaluator(catalog, train, test)


def test_recall_and_ndcg_by_hand(evaluator):
    # u1 relevant {b, c}; list [c, d] -> 1 hit at rank 1. u2 relevant {e}; list [d, e] -> hit at rank 2.
    ranked = evaluator.column_of(np.asarray([["c", "d"], ["d", "e"]]))
    results = evaluator.ranked_list_metrics(ranked, ks=(1, 2))
    assert results["recall@1"] == pytest.approx((1 / 1 + 0 / 1) / 2)
    assert results["recall@2"] == pytest.approx((1 / 2 + 1 / 1) / 2)
    ideal_u1 = 1 + 1 / np.log2(3)
    assert results["ndcg@2"] == pytest.approx(((1 / ideal_u1) + (1 / np.log2(3))) / 2)


def test_scores_exclude_training_movies_but_accuracy_does_not(evaluator):
    # Each user scores their training movie highest (u1: a, u2: b). Excluded, the lists are
    # u1 [b, c] and u2 [e, d]: every top-1 is a hit. Without exclusion both would miss at 1.
    scores = {"u1": [9.0, 8.0, 7.0, 1.0, 0.0], "u2": [0.0, 9.0, 1.0, 2.0, 3.0]}
    results = evaluator.score_metrics(lambda users: np.asarray([scores[u] for u in users]), ks=(1, 2), accuracy_k=1)
    assert results["recall@1"] == pytest.approx(1.0)
    assert results["recall@2"] == pytest.approx(1.0)
    # top-1 accuracy ranges over all movies, seen included: the training movies win, so no hits.
    assert results["top_1_categorical_accuracy"] == 0.0


def test_top_k_accuracy_counts_pairs(evaluator):
    scores = {"u1": [0.0, 5.0, 4.0, 1.0, 2.0], "u2": [0.0, 1.0, 2.0, 3.0, 4.0]}
    results = evaluator.score_metrics(lambda users: np.asarray([scores[u] for u in users]), ks=(2,), accuracy_k=2)
    assert results["top_2_categorical_accuracy"] == pytest.approx(3 / 3)
    results = evaluator.score_metrics(lambda users: np.asarray([scores[u] for u in users]), ks=(2,), accuracy_k=1)
    assert results["top_1_categorical_accuracy"] == pytest.approx(2 / 3)



def test_batches_of_float32_scores_rank_as_one_float64_batch_and_as_a_loop_over_users():
    rng = np.random.default_rng(4)
    catalog = np.asarray([f"m{i}" for i in range(30)])
    pairs = sorted({(f"u{u}", f"m{m}") for u, m in zip(rng.integers(0, 40, 600), rng.integers(0, 30, 600))})
    rng.shuffle(pairs)  # training pairs in no order of users
    seen, held = set(pairs[:450]), set(pairs[450:])
    evaluator = HeldOutEvaluator(catalog, _ratings(pairs[:450]), _ratings(pairs[450:]))
    row = {user: i for i, user in enumerate(evaluator.user_ids.tolist())}
    distinct = rng.permutation(len(row) * 30).reshape(len(row), 30).astype(np.float32)
    tied = np.round(distinct / distinct.size, 1)

    def scorer(table, dtype):
        return lambda users: table[[row[u] for u in users.tolist()]].astype(dtype)

    for table in (distinct, tied):
        assert evaluator.score_metrics(scorer(table, np.float32), ks=(5, 10), accuracy_k=5, batch_size=7) == \
            evaluator.score_metrics(scorer(table, np.float64), ks=(5, 10), accuracy_k=5, batch_size=1000)
    recalls = []
    for user, i in row.items():
        unseen = [m for m in np.argsort(-distinct[i]) if (user, catalog[m]) not in seen]
        relevant = {m for u, m in held if u == user}
        recalls.append(len(relevant & set(catalog[unseen[:5]])) / min(5, len(relevant)))
    batched = evaluator.score_metrics(scorer(distinct, np.float32), ks=(5,), batch_size=7)
    assert batched["recall@5"] == pytest.approx(np.mean(recalls))
