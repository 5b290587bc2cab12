import os

import numpy as np
import pytest

from twostage.data import SplitConfig, split
from twostage.serving.export import versions
from twostage.serving.recommender import ModelError, Recommender, RequestError


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
    assert all(1.0 <= r.predicted_rating <= 5.5 for r in recs)


def test_training_movies_never_come_back(recommender, train_part):
    users = np.unique(train_part.user_id)[:40]
    for user, recs in zip(users, recommender.recommend(list(users), k=20)):
        seen = set(train_part.movie_id[train_part.user_id == user])
        assert seen and not seen & {r.movie_id for r in recs}


def test_history_matches_the_training_part(recommender, train_part):
    user = train_part.user_id[0]
    assert sorted(recommender.training_history([user])[0]) == sorted(train_part.movie_id[train_part.user_id == user])


def test_ranking_orders_by_predicted_rating_for_known_users(recommender):
    recs = recommender.recommend("3", k=10)
    predicted = [r.predicted_rating for r in recs]
    assert predicted == sorted(predicted, reverse=True)


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

    from twostage.serving import export

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
