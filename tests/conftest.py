import os
import subprocess
import sys

import pytest

import twostage  # noqa: F401  selects the legacy Keras before TensorFlow loads
from twostage.data import DataConfig, SyntheticConfig, generate

# Small enough that a full train + export takes seconds, big enough for planted tastes to show.
SMALL = SyntheticConfig(num_users=200, num_movies=160, mean_ratings_per_user=30, seed=3)


@pytest.fixture(scope="session")
def small_synthetic():
    return generate(SMALL)


@pytest.fixture(scope="session")
def small_data(small_synthetic):
    return small_synthetic.data


@pytest.fixture(scope="session")
def small_prepared(small_data):
    """The small synthetic set split as ``twostage train`` splits it (default split, 10% validation)."""
    from twostage.data.prepared import prepare

    return prepare(DataConfig(source="synthetic", synthetic=SMALL), small_data)


def small_pipeline_config(index="scann", epochs=8):
    from twostage.pipeline import PipelineConfig
    from twostage.ranking.config import RankingConfig
    from twostage.retrieval.config import IndexConfig, RetrievalConfig
    from twostage.serving.config import ServingConfig

    return PipelineConfig(
        data=DataConfig(source="synthetic", synthetic=SMALL),
        retrieval=RetrievalConfig(epochs=epochs, batch_size=256, patience=2),
        ranking=RankingConfig(epochs=epochs, batch_size=256, patience=2),
        index=IndexConfig(kind=index),
        serving=ServingConfig(num_candidates=50, max_k=20),
    )


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory):
    """A model trained on the small synthetic set and exported with a ScaNN index."""
    from twostage.pipeline import train

    out = tmp_path_factory.mktemp("export")
    result = train(small_pipeline_config(), str(out))
    return result


def run_python(code: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter (nothing imported yet), failing loudly."""
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)  # the package must set it itself
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc
