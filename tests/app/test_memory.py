"""Memory grows with the ratings: 1M ratings train and evaluate within a stated peak.

Each command runs as its own process, so that its peak resident set (from wait4) is its
own. Before the coded-id and example-row work, ML-1M-size training peaked at 2.1-2.2 GB.
"""

import os
import subprocess
import sys

import pytest

TRAIN_PEAK_GB = 2.0
EVALUATE_PEAK_GB = 2.0


def _peak_gb(arguments, tmp_path, name):
    with open(tmp_path / f"{name}.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "twostage.cli", *arguments], stdout=log, stderr=log)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            if process.poll() is None:
                process.kill()
    assert os.waitstatus_to_exitcode(status) == 0, (tmp_path / f"{name}.log").read_text()[-2000:]
    return usage.ru_maxrss * 1024 / 1e9


@pytest.mark.slow
def test_a_million_ratings_train_and_evaluate_within_the_stated_memory(tmp_path):
    data = "synthetic:users=6040,movies=3706,ratings=1000000"
    model = str(tmp_path / "model")
    train = _peak_gb(["train", "--data", data, "--out", model, "--epochs", "1", "--index", "brute-force"],
                     tmp_path, "train")
    assert train < TRAIN_PEAK_GB, f"train peaked at {train:.2f} GB"
    evaluate = _peak_gb(["evaluate", "--model", model, "--sample-users", "1000", "--json"], tmp_path, "evaluate")
    assert evaluate < EVALUATE_PEAK_GB, f"evaluate peaked at {evaluate:.2f} GB"
