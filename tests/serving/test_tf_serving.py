"""Re-export, TF Serving's files (warm-up requests, models.config) and the TF Serving clients."""

import os

import numpy as np
import pytest
import tensorflow as tf

from fake_tf_serving import FakeGrpcServer, FakeRestServer
from twostage.cli import main
from twostage.retrieval.config import IndexConfig
from twostage.serving.clients.recommender import Recommender
from twostage.serving.artifact.reexport import export_again, final_blend_of
from twostage.serving.requests import RequestError, RequestLimits
from twostage.serving.artifact.warmup import WARMUP_FILE
from twostage.serving.clients.grpc import GrpcClient
from twostage.serving.clients.rest import RestClient, ServingError

# Every test here trains a model (or loads one trained for the module).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scann_export(exported_model):
    return exported_model.export_path


@pytest.fixture(scope="module")
def brute_force_again(scann_export, tmp_path_factory):
    return export_again(scann_export, IndexConfig(kind="brute-force"), str(tmp_path_factory.mktemp("again")))


def test_export_again_with_another_index_gives_the_same_answers(scann_export, brute_force_again):
    original, again = Recommender.load(scann_export), Recommender.load(brute_force_again)
    assert again.metadata["index"]["kind"] == "brute-force"
    assert again.metadata["exported_from"] == os.path.abspath(scann_export)
    users = ["1", "7", "42", "never-seen"]
    # A catalog this small is searched exhaustively by ScaNN too, so the lists agree.
    for a, b in zip(original.recommend(users, k=10), again.recommend(users, k=10)):
        assert [r.movie_id for r in a] == [r.movie_id for r in b]
        np.testing.assert_allclose([r.score for r in a], [r.score for r in b], rtol=1e-4, atol=1e-4)
    cold = {"age": 25, "occupation": "student"}
    assert [r.movie_id for r in original.recommend("new", features=cold)] == \
        [r.movie_id for r in again.recommend("new", features=cold)]
    np.testing.assert_allclose(original.predict_rating(["1", "2"], ["3", "4"]),
                               again.predict_rating(["1", "2"], ["3", "4"]), rtol=1e-5)


def test_export_again_keeps_the_movie_terms_and_older_exports_get_none(scann_export, brute_force_again):
    original, again = (Recommender.load(path)._loaded for path in (scann_export, brute_force_again))
    np.testing.assert_array_equal(original.movie_terms.numpy(), again.movie_terms.numpy())

    class BeforeTheTerms:  # an export from before the movie terms
        movie_ids = original.movie_ids

    blend = final_blend_of(BeforeTheTerms(), {"blend": {"weight": 0.25}})
    assert blend.rating_weight == 0.25
    np.testing.assert_array_equal(blend.movie_terms, np.zeros(len(original.movie_ids.numpy()), np.float32))


def test_export_command_writes_the_next_version(scann_export, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(os.path.dirname(os.path.dirname(scann_export)), root)
    assert main(["-q", "export", "--model", str(root), "--index", "brute-force"]) == 0
    model_dir = root / os.path.basename(os.path.dirname(scann_export))
    assert sorted(os.listdir(model_dir)) == ["1", "2"]
    assert Recommender.load(str(root)).metadata["index"]["kind"] == "brute-force"


def test_warmup_file_replays_against_the_model(scann_export):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(scann_export, "assets.extra", WARMUP_FILE)
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    signatures = {log.predict_log.request.model_spec.signature_name for log in logs}
    assert signatures == {"serving_default", "retrieve", "recommend_at", "retrieve_at", "similar_movies",
                          "also_liked", "predict_rating"}
    loaded = Recommender.load(scann_export)._loaded
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == "twostage"
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
        assert all(value.shape[0] >= 1 for value in outputs.values())
    users = [tf.make_ndarray(log.predict_log.request.inputs["user_id"]) for log in logs
             if "user_id" in log.predict_log.request.inputs]
    batches = [ids for ids in users if len(ids) >= 8]
    assert batches, "no warm-up request takes the batch path"


def test_serving_config_command(scann_export, tmp_path, capsys):
    root = os.path.dirname(os.path.dirname(scann_export))
    config = tmp_path / "models.config"
    assert main(["-q", "serving-config", "--model", root, "--config", str(config)]) == 0
    text = config.read_text()
    assert 'name: "twostage"' in text and f'base_path: "{os.path.join(os.path.abspath(root), "twostage")}"' in text
    printed = capsys.readouterr().out
    assert "tensorflow_model_server --port=8500 --rest_api_port=8501" in printed
    assert "curl -s -X POST http://localhost:8501/v1/models/twostage:predict" in printed
    assert "ScaNN index, which stock TF Serving cannot load" in printed
    # Never overwrites what is there.
    assert main(["-q", "serving-config", "--model", root, "--config", str(config)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["-q", "serving-config", "--model", str(tmp_path), "--config", str(tmp_path / "x")]) == 2


@pytest.fixture(scope="module")
def limits(scann_export):
    return Recommender.load(scann_export).limits


@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_tf_serving_clients_answer_like_the_in_process_model(kind, scann_export, limits):
    local = Recommender.load(scann_export)
    server = (FakeRestServer if kind == "rest" else FakeGrpcServer)(scann_export, "twostage")
    try:
        client = RestClient(server.url, limits=limits) if kind == "rest" else GrpcClient(server.target,
                                                                                          limits=limits)
        for remote, here in zip(client.recommend(["1", "9"], k=5, exclude=["3"]),
                                local.recommend(["1", "9"], k=5, exclude=["3"])):
            assert [r.movie_id for r in remote] == [r.movie_id for r in here]
            assert [r.title for r in remote] == [r.title for r in here]
        cold = {"age": 40, "gender": "M"}
        assert [r.movie_id for r in client.recommend("new", k=5, features=cold)] == \
            [r.movie_id for r in local.recommend("new", k=5, features=cold)]
        assert [c.movie_id for c in client.retrieve("1", k=30)] == [c.movie_id for c in local.retrieve("1", k=30)]
        at = int(np.median(local._loaded.available_from.numpy()))  # half the catalog not yet rated
        assert [r.movie_id for r in client.recommend("1", k=5, request_time=at)] == \
            [r.movie_id for r in local.recommend("1", k=5, request_time=at)] != \
            [r.movie_id for r in local.recommend("1", k=5)]
        assert [m.movie_id for m in client.similar_movies("1", k=4)] == \
            [m.movie_id for m in local.similar_movies("1", k=4)]
        np.testing.assert_allclose(client.predict_rating(["1", "2"], ["5", "6"]),
                                   local.predict_rating(["1", "2"], ["5", "6"]), rtol=1e-5)
        with pytest.raises(RequestError, match="k must be"):
            client.recommend("1", k=0)
    finally:
        server.stop()


def test_rest_requests_may_leave_optional_inputs_out(scann_export):
    import json
    import urllib.request

    server = FakeRestServer(scann_export, "twostage")
    try:
        body = json.dumps({"signature_name": "serving_default", "inputs": {"user_id": ["1"]}}).encode()
        request = urllib.request.Request(server.url + "/v1/models/twostage:predict", data=body)
        outputs = json.loads(urllib.request.urlopen(request, timeout=30).read())["outputs"]
        assert len(outputs["movie_id"][0]) == 10  # k's default
    finally:
        server.stop()


def test_a_malformed_request_is_a_clear_error_not_a_crash(scann_export):
    import json
    import urllib.error
    import urllib.request

    server = FakeRestServer(scann_export, "twostage")
    try:
        body = json.dumps({"signature_name": "serving_default",
                           "inputs": {"user_id": ["1", "2"], "exclude_movie_ids": [["1"], ["2"], ["3"]]}}).encode()
        request = urllib.request.Request(server.url + "/v1/models/twostage:predict", data=body)
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=30)
        assert error.value.code == 400
        assert "exclude_movie_ids must have no rows, one row, or one per user_id" in error.value.read().decode()
        # The server still answers afterwards.
        client = RestClient(server.url, limits=RequestLimits(20, 50, 100))
        assert len(client.recommend("1", k=3)) == 3
    finally:
        server.stop()


def test_clients_say_when_no_server_answers():
    with pytest.raises(ServingError, match="cannot reach TF Serving"):
        RestClient("http://127.0.0.1:9", limits=RequestLimits(10, 50, 10), timeout=2).recommend("1")
