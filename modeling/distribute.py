"""Which ``tf.distribute`` strategy trains the models, and what each process's part is.

The cluster comes from ``TF_CONFIG``, as TensorFlow documents it: ``{"cluster": {"worker":
["host:port", ...]}, "task": {"type": "worker", "index": i}}``. Worker 0 is the chief: it
alone writes the export; the other workers train beside it and stop when training ends.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tensorflow as tf

from twostage.data.errors import ConfigError
from twostage.modeling.distribute_config import DistributeConfig

log = logging.getLogger("twostage")

@dataclasses.dataclass(frozen=True)
class Cluster:
    """A strategy and this process's place in it.

    Attributes:
      strategy: the ``tf.distribute`` strategy models are built and trained under.
      kind: the strategy's name (``STRATEGIES``).
      num_workers: worker processes training together (1 unless multi-worker).
      worker_index: this process's worker index (0: the chief).
    """

    strategy: tf.distribute.Strategy
    kind: str = "default"
    num_workers: int = 1
    worker_index: int = 0

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the export (and what else is written once)."""
        return self.worker_index == 0

    @property
    def replicas(self) -> int:
        """Model replicas in sync across the cluster (the global batch is split among them)."""
        return self.strategy.num_replicas_in_sync

    def agree(self, value: float) -> float:
        """The mean of ``value`` over the workers, the same number in every worker.

        Decisions taken from validation figures (the best epoch, when to stop) must be taken
        alike by every worker, or their collective steps stop matching and the run hangs;
        each worker's figure is the same in exact arithmetic, not always in floating point
        across machines.
        """
        if self.num_workers == 1:
            return value
        per_replica = self.strategy.run(lambda: tf.constant(value, tf.float64))
        return float(self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None))

    def lowest(self, value: int) -> int:
        """The least of the workers' ``value`` (e.g. the last epoch every one backed up)."""
        if self.num_workers == 1:
            return value
        per_replica = self.strategy.run(lambda: tf.constant([value], tf.int64))
        return int(tf.reduce_min(self.strategy.gather(per_replica, axis=0)))

    def check_batch(self, batch_size: int, what: str) -> None:
        """ConfigError unless ``batch_size`` splits evenly over the replicas."""
        if batch_size % self.replicas:
            raise ConfigError(f"{what} batch size {batch_size} does not split evenly over {self.replicas} replicas")

    def record(self) -> dict:
        """What the export's metadata says of the cluster that trained it."""
        return {"strategy": self.kind, "workers": self.num_workers, "replicas": self.replicas}


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise ConfigError("--strategy multi-worker needs TF_CONFIG, the cluster and this task, e.g. "
                          '{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, '
                          '"task": {"type": "worker", "index": 0}} (see docs/distributed.md)')
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG is not JSON: {err}") from None
    if not isinstance(config, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with \"cluster\" and \"task\"")
    workers = (config.get("cluster") or {}).get("worker") if isinstance(config.get("cluster"), dict) else None
    task = config.get("task")
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise ConfigError("TF_CONFIG: \"cluster\" must list its \"worker\" addresses as \"host:port\" strings")
    if set(config["cluster"]) - {"worker"}:
        raise ConfigError(f"TF_CONFIG: multi-worker training has workers only, not "
                          f"{', '.join(sorted(set(config['cluster']) - {'worker'}))} (the first worker is the chief)")
    if not isinstance(task, dict) or task.get("type") != "worker" or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(workers):
        raise ConfigError(f"TF_CONFIG: \"task\" must be {{\"type\": \"worker\", \"index\": i}} with i from 0 to "
                          f"{len(workers) - 1}, got {task!r}")
    return config


def connect(config: DistributeConfig) -> Cluster:
    """Creates the strategy (before any other TensorFlow work, as multi-worker needs).

    Raises:
      ConfigError: multi-worker without a usable ``TF_CONFIG``.
    """
    if config.strategy == "default":
        return Cluster(tf.distribute.get_strategy())
    if config.strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if not gpus:
            log.info("mirrored: no GPU here; training on the CPU as one replica")
        strategy = tf.distribute.MirroredStrategy()
        log.info("mirrored: %d replica(s) on %s", strategy.num_replicas_in_sync,
                 ", ".join(device.name for device in gpus) or "the CPU")
        return Cluster(strategy, "mirrored")
    cluster_config = _tf_config()
    workers, index = len(cluster_config["cluster"]["worker"]), cluster_config["task"]["index"]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    log.info("multi-worker: worker %d of %d%s, %d replica(s) in all", index, workers, " (chief)" if index == 0 else "",
             strategy.num_replicas_in_sync)
    return Cluster(strategy, "multi-worker", workers, index)


def default_cluster() -> Cluster:
    """This process alone, on the current (default) strategy."""
    return Cluster(tf.distribute.get_strategy())


def cross_replica_concat(values: tf.Tensor) -> tf.Tensor:
    """Every replica's ``values`` along axis 0, this replica's first (then the next ones').

    In-batch negatives under a strategy: each replica holds only its slice of the global
    batch; concatenating every replica's candidates gives each query the negatives it would
    have had on one device (gradients flow back to every replica).

    Args:
      values: [local batch, ...] this replica's part (the same size on every replica).

    Returns:
      [replicas x local batch, ...]; ``values`` itself outside a multi-replica step.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    gathered = context.all_gather(values, axis=0)
    return tf.roll(gathered, -context.replica_id_in_sync_group * tf.shape(values)[0], axis=0)


def replica_count() -> int:
    """Replicas whose gradients the optimizer sums in this step (1 outside a multi-replica step).

    A loss that is a mean over the replica's slice of the batch is divided by it, so that the
    summed gradients are those of the mean over the global batch.
    """
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync
