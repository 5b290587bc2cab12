"""Which ``tf.distribute`` strategy trains the models, and what each process's part is.

The cluster comes from ``TF_CONFIG``, as TensorFlow documents it: ``{"cluster": {"worker":
["host:port", ...]}, "task": {"type": "worker", "index": i}}``. Multi-worker: worker 0 is the
chief: it alone writes the export; the other workers train beside it and stop when training
ends. Parameter servers: the cluster also lists a "chief" (the coordinator, which runs the
command's work and writes the export) and "ps" tasks; worker and ps processes serve the
chief's steps and variables until they are stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re

import numpy as np
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
      worker_index: this process's worker index (0: the chief; under parameter servers, the
        coordinator is the chief).
      parameter_servers: the parameter servers holding the variables (parameter-server only).
    """

    strategy: tf.distribute.Strategy
    kind: str = "default"
    num_workers: int = 1
    worker_index: int = 0
    parameter_servers: int = 0

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the export (and what else is written once)."""
        return self.worker_index == 0

    @property
    def coordinated(self) -> bool:
        """Whether one coordinator dispatches steps to workers (``ParameterServerStrategy``):
        its models' variables live on the parameter servers, and ``fit`` takes a
        ``DatasetCreator`` and no batch-level callbacks."""
        return self.kind == "parameter-server"

    @property
    def several_workers(self) -> bool:
        """Whether more than one worker process trains (multi-worker, or parameter servers' workers)."""
        return self.num_workers > 1

    @property
    def _collective(self) -> bool:
        """Whether several processes take every decision together (multi-worker)."""
        return self.kind == "multi-worker" and self.several_workers

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
        if not self._collective:
            return value
        per_replica = self.strategy.run(lambda: tf.constant(value, tf.float64))
        return float(self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None))

    def lowest(self, value: int) -> int:
        """The least of the workers' ``value`` (e.g. the last epoch every one backed up)."""
        if not self._collective:
            return value
        per_replica = self.strategy.run(lambda: tf.constant([value], tf.int64))
        return int(tf.reduce_min(self.strategy.gather(per_replica, axis=0)))

    def check_batch(self, batch_size: int, what: str) -> None:
        """ConfigError unless ``batch_size`` splits evenly over the replicas."""
        if batch_size % self.replicas:
            raise ConfigError(f"{what} batch size {batch_size} does not split evenly over {self.replicas} replicas")

    def record(self) -> dict:
        """What the export's metadata says of the cluster that trained it."""
        record = {"strategy": self.kind, "workers": self.num_workers, "replicas": self.replicas}
        if self.coordinated:
            record["parameter_servers"] = self.parameter_servers
        return record


_EXAMPLE = {"multi-worker": '{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, '
                             '"task": {"type": "worker", "index": 0}}',
            "parameter-server": '{"cluster": {"chief": ["10.0.0.1:12345"], "worker": ["10.0.0.2:12345"], '
                                '"ps": ["10.0.0.3:12345"]}, "task": {"type": "chief", "index": 0}}'}
# The roles each strategy's cluster has (every one of them required).
_ROLES = {"multi-worker": ("worker",), "parameter-server": ("chief", "worker", "ps")}


def _tf_config(kind: str) -> dict:
    """TF_CONFIG, checked for a ``kind`` cluster (ConfigError with one sentence otherwise)."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise ConfigError(f"--strategy {kind} needs TF_CONFIG, the cluster and this task, e.g. "
                          f"{_EXAMPLE[kind]} (see docs/distributed.md)")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG is not JSON: {err}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise ConfigError("TF_CONFIG must be a JSON object with \"cluster\" and \"task\"")
    cluster, roles = config["cluster"], _ROLES[kind]
    for role in roles:
        addresses = cluster.get(role)
        if not isinstance(addresses, list) or not addresses or \
                not all(isinstance(a, str) and ":" in a for a in addresses):
            raise ConfigError(f"TF_CONFIG: \"cluster\" must list its \"{role}\" addresses as \"host:port\" strings")
    if set(cluster) - set(roles):
        described = ("has workers only (the first worker is the chief)" if kind == "multi-worker"
                     else "has one chief, workers and ps tasks")
        raise ConfigError(f"TF_CONFIG: a {kind} cluster {described}, not "
                          f"{', '.join(sorted(set(cluster) - set(roles)))}")
    if kind == "parameter-server" and len(cluster["chief"]) != 1:
        raise ConfigError(f"TF_CONFIG: a parameter-server cluster has one chief, got {len(cluster['chief'])}")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in roles or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(cluster[task["type"]]):
        shown = " or ".join(f'{{"type": "{role}", "index": i}}' for role in roles)
        raise ConfigError(f"TF_CONFIG: \"task\" must be {shown} with i an index into that role's addresses, "
                          f"got {task!r}")
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
    cluster_config = _tf_config(config.strategy)
    if config.strategy == "parameter-server":
        return _parameter_server_cluster(cluster_config)
    workers, index = len(cluster_config["cluster"]["worker"]), cluster_config["task"]["index"]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    log.info("multi-worker: worker %d of %d%s, %d replica(s) in all", index, workers, " (chief)" if index == 0 else "",
             strategy.num_replicas_in_sync)
    return Cluster(strategy, "multi-worker", workers, index)


# Embedding tables from this size on are split over the parameter servers (smaller variables
# stay whole, each on one server, round robin).
MIN_SHARD_BYTES = 256 << 10


class TablePartitioner(tf.distribute.experimental.partitioners.Partitioner):
    """Splits embedding tables (rank 2, at least ``MIN_SHARD_BYTES``) over the parameter
    servers, by rows; everything else stays whole, each variable on one server.

    The history tables a model pools are rank 1: a step reads them whole, and one
    variable is read in one piece.
    """

    def __init__(self, servers: int):
        self.tables = tf.distribute.experimental.partitioners.MinSizePartitioner(min_shard_bytes=MIN_SHARD_BYTES,
                                                                                 max_shards=servers)

    def __call__(self, shape, dtype, axis=0):
        if shape.rank != 2:
            return [1] * shape.rank
        return self.tables(shape, dtype, axis)


# Keras lists a variable split over parameter servers as its parts, named ".../part_K".
_PART = re.compile(r"^(?P<base>.*)/part_(?P<part>\d+)(?::\d+)?$")


def _grouped_parts(variables: list) -> list:
    """[(name, [variables])]: each variable alone, or the parts of one split variable together."""
    groups = []
    for variable in variables:
        match = _PART.match(variable.name)
        if match and int(match["part"]) > 0 and groups and groups[-1][0] == match["base"]:
            groups[-1][1].append(variable)
        else:
            groups.append((match["base"] if match else variable.name, [variable]))
    return groups


def sharded_variables(model: tf.keras.Model) -> dict:
    """Variable name -> parts, of ``model``'s variables split over parameter servers."""
    return {name: len(parts) for name, parts in _grouped_parts(model.weights) if len(parts) > 1}


def whole_weights(model: tf.keras.Model) -> list:
    """``model.get_weights()`` with each split variable's parts joined again: the weights of
    the same model built outside the strategy."""
    return [np.concatenate([part.numpy() for part in parts]) if len(parts) > 1 else parts[0].numpy()
            for _, parts in _grouped_parts(model.weights)]


def variables_are_remote() -> bool:
    """Whether variables created here go to parameter servers (inside that strategy's scope)."""
    return isinstance(tf.distribute.get_strategy(), tf.distribute.ParameterServerStrategy)


def _parameter_server_cluster(cluster_config: dict) -> Cluster:
    """The coordinator's cluster; a worker or ps task serves here until it is stopped."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    task = cluster_config["task"]
    workers, servers = len(cluster_config["cluster"]["worker"]), len(cluster_config["cluster"]["ps"])
    if task["type"] != "chief":
        serve(resolver, task["type"], task["index"])
    strategy = tf.distribute.ParameterServerStrategy(resolver, variable_partitioner=TablePartitioner(servers))
    log.info("parameter-server: coordinating %d worker(s), variables on %d parameter server(s)", workers, servers)
    return Cluster(strategy, "parameter-server", workers, 0, servers)


# How often a worker or ps task looks for its chief, and after how many misses in a row it stops.
CHIEF_CHECK_SECONDS = 5.0
CHIEF_MISSES = 3


def serve(resolver: tf.distribute.cluster_resolver.ClusterResolver, role: str, index: int) -> None:
    """Runs this worker or ps task of a parameter-server cluster; never returns.

    The task stops (exit code 0) once its chief, seen up, has been unreachable for
    ``CHIEF_MISSES`` checks in a row (the run is over, or the chief failed: a chief started
    again with ``--resume`` finds the tasks it needs restarted by its cluster manager), on
    SIGTERM (as a cluster manager stops a task) and on Ctrl-C.
    """
    import signal
    import socket
    import time

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=role, task_index=index,
                                  protocol=resolver.rpc_layer or "grpc", start=True)
    chief_host, chief_port = resolver.cluster_spec().task_address("chief", 0).rsplit(":", 1)
    log.info("parameter-server: %s %d serving at %s until its chief is done", role, index, server.target)
    seen, misses = False, 0
    try:
        while True:  # a Python loop, not server.join(): signals reach their handlers
            time.sleep(CHIEF_CHECK_SECONDS)
            try:
                socket.create_connection((chief_host, int(chief_port)), timeout=CHIEF_CHECK_SECONDS).close()
                seen, misses = True, 0
            except OSError:
                misses += 1
            if seen and misses >= CHIEF_MISSES:
                log.info("parameter-server: %s %d: the chief is gone; stopping", role, index)
                break
    except KeyboardInterrupt:
        pass
    # The server has no clean shutdown; the process ends here.
    logging.shutdown()
    os._exit(0)


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
