"""Requests that carry the user's history: an export without per-user tables."""

import numpy as np
import pytest
import tensorflow as tf

from twostage.data.features import USER_FEATURES
from twostage.retrieval.config import IndexConfig
from twostage.serving.artifact.assemble import assemble, assemble_history_module


@pytest.fixture(scope="module")
def trained():
    """Both stages trained once, for an export whose requests carry the history.

    EASE's weights join the towers at a fixed weight (on these planted tastes validation
    would leave them out), so that both exports carry and pool them.
    """
    from conftest import small_pipeline_config
    from twostage.pipeline import train_stages
    from twostage.retrieval import ease_towers

    config = small_pipeline_config(epochs=3).for_request_history()
    assert (config.ranking.use_user_id, config.ranking.history_ratings, config.retrieval.use_user_id) == (
        False, True, False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ease_towers, "EASE_WEIGHTS", (0.25,))
        trained = train_stages(config)
    assert trained.retrieval.query_tower.ease is not None and trained.retrieval.ease.weight == 0.25
    return trained


@pytest.fixture(scope="module")
def keyed_export(trained, tmp_path_factory):
    """The trained models exported keyed by user id (before the history module drops the
    training histories they pool)."""
    import dataclasses

    from twostage.pipeline import export

    serving = dataclasses.replace(trained.config.serving, request_history=False)
    keyed = dataclasses.replace(trained, config=dataclasses.replace(trained.config, serving=serving))
    return export(keyed, str(tmp_path_factory.mktemp("keyed"))).export_path


@pytest.fixture(scope="module")
def both_modules(trained, keyed_export):
    """The same trained models, exported keyed by user id and for history-carrying requests
    (in that order: the second drops the training histories the first pools)."""
    index, serving, prepared = IndexConfig(kind="brute-force"), trained.config.serving, trained.prepared
    retrieval, ranking = trained.retrieval, trained.ranking
    keyed, _, _ = assemble(retrieval.query_tower, retrieval.candidate_tower, ranking.model, prepared, index,
                           serving, trained.final_blend)
    by_history, description = assemble_history_module(retrieval.query_tower, retrieval.candidate_tower,
                                                      ranking.model, prepared, index, serving, trained.final_blend)
    assert description["requests"] == "history"
    return keyed, by_history


def _requests(prepared, user_ids):
    history = prepared.history(prepared.train, with_ratings=True)
    rows = [prepared.vocabularies.user_ids.index(u) + 1 for u in user_ids]
    movies = [prepared.movies.movie_id[history.values[history.row_splits[r]:history.row_splits[r + 1]]] for r in rows]
    ratings = [history.weights[history.row_splits[r]:history.row_splits[r + 1]] for r in rows]
    width = max(len(m) for m in movies)
    ids = np.asarray([list(m) + [""] * (width - len(m)) for m in movies], object)
    values = np.asarray([list(r) + [0.0] * (width - len(r)) for r in ratings], np.float32)
    features = prepared.user_inputs(np.asarray(user_ids))
    return ids, values, {name: tf.constant(features[name]) for name in USER_FEATURES}, movies


@pytest.mark.slow
def test_a_known_users_training_history_in_the_request_gives_the_id_keyed_answer(trained, both_modules):
    keyed, by_history = both_modules
    prepared = trained.prepared
    user_ids = list(prepared.vocabularies.user_ids[:6])
    ids, ratings, features, movies = _requests(prepared, user_ids)
    expected = keyed.recommend(tf.constant(user_ids), k=tf.constant(10))
    got = by_history.recommend(tf.constant(ids), tf.constant(ratings), tf.constant(10), **features)
    np.testing.assert_array_equal(got["movie_id"].numpy(), expected["movie_id"].numpy())
    np.testing.assert_allclose(got["score"].numpy(), expected["score"].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["predicted_rating"].numpy(), expected["predicted_rating"].numpy(), rtol=1e-4)
    for returned, seen in zip(got["movie_id"].numpy().astype(str), movies):
        assert not set(returned) & set(seen)  # the history is excluded
    assert got["personal"].numpy().all()
    # Evaluation's signatures: the exact scores of the whole catalog, and ratings of any movies.
    np.testing.assert_allclose(by_history.retrieval_scores(tf.constant(ids), tf.constant(ratings), **features)[
        "scores"].numpy(), keyed.retrieval_scores(tf.constant(user_ids))["scores"].numpy(), rtol=1e-4, atol=1e-4)
    to_rate = np.asarray([prepared.movies.movie_id[i:i + 3] for i in range(len(user_ids))], object)
    to_rate[0, 2] = ""  # a pad
    rated = by_history.predict_rating(tf.constant(ids), tf.constant(to_rate), tf.constant(ratings), **features)
    expected = keyed.predict_rating(tf.constant(np.repeat(user_ids, 3)), tf.constant(to_rate.ravel()))
    known = rated["known_movie"].numpy()
    assert known.sum() == to_rate.size - 1 and not known[0, 2]
    np.testing.assert_allclose(rated["rating"].numpy()[known], expected["rating"].numpy()[known.ravel()], rtol=1e-4)


@pytest.mark.slow
def test_a_request_time_leaves_out_the_same_movies_in_both_exports(trained, both_modules):
    from twostage.data.availability import first_rated

    keyed, by_history = both_modules
    prepared = trained.prepared
    available_from = first_rated(prepared.movies.movie_id, prepared.train)
    middle = int(np.median(available_from))
    user_ids = list(prepared.vocabularies.user_ids[:6])
    ids, ratings, features, _ = _requests(prepared, user_ids)
    at = tf.constant([middle], tf.int64)
    expected = keyed.recommend_at(tf.constant(user_ids), at, k=tf.constant(10))
    got = by_history.recommend_at(tf.constant(ids), at, tf.constant(ratings), tf.constant(10), **features)
    np.testing.assert_array_equal(got["movie_id"].numpy(), expected["movie_id"].numpy())
    position = {movie: i for i, movie in enumerate(prepared.movies.movie_id)}
    returned = got["movie_id"].numpy().astype(str)
    assert all(available_from[position[m]] <= middle for m in returned.ravel() if m)
    untimed = by_history.recommend(tf.constant(ids), tf.constant(ratings), tf.constant(10), **features)
    assert (untimed["movie_id"].numpy() != got["movie_id"].numpy()).any()


@pytest.mark.slow
def test_a_user_never_seen_is_served_from_the_history_alone(trained, both_modules):
    _, by_history = both_modules
    prepared = trained.prepared
    ids, ratings, _, movies = _requests(prepared, [prepared.vocabularies.user_ids[0]])
    got = by_history.recommend(tf.constant(ids), tf.constant(ratings), tf.constant(5))  # no id, no features
    assert got["personal"].numpy()[0] and not set(got["movie_id"].numpy().astype(str)[0]) & set(movies[0])
    nothing = by_history.recommend(tf.constant([[""]]), k=tf.constant(5))
    assert not nothing["personal"].numpy()[0] and (nothing["movie_id"].numpy() != b"").all()  # popular movies
    again = by_history.recommend(tf.constant(ids), tf.constant(ratings), tf.constant(5), include_seen=True)
    assert set(again["movie_id"].numpy().astype(str)[0]) & set(movies[0])  # the user's own favourites come back


@pytest.mark.slow
def test_the_history_export_keeps_no_user_table_and_loads_in_plain_tensorflow(trained, both_modules,
                                                                               history_export):
    _, by_history = both_modules
    prepared = trained.prepared
    users = len(prepared.vocabularies.user_ids)
    sizes = [v.numpy().shape[0] for v in by_history.variables if v.numpy().ndim]
    assert users + 1 not in sizes and users not in sizes  # no row per user
    assert max(sizes) < len(prepared.train)  # nor a row per training rating
    loaded = tf.saved_model.load(history_export)
    ids, ratings, _, movies = _requests(prepared, [prepared.vocabularies.user_ids[1]])
    empty = tf.constant([], tf.string)
    served = loaded.signatures["serving_default"](
        history_movie_ids=tf.constant(ids), history_ratings=tf.constant(ratings), k=tf.constant(3), user_age=empty,
        user_gender=empty, user_occupation=empty, user_zip=empty, exclude_movie_ids=tf.zeros([0, 0], tf.string),
        include_seen=tf.constant(False))
    returned = served["movie_id"].numpy().astype(str)
    assert returned.shape == (1, 3) and not set(returned[0]) & set(movies[0])


@pytest.fixture(scope="module")
def history_export(trained, both_modules, tmp_path_factory):
    from twostage.pipeline import export

    return export(trained, str(tmp_path_factory.mktemp("history"))).export_path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_every_client_sends_the_history(kind, history_export):
    from fake_tf_serving import FakeGrpcServer, FakeRestServer
    from twostage.serving.clients.grpc import GrpcClient
    from twostage.serving.clients.recommender import Recommender
    from twostage.serving.clients.rest import RestClient
    from twostage.serving.requests import RequestError

    local = Recommender.load(history_export)
    histories = [{"1": 5, "2": 4.5, "3": None}, ["4", "5"]]  # a rating not known; no ratings at all
    here = local.recommend_from_history(histories, k=5, exclude=["6"])
    assert all(len(user) == 5 for user in here)
    assert not {"1", "2", "3", "6"} & {r.movie_id for r in here[0]}
    assert [r.movie_id for r in local.recommend_from_history({"1": 5, "2": 4.5, "3": None}, k=5, exclude=["6"])] == \
        [r.movie_id for r in here[0]]
    with pytest.raises(RequestError, match="knows no|keeps no table of users"):
        local.recommend("1")
    server = (FakeRestServer if kind == "rest" else FakeGrpcServer)(history_export, "twostage")
    try:
        client = (RestClient(server.url, limits=local.limits) if kind == "rest"
                  else GrpcClient(server.target, limits=local.limits))
        remote = client.recommend_from_history(histories, k=5, exclude=["6"])
        assert [[r.movie_id for r in user] for user in remote] == [[r.movie_id for r in user] for user in here]
    finally:
        server.stop()


@pytest.mark.slow
def test_evaluate_scores_a_history_export_as_it_scores_the_id_keyed_one(keyed_export, history_export, tmp_path):
    from twostage.evaluation import EvaluationError, evaluate
    from twostage.serving.clients.recommender import Recommender

    keyed, by_history = evaluate(keyed_export), evaluate(history_export)
    for part in ("retrieval", "two_stage"):
        for key, value in keyed[part].items():
            assert by_history[part][key] == pytest.approx(value, abs=1e-4), (part, key)
    assert by_history["rmse"] == pytest.approx(keyed["rmse"], abs=1e-4)
    assert by_history["baselines"]["popularity"] == keyed["baselines"]["popularity"]
    with pytest.raises(EvaluationError, match="keeps no training history"):
        evaluate(history_export, seed=12345)  # another split: cannot be checked without the history
    from twostage.report import build_report

    report = build_report(history_export, str(tmp_path / "report"), architectures=[])  # the same requests
    assert report["headline"]["two-stage"]["ndcg@10"] == pytest.approx(by_history["two_stage"]["ndcg@10"], abs=1e-4)
    assert report["rmse"][0]["rmse"] == pytest.approx(by_history["rmse"], abs=1e-4) and report["examples"]
    local = Recommender.load(history_export)
    one = local.predict_ratings_from_history({"1": 5, "2": 3}, ["3", "4"])
    both = local.predict_ratings_from_history([{"1": 5, "2": 3}, ["5"]], [["3", "4"], ["6", "7", "8"]])
    assert one.shape == (2,) and [len(r) for r in both] == [2, 3]
    np.testing.assert_allclose(both[0], one, rtol=1e-5)


def test_history_requests_are_checked_before_they_are_sent():
    from twostage.serving.requests import RequestError, RequestLimits

    limits = RequestLimits(max_k=10, num_candidates=20, max_exclusions=5, requests="history")
    inputs, single = limits.history_request({"1": 4, "2": None}, k=3)
    assert single and inputs["history_movie_ids"].tolist() == [["1", "2"]]
    assert inputs["history_ratings"][0, 0] == 4 and np.isnan(inputs["history_ratings"][0, 1])
    inputs, single = limits.history_request([["1"], ["2", "3"]], k=3)
    assert not single and inputs["history_movie_ids"].tolist() == [["1", ""], ["2", "3"]]
    assert inputs["history_ratings"].shape == (0, 0)  # no rating known: the signature's default
    assert limits.history_request([], k=3)[0]["history_movie_ids"].tolist() == [[""]]  # one user, no history
    for bad, message in (({"": 4}, "empty movie id in history 1"), ({"1": "five"}, "rating of movie 1 must be"),
                         ([{"1": 4}, 7], "history 2 must be")):
        with pytest.raises(RequestError, match=message):
            limits.history_request(bad, k=3)
    with pytest.raises(RequestError, match="knows users by id"):
        RequestLimits(10, 20, 5, requests="user_id").expect("history")
    inputs, _ = limits.history_inputs([["1"], ["2"]], features=[{"gender": "f"}, {"age": 30}])
    assert inputs["user_gender"].tolist() == ["F", ""] and inputs["user_age"].tolist() == ["", "25"]  # one per user
    with pytest.raises(RequestError, match="features for 1 users but 2 histories"):
        limits.history_inputs([["1"], ["2"]], features=[{"gender": "F"}])
    inputs, single = limits.history_ratings({"1": 4}, ["2", "3"])
    assert single and inputs["movie_id"].tolist() == [["2", "3"]]
    assert limits.history_ratings([["1"], ["2"]], [["3"], ["4", "5"]])[0]["movie_id"].tolist() == [["3", ""],
                                                                                                   ["4", "5"]]
    with pytest.raises(RequestError, match="1 lists of movies to rate for 2 histories"):
        limits.history_ratings([["1"], ["2"]], [["3"]])
