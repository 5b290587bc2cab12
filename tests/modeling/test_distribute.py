"""Training under a strategy: the cluster from TF_CONFIG, and replicas that train what one
device trains (in-batch negatives from the whole global batch, the mean over it)."""

import json

import pytest

from tests.conftest import run_python
from twostage.data.errors import ConfigError
from twostage.modeling.distribute import _tf_config, sharded_variables, whole_weights


def _with_tf_config(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value if isinstance(value, str) else json.dumps(value))


@pytest.mark.parametrize("value, expected", [
    (None, "needs TF_CONFIG"),
    ("{not json", "TF_CONFIG is not JSON"),
    ({"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}, "host:port"),
    ({"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}},
     "has workers only .* not ps"),
    ({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 2}},
     "an index into that role's addresses"),
])
def test_a_bad_multi_worker_tf_config_is_named(monkeypatch, value, expected):
    _with_tf_config(monkeypatch, value)
    with pytest.raises(ConfigError, match=expected):
        _tf_config("multi-worker")


PS_CLUSTER = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"], "ps": ["127.0.0.1:4"]}


@pytest.mark.parametrize("value, expected", [
    (None, "--strategy parameter-server needs TF_CONFIG.*\"ps\""),
    ({"cluster": {"worker": ["127.0.0.1:2"], "ps": ["127.0.0.1:4"]}, "task": {"type": "worker", "index": 0}},
     "\"chief\" addresses"),
    ({"cluster": {**PS_CLUSTER, "ps": []}, "task": {"type": "chief", "index": 0}}, "\"ps\" addresses"),
    ({"cluster": {**PS_CLUSTER, "chief": ["127.0.0.1:1", "127.0.0.1:5"]}, "task": {"type": "chief", "index": 0}},
     "one chief, got 2"),
    ({"cluster": {**PS_CLUSTER, "evaluator": ["127.0.0.1:6"]}, "task": {"type": "chief", "index": 0}},
     "not evaluator"),
    ({"cluster": PS_CLUSTER, "task": {"type": "ps", "index": 1}}, "an index into that role's addresses"),
    ({"cluster": PS_CLUSTER, "task": {"type": "master", "index": 0}}, "\"type\": \"chief\""),
])
def test_a_bad_parameter_server_tf_config_is_named(monkeypatch, value, expected):
    _with_tf_config(monkeypatch, value)
    with pytest.raises(ConfigError, match=expected):
        _tf_config("parameter-server")


@pytest.mark.parametrize("kind, config", [
    ("multi-worker", {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}),
    ("parameter-server", {"cluster": PS_CLUSTER, "task": {"type": "worker", "index": 1}}),
])
def test_a_good_tf_config_is_read(monkeypatch, kind, config):
    _with_tf_config(monkeypatch, config)
    assert _tf_config(kind) == config


class _Weights:
    def __init__(self, weights):
        self.weights = weights


def test_the_parts_of_a_split_variable_are_joined_in_order():
    import numpy as np
    import tensorflow as tf

    weights = [tf.Variable(np.ones((2, 3)), name="table/part_0"), tf.Variable(np.zeros((1, 3)), name="table/part_1"),
               tf.Variable(np.arange(3.0), name="bias"), tf.Variable(np.ones((1, 2)), name="other/part_0")]
    model = _Weights(weights)
    assert sharded_variables(model) == {"table": 2}
    joined = whole_weights(model)
    assert [w.shape for w in joined] == [(3, 3), (3,), (1, 2)]
    assert (joined[0] == np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0]])).all()


@pytest.mark.slow
def test_two_replicas_train_the_weights_one_device_trains():
    # Two logical CPUs stand in for two GPUs (or two workers): each replica gets half of every
    # global batch. Without the cross-replica negatives the in-batch weights differ.
    run_python('''
import numpy as np
import twostage
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from twostage.data import DataConfig, SyntheticConfig, generate
from twostage.data.prepared import prepare
from twostage.modeling.distribute import Cluster
from twostage.modeling.training import TrainingRun
from twostage.ranking.config import RankingConfig
from twostage.ranking.train import train_ranking
from twostage.retrieval.config import RetrievalConfig
from twostage.retrieval.train import train_retrieval

synthetic = SyntheticConfig(num_users=150, num_movies=100, mean_ratings_per_user=20, seed=1)
prepared = prepare(DataConfig(source="synthetic", synthetic=synthetic), generate(synthetic).data)
# Logical CPUs share one collective executor: sum their gradients on one device instead.
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
runs = [TrainingRun(), TrainingRun(Cluster(mirrored, "mirrored"))]
assert runs[1].cluster.replicas == 2
for loss in ("in-batch", "full-softmax"):
    config = RetrievalConfig(epochs=2, batch_size=128, loss=loss)
    one, two = [train_retrieval(prepared, config, run=run).model.get_weights() for run in runs]
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-5, err_msg=loss)
# The multinomial loss splits histories with per-replica random draws: it trains under the
# strategy (each replica sums its users' losses, as the per-rating losses do).
trained = train_retrieval(prepared, RetrievalConfig(epochs=2, batch_size=32, loss="multinomial"), run=runs[1])
assert trained.fit.history[-1]["validation"]["recall@100"] > 0
assert all(np.isfinite(w).all() for w in trained.model.get_weights())
# Dropout draws differ per replica; the mean squared error over the global batch does not.
config = RankingConfig(epochs=2, batch_size=128, dropout=0.0, refit=False)
one, two = [train_ranking(prepared, config, run=run).fit.validation_model.get_weights() for run in runs]
for a, b in zip(one, two):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-5, err_msg="ranking")
''', timeout=600)
