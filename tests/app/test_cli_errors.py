"""Settings out of range are user errors: one sentence naming the setting, exit code 2, no traceback."""

import pytest

from twostage.cli import main
from twostage.data.errors import ConfigError, DataError
from twostage.ranking.config import RankingConfig
from twostage.retrieval.config import IndexConfig, RetrievalConfig
from twostage.serving.config import ServingConfig


@pytest.mark.parametrize("epochs", ["-1", "0"])
def test_epochs_out_of_range(tmp_path, capsys, epochs):
    code = main(["train", "--data", "synthetic", "--out", str(tmp_path / "out"), "--epochs", epochs])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"twostage train: error: retrieval epochs must be at least 1, got {epochs}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make,message", [
    (lambda: RetrievalConfig(loss="hinge"), "unknown retrieval loss 'hinge'"),
    (lambda: RetrievalConfig(batch_size=0), "retrieval batch_size must be at least 1"),
    (lambda: RankingConfig(dropout=1.5), "ranking dropout must be in"),
    (lambda: RankingConfig(output="tanh"), "unknown rating output 'tanh'"),
    (lambda: IndexConfig(kind="faiss"), "unknown index 'faiss'"),
    (lambda: IndexConfig(num_leaves=0), "ScaNN num_leaves must be at least 1"),
    (lambda: ServingConfig(max_k=0), "max_k must be between 1 and num_candidates"),
])
def test_every_config_error_is_a_user_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_an_unknown_split_from_the_command_line(tmp_path, capsys):
    code = main(["train", "--data", "synthetic", "--out", str(tmp_path), "--test-fraction", "1.5"])
    assert code == 2 and "test fraction must be between 0 and 1" in capsys.readouterr().err


@pytest.mark.parametrize("strategy", ["multi-worker", "parameter-server"])
def test_a_cluster_without_tf_config_is_named(tmp_path, capsys, monkeypatch, strategy):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code = main(["train", "--data", "synthetic", "--out", str(tmp_path / "out"), "--strategy", strategy])
    assert code == 2 and f"--strategy {strategy} needs TF_CONFIG" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _unfinished_backup(out, settings: dict):
    import json

    backup = out / ".twostage-backup"
    (backup / "retrieval").mkdir(parents=True)  # one fit's epochs
    (backup / "run.json").write_text(json.dumps(settings))
    return backup


def test_an_unfinished_run_is_never_started_over_silently(tmp_path, capsys):
    backup = _unfinished_backup(tmp_path / "out", {})
    code = main(["train", "--data", "synthetic", "--out", str(tmp_path / "out")])
    assert code == 2 and "pass --resume to continue it, or remove that folder" in capsys.readouterr().err
    # --resume with other settings than the backup's is refused too, and the backup is kept.
    code = main(["train", "--data", "synthetic", "--out", str(tmp_path / "out"), "--resume"])
    assert code == 2 and "is of a run with other settings" in capsys.readouterr().err
    assert (backup / "retrieval").is_dir() and (backup / "run.json").is_file()


def test_an_empty_out_folder_the_user_made_outlives_a_failed_run(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code = main(["train", "--data", str(tmp_path / "no-such-data"), "--out", str(tmp_path / "out")])
    assert code == 2 and "no-such-data" in capsys.readouterr().err
    assert (tmp_path / "out").is_dir() and not any((tmp_path / "out").iterdir())


SMALL = "synthetic:users=60,movies=40,ratings=2400,seed=3"


def test_prepare_refuses_to_replace_a_prepared_folder_and_train_refuses_another_split(tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(["prepare", "--data", SMALL, "--out", str(out), "--shards", "2"]) == 0
    manifest = (out / "shards.json").read_text()
    assert main(["prepare", "--data", SMALL, "--out", str(out), "--seed", "5"]) == 2
    assert "holds a prepared folder (shards.json) already" in capsys.readouterr().err
    assert (out / "shards.json").read_text() == manifest
    assert main(["prepare", "--data", str(out), "--out", str(tmp_path / "again")]) == 2
    assert "is a prepared folder: give the data it was prepared from" in capsys.readouterr().err
    code = main(["train", "--data", str(out), "--out", str(tmp_path / "model"), "--seed", "7"])
    assert code == 2 and "was prepared with --seed 42" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_a_prepared_folder_stands_for_its_source_outside_training(tmp_path):
    from twostage.data import DataConfig, SplitConfig
    from twostage.data.prepared import prepare

    out = tmp_path / "prepared"
    assert main(["prepare", "--data", SMALL, "--out", str(out), "--shards", "2"]) == 0
    other_split = DataConfig(source=str(out), split=SplitConfig(seed=7))
    scored = prepare(other_split, for_training=False)  # e.g. evaluate --seed 7
    assert scored.shards is None and len(scored.data.ratings) == len(prepare(DataConfig(source=SMALL)).data.ratings)
    with pytest.raises(DataError, match="was prepared with --seed 42"):
        prepare(other_split)


def test_several_steps_a_call_across_workers_is_refused_before_anything_trains(tmp_path):
    import tensorflow as tf

    from twostage.data.sources import DataConfig
    from twostage.modeling.distribute import Cluster
    from twostage.modeling.training import TrainingRun
    from twostage.pipeline import PipelineConfig, train_stages

    # A data source that is not there: the check comes before the data is even read.
    config = PipelineConfig(data=DataConfig(source=str(tmp_path / "nowhere")),
                            ranking=RankingConfig(steps_per_execution=4))
    cluster = Cluster(tf.distribute.get_strategy(), kind="multi-worker", num_workers=2)
    with pytest.raises(ConfigError, match="ranking steps_per_execution 4: several workers train one step a call"):
        train_stages(config, run=TrainingRun(cluster))
