import os

import numpy as np
import pytest

from twostage.data import SplitConfig, split
from twostage.serving.artifact.layout import versions
from twostage.serving.clients.recommender import ModelError, Recommender, RequestError

# Every test here trains a model (or loads one trained for the module).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recommender(exported_model):
    return Recommender.load(exported_model.export_path)


@pytest.fixture(scope="module")
def train_part(small_data):
    return split(small_data.ratings, SplitConfig())[0]


def test_results_are_real_recommendations(recommender, small_data):
    recs = recommender.recommend("7", k=10)
    assert len(recs) == 10
    ids = [r.movie_id for r in recs]
    assert len(set(ids)) == 10 and set(ids) <= set(small_data.movies.movie_id)
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    title = dict(zip(small_data.movies.movie_id, small_data.movies.title))
    assert all(r.title == title[r.movie_id] for r in recs)
    assert all(1.0 <= r.predicted_rating <= 5.0 for r in recs)


def test_training_movies_never_come_back(recommender, train_part):
    users = np.unique(train_part.user_id)[:40]
    for user, recs in zip(users, recommender.recommend(list(users), k=20)):
        seen = set(train_part.movie_id[train_part.user_id == user])
        assert seen and not seen & {r.movie_id for r in recs}


def test_history_matches_the_training_part(recommender, train_part):
    user = train_part.user_id[0]
    assert sorted(recommender.training_history([user])[0]) == sorted(train_part.movie_id[train_part.user_id == user])


def test_final_score_blends_retrieval_predicted_rating_and_the_movie_term(recommender):
    blend = recommender.metadata["blend"]
    assert set(blend["validation"]) == {"retrieval", "blend"}
    weight = blend["weight"]
    assert weight == pytest.approx(blend["rating_weight"] * blend["score_spread"])
    terms = dict(zip(recommender.catalog()[0], recommender._loaded.movie_terms.numpy()))
    assert len(set(terms.values())) > 1  # the term differs between movies
    for r in recommender.recommend("3", k=10):
        assert r.score == pytest.approx(r.retrieval_score + weight * r.predicted_rating + terms[r.movie_id],
                                        rel=1e-5, abs=1e-5)


def test_exported_ratings_match_the_in_memory_model(recommender, exported_model, small_data):
    from twostage.ranking.train import predict_ratings

    test = split(small_data.ratings, SplitConfig())[1].take(np.arange(300))
    in_memory = predict_ratings(exported_model.rating_model, exported_model.rating_inputs, test)
    np.testing.assert_allclose(recommender.predict_rating(test.user_id, test.movie_id), in_memory, rtol=1e-5,
                               atol=1e-5)


def test_predict_rating_matches_the_recommendation(recommender):
    rec = recommender.recommend("3", k=1)[0]
    assert recommender.predict_rating(["3"], [rec.movie_id])[0] == pytest.approx(rec.predicted_rating, abs=1e-5)


def test_unknown_user_gets_popular_movies(recommender, train_part):
    recs = recommender.recommend("no-such-user", k=5)
    counts = {m: c for m, c in zip(*np.unique(train_part.movie_id, return_counts=True))}
    top = sorted(counts.values(), reverse=True)[:5]
    assert sorted((counts[r.movie_id] for r in recs), reverse=True) == top


def test_bad_requests_are_clear(recommender):
    with pytest.raises(RequestError, match="k must be a whole number from 1 to 20"):
        recommender.recommend("1", k=0)
    with pytest.raises(RequestError, match="k must be"):
        recommender.recommend("1", k=21)
    with pytest.raises(RequestError, match="no user ids"):
        recommender.recommend([], k=3)
    with pytest.raises(RequestError, match="2 user ids but 1 movie ids"):
        recommender.predict_rating(["1", "2"], ["3"])


def test_load_accepts_root_model_and_version_folders(exported_model):
    version_dir = exported_model.export_path
    model_dir = os.path.dirname(version_dir)
    root = os.path.dirname(model_dir)
    for path in (root, model_dir, version_dir):
        assert Recommender.load(path).path == version_dir


def test_load_errors(tmp_path):
    with pytest.raises(ModelError, match="no such model folder"):
        Recommender.load(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="no exported model here"):
        Recommender.load(str(tmp_path))


def test_versions_ignore_incomplete_folders(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "2").mkdir()  # half-written: no saved_model.pb
    (tmp_path / ".export-abc").mkdir()
    assert versions(str(tmp_path)) == [1]


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    import tensorflow as tf

    from twostage.serving.artifact import export

    class Module:
        def signatures(self):
            return {}

    def interrupted_save(module, path, **kwargs):
        open(os.path.join(path, "saved_model.pb"), "w").close()  # a half-written model
        raise KeyboardInterrupt

    monkeypatch.setattr(tf.saved_model, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        export.export_saved_model(Module(), str(tmp_path), "m", {}, uses_scann=False)
    assert os.listdir(tmp_path / "m") == []


def test_every_signature_is_in_the_reloaded_savedmodel(recommender):
    assert set(recommender._loaded.signatures) == {
        "serving_default", "retrieve", "recommend_at", "retrieve_at", "similar_movies", "also_liked",
        "retrieval_scores", "predict_rating", "catalog", "training_history"}


def test_extra_exclusions_shared_and_per_user(recommender):
    first = [r.movie_id for r in recommender.recommend("7", k=10)]
    shared = recommender.recommend(["7", "8"], k=10, exclude=first[:3])
    assert len(shared[0]) == 10 and not set(first[:3]) & {r.movie_id for r in shared[0]}
    assert [r.movie_id for r in shared[0]][:7] == first[3:]
    per_user = recommender.recommend(["7", "8"], k=10, exclude=[first[:2], []])
    assert [r.movie_id for r in per_user[0]][:8] == first[2:]
    assert [r.movie_id for r in per_user[1]] == [r.movie_id for r in recommender.recommend("8", k=10)]
    with pytest.raises(RequestError, match="exclude has 3 lists for 2 users"):
        recommender.recommend(["7", "8"], exclude=[["1"], ["2"], ["3"]])
    with pytest.raises(RequestError, match="at most 100 excluded movies"):
        recommender.recommend("7", exclude=[str(i) for i in range(101)])


def test_include_seen_lets_training_movies_back(recommender, train_part):
    user = "7"
    seen = set(train_part.movie_id[train_part.user_id == user])
    default = {r.movie_id for r in recommender.retrieve(user, k=50)}
    with_seen = {r.movie_id for r in recommender.retrieve(user, k=50, include_seen=True)}
    assert not default & seen and with_seen & seen


def test_retrieve_returns_the_candidates_recommend_ranks(recommender):
    candidates = recommender.retrieve("5", k=50)
    assert len(candidates) == 50
    scores = [c.retrieval_score for c in candidates]
    assert scores == sorted(scores, reverse=True)
    recs = recommender.recommend("5", k=20)
    assert {r.movie_id for r in recs} <= {c.movie_id for c in candidates}
    by_id = {c.movie_id: c.retrieval_score for c in candidates}
    assert all(r.retrieval_score == pytest.approx(by_id[r.movie_id], abs=1e-5) for r in recs)


def test_k_beyond_the_export_maximum(recommender):
    # The client refuses it; the graph itself caps it (documented in the README).
    with pytest.raises(RequestError, match="from 1 to 20"):
        recommender.recommend("1", k=500)
    import tensorflow as tf

    out = recommender._loaded.recommend(tf.constant(["1"]), k=tf.constant(10_000))
    assert out["movie_id"].shape == (1, 20)


def test_optional_inputs_have_defaults_in_the_signature(recommender):
    from twostage.serving.artifact.loading import read_meta_graph

    signatures = read_meta_graph(recommender.path).signature_def
    for name in ("serving_default", "retrieve"):
        assert set(signatures[name].inputs) - set(signatures[name].defaults) == {"user_id"}
        assert signatures[name].defaults["k"].int_val == [10]
    for name in ("recommend_at", "retrieve_at"):  # the same, and a time that must be given
        assert set(signatures[name].inputs) - set(signatures[name].defaults) == {"user_id", "request_time"}
        assert set(signatures[name].inputs) - {"request_time"} == set(signatures["serving_default"].inputs)


def _taste_share(results, movie_taste, movie):
    return np.mean([movie_taste[r.movie_id] == movie_taste[movie] for r in results])


def test_similar_movies_share_the_planted_taste(recommender, small_synthetic, train_part):
    movies, counts = np.unique(train_part.movie_id, return_counts=True)
    shares = []
    for movie in movies[np.argsort(-counts)][:30]:
        results = recommender.similar_movies(movie, k=5)
        assert len(results) == 5 and movie not in {r.movie_id for r in results}
        assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
        shares.append(_taste_share(results, small_synthetic.movie_taste, movie))
    assert np.mean(shares) > 0.5  # eight tastes: 0.125 by chance


def test_people_who_liked_this_also_liked_movies_of_its_taste(recommender, small_synthetic, train_part):
    liked = train_part.movie_id[train_part.rating >= 4]
    movies, counts = np.unique(liked, return_counts=True)
    shares = [_taste_share(recommender.also_liked(m, k=5), small_synthetic.movie_taste, m)
              for m in movies[np.argsort(-counts)][:30]]
    assert np.mean(shares) > 0.4


def test_unknown_movies_are_reported_not_crashed_on(recommender):
    from twostage.serving.clients.recommender import UnknownMovieError

    with pytest.raises(UnknownMovieError, match="movie no-such-movie is not in this model's catalog"):
        recommender.similar_movies("no-such-movie")
    batch = recommender.also_liked(["no-such-movie", "1"], k=3)
    assert batch[0] is None and len(batch[1]) == 3


def test_cold_start_user_is_served_from_features(recommender, train_part):
    popular = [r.movie_id for r in recommender.recommend("new-user", k=10)]
    writer = recommender.recommend("new-user", k=10, features={"age": 31, "gender": "f", "occupation": "writer",
                                                                "zip_code": "94110"})
    student = recommender.recommend("new-user", k=10, features={"age": 19, "occupation": "student"})
    assert len(writer) == 10 and len({r.movie_id for r in writer}) == 10
    assert [r.movie_id for r in writer] != popular
    assert [r.movie_id for r in writer] != [r.movie_id for r in student]
    # A zip prefix the model never saw reads as unknown; an occupation it never saw is refused
    # (it would silently answer as if none were given), naming the ones it knows.
    assert len(recommender.recommend("new-user", k=3, features={"zip_code": "ZZ999"})) == 3
    with pytest.raises(RequestError, match="unknown occupation 'astronaut'; this model knows .*writer"):
        recommender.recommend("new-user", k=3, features={"occupation": "astronaut"})


def test_known_users_keep_their_own_features(recommender):
    plain = [r.movie_id for r in recommender.recommend("4", k=10)]
    told = [r.movie_id for r in recommender.recommend("4", k=10, features={"age": 70, "occupation": "retired"})]
    assert plain == told


def test_bad_feature_requests(recommender):
    with pytest.raises(RequestError, match="unknown user feature"):
        recommender.recommend("x", features={"height": 180})
    with pytest.raises(RequestError, match="age must be a whole number"):
        recommender.recommend("x", features={"age": "old"})


def test_concurrent_calls_from_several_threads(recommender):
    from concurrent.futures import ThreadPoolExecutor

    users = [str(u) for u in range(1, 41)]
    expected = {u: [r.movie_id for r in recommender.recommend(u, k=10)] for u in users}
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda u: (u, [r.movie_id for r in recommender.recommend(u, k=10)]), users * 3))
    assert all(movies == expected[u] for u, movies in got)


def test_a_ragged_seen_table_excludes_what_the_dense_one_does(recommender, exported_model, train_part, monkeypatch,
                                                              tmp_path):
    """Past DENSE_SEEN_CELLS the model keeps only the ragged history; requests must not tell."""
    from twostage.retrieval.config import IndexConfig
    from twostage.serving.graph import module
    from twostage.serving.artifact.reexport import export_again

    monkeypatch.setattr(module, "DENSE_SEEN_CELLS", 0)
    kind = recommender.metadata["index"]["kind"]
    ragged = Recommender.load(export_again(exported_model.export_path, IndexConfig(kind=kind), str(tmp_path)))
    assert hasattr(recommender._loaded, "seen") and not hasattr(ragged._loaded, "seen")
    users = list(np.unique(train_part.user_id)[:30]) + ["no-such-user"]
    exclude = [list(train_part.movie_id[:3])] * len(users)
    for request in ({}, {"include_seen": True}, {"exclude": exclude}):
        dense_out = recommender.recommend_arrays(users, k=20, **request)
        ragged_out = ragged.recommend_arrays(users, k=20, **request)
        np.testing.assert_array_equal(dense_out["movie_id"], ragged_out["movie_id"])
        np.testing.assert_allclose(dense_out["score"], ragged_out["score"], rtol=1e-6)


def test_the_plain_request_graph_answers_as_recommend_does(recommender, train_part):
    """Recommender sends requests without features or exclusions to recommend_plain."""
    import tensorflow as tf

    users = tf.constant(list(np.unique(train_part.user_id)[:25]) + ["no-such-user"])
    full = recommender._loaded.recommend(users, k=tf.constant(15))
    plain = recommender._loaded.recommend_plain(users, k=tf.constant(15))
    assert sorted(full) == sorted(plain)
    for name in ("movie_id", "title", "known_user"):
        np.testing.assert_array_equal(full[name].numpy(), plain[name].numpy())
    # ScaNN's scores of one movie may differ by an ulp between query batches of different sizes.
    for name in ("score", "predicted_rating", "retrieval_score"):
        np.testing.assert_allclose(full[name].numpy(), plain[name].numpy(), rtol=1e-6, atol=1e-6)
    recommender.recommend(["1"], k=3)
    assert "recommend_plain" in recommender._signatures


@pytest.mark.parametrize("kind,terms_vary", [("scann", None), ("brute-force", None), ("brute-force", False)])
def test_a_shallow_first_search_changes_no_list(kind, terms_vary, exported_model, train_part, monkeypatch, tmp_path):
    """Batches retrieve in two passes: the users the shallow first pass cannot settle are
    searched again at full depth. Forced shallow, most users take the second pass, and every
    list is still the one rating every candidate of a full search gives. An exact index with
    movie terms searches once at full depth (unless told they do not vary)."""
    import tensorflow as tf
    from twostage.retrieval.config import IndexConfig
    from twostage.serving.graph import search
    from twostage.serving.artifact.reexport import export_again

    monkeypatch.setattr(search, "FIRST_SEARCH_DEPTH", 1)
    monkeypatch.setattr(search, "FIRST_EXACT_DEPTH", 1)
    monkeypatch.setattr(search, "FIRST_SEARCH_DEPTH_WITH_TERMS", 1)
    if terms_vary is not None:
        from twostage.serving.graph import module
        monkeypatch.setattr(module, "terms_vary", lambda terms: terms_vary)
    shallow = Recommender.load(export_again(exported_model.export_path, IndexConfig(kind=kind), str(tmp_path)))
    users = tf.constant(list(np.unique(train_part.user_id)[:40]) + ["no-such-user"])
    for k in (1, 10, 30):
        batch = shallow._loaded.recommend(users, k=tf.constant(k))
        everything = shallow._loaded.recommend_plain(users, k=tf.constant(k))
        _assert_the_same_lists_up_to_ties({n: v.numpy() for n, v in batch.items()},
                                          {n: v.numpy() for n, v in everything.items()})


def _assert_the_same_lists_up_to_ties(got: dict, expected: dict, tolerance: float = 1e-5):
    """The same movies with the same figures (to ScaNN's ulps, see above) in the same order,
    except that two movies whose final scores tie to within ``tolerance`` may come in either
    order (an ulp decides it)."""
    np.testing.assert_array_equal(got["known_user"], expected["known_user"])
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-6, atol=1e-6)  # each row's sorted scores
    for row, (ids, wanted) in enumerate(zip(got["movie_id"], expected["movie_id"])):
        np.testing.assert_array_equal(ids == b"", wanted == b"")  # the same padding
        where = {movie: column for column, movie in enumerate(ids) if movie}
        assert set(where) == {movie for movie in wanted if movie}, row
        for column, movie in enumerate(wanted):
            if not movie:
                continue
            found = where[movie]
            assert abs(got["score"][row, found] - expected["score"][row, column]) <= tolerance, (row, movie)
            for name in ("predicted_rating", "retrieval_score"):
                np.testing.assert_allclose(got[name][row, found], expected[name][row, column], rtol=1e-6, atol=1e-6)


def test_batch_arrays_hold_what_the_per_user_lists_do(recommender, train_part):
    """recommend_arrays (ids and titles looked up in the catalog) against recommend's lists,
    for known users, a user never seen, and rows padded past the movies left."""
    users = list(np.unique(train_part.user_id)[:12]) + ["no-such-user"]
    arrays = recommender.recommend_arrays(users, k=recommender.limits.max_k)
    lists = recommender.recommend(users, k=recommender.limits.max_k)
    assert arrays["movie_id"].dtype.kind == arrays["title"].dtype.kind == "U"
    for ids, titles, recommended in zip(arrays["movie_id"], arrays["title"], lists):
        assert list(ids[:len(recommended)]) == [r.movie_id for r in recommended]
        assert list(titles[:len(recommended)]) == [r.title for r in recommended]
        assert set(ids[len(recommended):]) <= {""} and set(titles[len(recommended):]) <= {""}
    catalog_ids, catalog_titles = recommender.catalog()
    title_of = dict(zip(catalog_ids, catalog_titles))
    assert all(title_of[i] == t for i, t in zip(arrays["movie_id"].ravel(), arrays["title"].ravel()) if i)


def test_a_request_time_leaves_out_movies_first_rated_after_it(recommender, train_part):
    first = {movie: int(train_part.timestamp[train_part.movie_id == movie].min())
             for movie in np.unique(train_part.movie_id)}
    times = np.sort(np.fromiter(first.values(), np.int64))
    middle = int(times[len(times) // 2])
    users = list(np.unique(train_part.user_id)[:6])
    now = recommender.recommend(users, k=20)
    assert now == recommender.recommend(users, k=20, request_time=None)
    assert any(first[r.movie_id] > middle for row in now for r in row)
    for row in recommender.recommend(users, k=20, request_time=middle):
        assert len(row) == 20 and all(first[r.movie_id] <= middle for r in row)
    for row in recommender.retrieve(users, k=50, request_time=middle):
        assert all(first[c.movie_id] <= middle for c in row)
    # One time per user; before any movie was rated, nothing is left to recommend.
    per_user = recommender.recommend(users[:2], k=20, request_time=[int(times[0]) - 1, middle])
    alone = recommender.recommend(users[1], k=20, request_time=middle)
    assert per_user[0] == [] and [r.movie_id for r in per_user[1]] == [r.movie_id for r in alone]
    import datetime

    at = datetime.datetime.fromtimestamp(middle, datetime.timezone.utc)
    assert recommender.recommend(users[0], k=5, request_time=at) == recommender.recommend(users[0], k=5,
                                                                                         request_time=middle)
    arrays = recommender.recommend_arrays(users, k=20, request_time=middle)
    assert arrays["movie_id"][0].tolist() == [r.movie_id for r in recommender.recommend(users[0], k=20,
                                                                                         request_time=middle)]


def test_bad_request_times_are_clear(recommender):
    import datetime

    with pytest.raises(RequestError, match="request_time has 3 times for 2 users"):
        recommender.recommend(["1", "2"], request_time=[1, 2, 3])
    with pytest.raises(RequestError, match="whole seconds since 1970"):
        recommender.recommend("1", request_time="yesterday")
    with pytest.raises(RequestError, match="no timezone"):
        recommender.recommend("1", request_time=datetime.datetime(2000, 1, 1))
    with pytest.raises(RequestError, match="out of range"):
        recommender.recommend("1", request_time=2 ** 70)
    # An export from before request times has no "_at" signatures: refused in one sentence.
    with pytest.raises(RequestError, match="has no recommend_before signature: it was exported before it existed"):
        recommender._call("recommend_before", {"user_id": np.asarray(["1"])})
    with pytest.raises(RequestError, match=r"\(similar_movies\) takes no request_time"):
        recommender._call("similar_movies", {**recommender.limits.related("1", 3), "request_time": np.asarray([1])})
