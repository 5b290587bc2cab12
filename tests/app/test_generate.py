"""twostage generate: data of any size on disk in the ml-25m layout, read back by --data."""

import os

from twostage.cli import main
from twostage.data import load_dataset


def test_generate_writes_a_readable_dataset_and_never_overwrites(tmp_path, capsys):
    out = str(tmp_path / "generated")
    assert main(["generate", "--out", out, "--users", "60", "--movies", "80", "--ratings", "2000"]) == 0
    assert sorted(os.listdir(out)) == ["movies.csv", "ratings.csv"]
    assert open(os.path.join(out, "ratings.csv")).readline() == "userId,movieId,rating,timestamp\n"
    data = load_dataset(out)
    assert len(data.movies) == 80 and 1500 <= len(data.ratings) <= 2100
    before = open(os.path.join(out, "ratings.csv")).read()
    capsys.readouterr()
    assert main(["generate", "--out", out, "--users", "60", "--movies", "80", "--ratings", "10"]) == 2
    assert "would overwrite ratings.csv, movies.csv" in capsys.readouterr().err
    assert open(os.path.join(out, "ratings.csv")).read() == before
    assert main(["generate", "--out", out, "--format", "parquet", "--users", "60", "--movies", "80",
                 "--ratings", "2000"]) == 2  # movies.csv is there
    parquet = str(tmp_path / "parquet")
    assert main(["generate", "--out", parquet, "--format", "parquet", "--users", "60", "--movies", "80",
                 "--ratings", "2000"]) == 0
    assert len(load_dataset(parquet).ratings) == len(data.ratings)


def test_synthetic_source_takes_a_size():
    data = load_dataset("synthetic:users=30,movies=40,ratings=600")
    assert len(data.users) == 30 and len(data.movies) == 40 and 500 <= len(data.ratings) <= 620
