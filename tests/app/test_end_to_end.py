"""The whole path a user takes: train -> export -> load in a fresh process -> recommend -> evaluate."""

import json
import os
import subprocess
import sys

import pytest

from conftest import run_python
from twostage.evaluation import EvaluationError, evaluate


# Every test here trains a model (or loads one trained for the module).
pytestmark = pytest.mark.slow


def test_fresh_process_loads_the_export_and_recommends(exported_model, small_data):
    code = f"""
import json, sys
from twostage import Recommender

rec = Recommender.load({os.path.dirname(os.path.dirname(exported_model.export_path))!r})
out = {{u: [r.as_dict() for r in rec.recommend(u, k=10)] for u in ("1", "2", "3")}}
print(json.dumps(out))
"""
    results = json.loads(run_python(code).stdout.strip().splitlines()[-1])
    known = set(small_data.movies.movie_id)
    for user, recs in results.items():
        ids = [r["movie_id"] for r in recs]
        scores = [r["score"] for r in recs]
        assert len(ids) == 10 and len(set(ids)) == 10 and set(ids) <= known
        assert scores == sorted(scores, reverse=True)


def test_evaluate_contract(exported_model):
    results = evaluate(exported_model.export_path)
    assert set(results["retrieval"]) == {"recall@10", "recall@50", "recall@100", "ndcg@10",
                                         "top_100_categorical_accuracy"}
    assert set(results["two_stage"]) == {"recall@10", "ndcg@10"}
    assert 0 < results["rmse"] < 1.5
    assert results["train_seconds"] > 0
    for value in list(results["retrieval"].values()) + list(results["two_stage"].values()):
        assert 0.0 <= value <= 1.0
    assert results["retrieval"]["recall@100"] >= results["retrieval"]["recall@10"]
    assert set(results["baselines"]["popularity"]) == set(results["retrieval"])
    for name in ("ease", "als"):  # the classics, their setting chosen on the validation part
        assert set(results["baselines"][name]) == set(results["retrieval"]) | {"setting"}
        assert results["baselines"][name]["recall@10"] > results["baselines"]["popularity"]["recall@10"]


def test_evaluate_refuses_ratings_the_model_was_trained_on(exported_model):
    with pytest.raises(EvaluationError, match=r"test ratings .* were used to train this model.*--seed 42"):
        evaluate(exported_model.export_path, seed=7)


def test_command_line_train_recommend_evaluate(tmp_path):
    """The real commands, as the README gives them (on the default synthetic data)."""
    out = str(tmp_path / "models")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}

    def twostage(*args):
        return subprocess.run([sys.executable, "-m", "twostage", *args], capture_output=True, text=True, env=env,
                              timeout=600)

    trained = twostage("train", "--data", "synthetic", "--out", out, "--epochs", "3", "--index", "brute-force")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "retrieval epoch 1/3" in trained.stderr and os.path.isdir(os.path.join(out, "twostage", "1"))
    shown = twostage("recommend", "--model", out, "--user", "5", "-k", "3", "--json")
    assert shown.returncode == 0, shown.stderr[-3000:]
    [answer] = json.loads(shown.stdout)
    assert answer["user_id"] == "5" and answer["known_user"] and len(answer["recommendations"]) == 3
    scored = twostage("evaluate", "--model", out, "--json")
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert {"rmse", "retrieval", "two_stage", "train_seconds"} <= set(json.loads(scored.stdout))
    # A second train never overwrites the first version.
    again = twostage("train", "--data", "synthetic", "--out", out, "--epochs", "1", "--index", "brute-force")
    assert again.returncode == 0 and sorted(os.listdir(os.path.join(out, "twostage"))) == ["1", "2"]


def test_command_line_errors_are_one_sentence(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "twostage", "train", "--data", str(tmp_path / "nope"), "--out",
                           str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"error: {tmp_path / 'nope'}: no such file or folder" in proc.stderr


@pytest.mark.parametrize("layout", ["ml-1m", "csv"])
def test_the_same_commands_work_on_the_other_grouplens_layouts(tmp_path, small_data, layout):
    """ml-1m (demographics, '::') and the CSV family (no demographics): no code changes."""
    from movielens_files import write_csv, write_ml1m, zip_folder

    folder = (write_ml1m if layout == "ml-1m" else write_csv)(small_data, str(tmp_path / layout))
    source = zip_folder(folder, str(tmp_path / f"{layout}.zip")) if layout == "csv" else folder
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = str(tmp_path / "models")

    def twostage(*args):
        proc = subprocess.run([sys.executable, "-m", "twostage", *args], capture_output=True, text=True, env=env,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    twostage("train", "--data", source, "--out", out, "--epochs", "2", "--index", "brute-force")
    results = json.loads(twostage("evaluate", "--model", out, "--json"))
    assert 0 < results["retrieval"]["recall@100"] <= 1 and results["rmse"] < 1.5
    recs = json.loads(twostage("recommend", "--model", out, "--user", "1", "-k", "5", "--json"))[0]["recommendations"]
    assert len(recs) == 5
    similar = json.loads(twostage("similar", "--model", out, "--movie", recs[0]["movie_id"], "-k", "3", "--json"))
    assert len(similar) == 3
    with open(os.path.join(out, "twostage", "1", "assets.extra", "twostage.json")) as f:
        user_features = json.load(f)["data"]["user_features"]
    assert (user_features == []) == (layout == "csv")
