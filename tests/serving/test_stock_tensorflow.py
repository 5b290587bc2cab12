"""The brute-force export needs nothing but stock TensorFlow: no scann, no twostage, no TFRS."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import run_python, small_pipeline_config


# Every test here trains a model (or loads one trained for the module).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def brute_force_export(tmp_path_factory):
    from twostage.pipeline import train

    return train(small_pipeline_config(index="brute-force", epochs=3), str(tmp_path_factory.mktemp("bf"))).export_path


def test_loads_where_scann_is_never_imported(brute_force_export):
    code = f"""
import json, sys
import tensorflow as tf

model = tf.saved_model.load({brute_force_export!r})
out = model.recommend(tf.constant(["1", "2"]), k=tf.constant(5))  # the other inputs take their defaults
empty = tf.constant([], tf.string)
signature = model.signatures["serving_default"](  # a signature wants every input
    user_id=tf.constant(["1", "2"]), k=tf.constant(5), user_age=empty, user_gender=empty, user_occupation=empty,
    user_zip=empty, exclude_movie_ids=tf.constant([["1"]]), include_seen=tf.constant(False))
assert signature["movie_id"].shape == (2, 5)
similar = model.signatures["similar_movies"](movie_id=tf.constant(["1"]), k=tf.constant(3))
users = tf.concat([model.user_ids[:12], ["no-such-user"]], 0)  # 8 users or more: the batch branch
batch, plain = model.recommend(users, k=tf.constant(5)), model.recommend_plain(users, k=tf.constant(5))
assert (batch["movie_id"].numpy() == plain["movie_id"].numpy()).all()
assert "scann" not in sys.modules and "twostage" not in sys.modules and "tensorflow_recommenders" not in sys.modules
print(json.dumps({{"shape": out["movie_id"].shape.as_list(), "similar": similar["movie_id"].shape.as_list()}}))
"""
    result = json.loads(run_python(code).stdout.strip().splitlines()[-1])
    assert result == {"shape": [2, 5], "similar": [1, 3]}


def _saved_model_cli():
    cli = shutil.which("saved_model_cli") or os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed with this TensorFlow")
    return cli


def test_saved_model_cli_show_lists_every_signature(brute_force_export):
    proc = subprocess.run([_saved_model_cli(), "show", "--dir", brute_force_export, "--all"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for signature in ("serving_default", "retrieve", "recommend_at", "retrieve_at", "similar_movies", "also_liked",
                      "predict_rating", "retrieval_scores", "catalog", "training_history"):
        assert f"signature_def['{signature}']" in proc.stdout


def test_saved_model_cli_run_recommends(brute_force_export):
    proc = subprocess.run([_saved_model_cli(), "run", "--dir", brute_force_export, "--tag_set", "serve",
                           "--signature_def", "serving_default", "--input_exprs", "user_id=['1']"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "movie_id" in proc.stdout and "predicted_rating" in proc.stdout
    # As of a time before any rating, nothing is left: every row comes back padded.
    at = subprocess.run([_saved_model_cli(), "run", "--dir", brute_force_export, "--tag_set", "serve",
                         "--signature_def", "recommend_at", "--input_exprs", "user_id=['1'];request_time=[0]"],
                        capture_output=True, text=True, timeout=300)
    assert at.returncode == 0, at.stderr[-2000:]
    assert "movie_id" in at.stdout and "-inf" in at.stdout
