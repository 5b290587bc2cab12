"""Nothing a user types ends in a traceback or a silently wrong answer.

One table of bad inputs, each run through the command line as a user would: exit code 2,
one sentence on stderr naming what is wrong, no traceback, and nothing half-written left
behind. The test writes every bad file itself.
"""

import os
import shutil
import zipfile

import numpy as np
import pytest

from movielens_files import write_csv, write_ml100k
from twostage.cli import main


def _corrupt_zip_member(tmp_path, data):
    """A GroupLens .zip whose ratings member fails its decompression (stored deflated, bytes flipped)."""
    folder = write_csv(data, str(tmp_path / "ml-csv"))
    path = str(tmp_path / "ml-csv.zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(os.listdir(folder)):
            archive.write(os.path.join(folder, name), f"ml-csv/{name}")
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("ml-csv/ratings.csv")
    raw = bytearray(open(path, "rb").read())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 10, start + 60):
        raw[i] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    return path


def _ratings_line(tmp_path, data, line: str, name="ml-bad"):
    """An ml-100k folder whose u.data gets ``line`` appended."""
    folder = write_ml100k(data, str(tmp_path / name))
    with open(os.path.join(folder, "u.data"), "a") as f:
        f.write(line + "\n")
    return folder


def _a_file(tmp_path, name="occupied"):
    path = tmp_path / name
    path.write_text("a user's file\n")
    return str(path)


def _twostage_dir_is_a_file(tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    (out / "twostage").write_text("not a folder\n")
    return str(out)


# (case, argv builder (tmp_path, data) -> argv, what stderr must say)
NO_MODEL_CASES = [
    ("zip with a corrupt member",
     lambda t, d: ["train", "--data", _corrupt_zip_member(t, d), "--out", str(t / "out")],
     "ml-csv/ratings.csv: cannot read this member of the .zip archive"),
    ("timestamp inf",
     lambda t, d: ["train", "--data", _ratings_line(t, d, "1\t1\t3\tinf"), "--out", str(t / "out")],
     "timestamp 'inf' is not a number of seconds"),
    ("timestamp of 23 digits",
     lambda t, d: ["train", "--data", _ratings_line(t, d, "1\t1\t3\t" + "9" * 23), "--out", str(t / "out")],
     "is out of range"),
    ("--epochs -1", lambda t, d: ["train", "--data", "synthetic", "--out", str(t / "out"), "--epochs", "-1"],
     "retrieval epochs must be at least 1, got -1"),
    ("--epochs 0", lambda t, d: ["train", "--data", "synthetic", "--out", str(t / "out"), "--epochs", "0"],
     "retrieval epochs must be at least 1, got 0"),
    ("--out is a file", lambda t, d: ["train", "--data", "synthetic", "--out", _a_file(t)],
     "is a file, not a folder"),
    ("OUT/twostage is a file", lambda t, d: ["train", "--data", "synthetic", "--out", _twostage_dir_is_a_file(t)],
     "twostage is a file, not a folder"),
    ("--out under a file", lambda t, d: ["train", "--data", "synthetic", "--out", os.path.join(_a_file(t), "m")],
     "cannot be created"),
    ("--test-fraction 1.5", lambda t, d: ["train", "--data", "synthetic", "--out", str(t / "o"), "--test-fraction",
                                          "1.5"], "test fraction must be between 0 and 1"),
    ("a test part left empty",
     lambda t, d: ["train", "--data", "synthetic", "--out", str(t / "o"), "--test-fraction", "0.000001"],
     "leave the test part (1e-06 held out) empty"),
]
ARGPARSE_CASES = [
    ("serve-ui --port 99999", ["serve-ui", "--model", "m", "--port", "99999"], "must be from 0 to 65535"),
    ("explore --clusters 0", ["explore", "--model", "m", "--out", "o", "--clusters", "0"], "must be from 1"),
    ("-k not a number", ["recommend", "--model", "m", "--user", "1", "-k", "ten"], "invalid int value"),
    ("--as-of not a time", ["recommend", "--model", "m", "--user", "1", "--as-of", "last tuesday"],
     "--as-of: expected seconds since 1970 or an ISO date"),
]


@pytest.fixture(scope="module")
def small(small_data):
    return small_data.with_ratings(small_data.ratings.take(np.arange(2000)))


def _one_sentence(err: str, expected: str):
    lines = [line for line in err.strip().splitlines() if line.startswith("twostage ")]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].count(": error: ") == 1, err
    assert expected in lines[0], err


@pytest.mark.parametrize("case,argv,expected", NO_MODEL_CASES, ids=[c[0] for c in NO_MODEL_CASES])
def test_bad_input_before_any_training(tmp_path, small, capsys, case, argv, expected):
    args = argv(tmp_path, small)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(args) == 2
    _one_sentence(capsys.readouterr().err, expected)
    # Nothing was written: no export root, no staging folder, and the user's files are as they were.
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    for path in tmp_path.rglob("occupied"):
        assert path.read_text() == "a user's file\n"


@pytest.mark.parametrize("case,argv,expected", ARGPARSE_CASES, ids=[c[0] for c in ARGPARSE_CASES])
def test_bad_flags_are_refused_by_the_parser(capsys, case, argv, expected):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and expected in err.splitlines()[-1], err


def test_a_bom_at_the_start_of_ratings_csv_is_read(tmp_path, small):
    from twostage.data.readers import read_movielens

    folder = write_csv(small, str(tmp_path / "bom"))
    path = os.path.join(folder, "ratings.csv")
    raw = open(path, "rb").read()
    open(path, "wb").write(b"\xef\xbb\xbf" + raw)
    assert len(read_movielens(folder).ratings) == len(small.ratings)


def test_re_ratings_keep_the_latest_and_are_counted(tmp_path, small):
    from twostage.data import load_dataset

    user, movie = small.ratings.user_id[0], small.ratings.movie_id[0]
    folder = _ratings_line(tmp_path, small, f"{user}\t{movie}\t1\t{int(small.ratings.timestamp.max()) + 1}")
    data = load_dataset(folder)
    assert data.merged_ratings == 1 and len(data.ratings) == len(small.ratings)
    mine = (data.ratings.user_id == user) & (data.ratings.movie_id == movie)
    assert data.ratings.rating[mine].tolist() == [1.0]


# --- with a trained model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(exported_model):
    return os.path.dirname(os.path.dirname(exported_model.export_path))


@pytest.mark.slow
@pytest.mark.parametrize("case,argv,expected", [
    ("unknown gender", ["--user", "new", "--gender", "female"], "unknown gender 'FEMALE'; this model knows F, M"),
    ("negative age", ["--user", "new", "--age", "-5"], "age must be from 1 to 120 years, got -5"),
    ("unknown occupation", ["--user", "new", "--occupation", "astronaut"], "unknown occupation 'astronaut'"),
    ("empty --exclude", ["--user", "1", "--exclude", ""], "empty movie id in exclude"),
    ("k past the export's maximum", ["--user", "1", "-k", "1000"], "k must be a whole number from 1 to"),
], ids=lambda v: v if isinstance(v, str) and " " in v else None)
def test_bad_requests(model_dir, capsys, case, argv, expected):
    assert main(["recommend", "--model", model_dir, *argv]) == 2
    _one_sentence(capsys.readouterr().err, expected)


@pytest.mark.slow
def test_unknown_users_are_said_to_be_unknown(model_dir, capsys):
    import json

    assert main(["recommend", "--model", model_dir, "--user", " 1", "--user", "1", "--user", "1", "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert [(a["user_id"], a["known_user"]) for a in answers] == [(" 1", False), ("1", True), ("1", True)]
    assert main(["recommend", "--model", model_dir, "--user", " 1"]) == 0
    assert "user ' 1' is not in this model's training data (did you mean '1'?)" in capsys.readouterr().out


@pytest.mark.slow
def test_as_of_a_time_before_every_rating_leaves_only_movies_never_rated(model_dir, small_prepared, capsys):
    import json

    assert main(["recommend", "--model", model_dir, "--user", "1", "-k", "5", "--json", "--as-of", "1970-01-01"]) == 0
    [answer] = json.loads(capsys.readouterr().out)
    rated = set(small_prepared.train.movie_id.tolist())
    assert all(r["movie_id"] not in rated for r in answer["recommendations"])


@pytest.mark.slow
def test_feature_values_are_matched_regardless_of_case(model_dir, exported_model):
    from twostage import Recommender

    recommender = Recommender.load(model_dir)
    occupation = exported_model.metadata["data"]["feature_values"]["user_occupation"][0]
    upper = recommender.recommend("new", k=5, features={"occupation": occupation.upper()})
    assert upper == recommender.recommend("new", k=5, features={"occupation": occupation})


@pytest.mark.slow
def test_an_unknown_exclusion_is_said(model_dir, capsys):
    assert main(["recommend", "--model", model_dir, "--user", "1", "--exclude", "no-such-movie"]) == 0
    assert "--exclude 'no-such-movie': not in this model's catalog" in capsys.readouterr().err


@pytest.mark.slow
def test_predicting_a_movie_not_in_the_catalog_is_refused(model_dir):
    from twostage import Recommender
    from twostage.serving.requests import UnknownMovieError

    recommender = Recommender.load(model_dir)
    with pytest.raises(UnknownMovieError, match="nope"):
        recommender.predict_rating(["1"], ["nope"])
    known = recommender.catalog()[0][0]
    assert 0.5 <= float(recommender.predict_rating(["1"], [known])[0]) <= 5.0


@pytest.mark.slow
def test_explore_and_report_check_their_arguments_first(model_dir, tmp_path, capsys):
    assert main(["explore", "--model", model_dir, "--out", str(tmp_path / "x"), "--clusters", "100000"]) == 2
    _one_sentence(capsys.readouterr().err, "--clusters must be from 1 to")
    assert not (tmp_path / "x").exists()
    assert main(["report", "--model", model_dir, "--out", _a_file(tmp_path), "--architectures", "none"]) == 2
    _one_sentence(capsys.readouterr().err, "is a file, not a folder")


@pytest.mark.slow
def test_a_truncated_variables_file_is_a_clear_error(exported_model, tmp_path, capsys):
    copy = tmp_path / "models" / "twostage" / "1"
    shutil.copytree(exported_model.export_path, copy)
    data_file = next((copy / "variables").glob("variables.data-*"))
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    assert main(["recommend", "--model", str(tmp_path / "models"), "--user", "1"]) == 2
    _one_sentence(capsys.readouterr().err, "cannot load the SavedModel (damaged or incomplete?)")


@pytest.mark.slow
def test_describe_lists_what_a_new_user_may_say(model_dir, capsys):
    assert main(["describe", "--model", model_dir]) == 0
    out = capsys.readouterr().out
    assert "user_gender: F, M" in out and "known users: 200" in out and "index: scann" in out
    assert "evaluate asks each user's lists as of" in out


@pytest.mark.slow
def test_a_tiny_test_fraction_trains_and_evaluates(tmp_path, capsys):
    import json

    out = str(tmp_path / "m")
    assert main(["train", "--data", "synthetic", "--out", out, "--epochs", "1", "--test-fraction", "0.0001",
                 "--index", "brute-force"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["test_ratings"] == 5


def test_quiet_may_come_before_or_after_the_command():
    from twostage.arguments import build_parser

    parser = build_parser()
    assert parser.parse_args(["-q", "describe", "--model", "m"]).quiet
    assert parser.parse_args(["describe", "--model", "m", "-q"]).quiet
    assert not parser.parse_args(["describe", "--model", "m"]).quiet
