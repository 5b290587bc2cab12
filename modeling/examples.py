"""Training examples as integer rows, their features gathered per batch from small tables.

A rating's features are its user's and its movie's: joining them onto every row costs a
string (or a ragged token list) per rating per feature, gigabytes at 25M ratings. Here the
examples hold only integer rows (``user_id``: the user-vocabulary row, 0 for an unknown
user; ``movie_id``: the catalog row, position + 1, as ``IdEmbedding.index`` gives them) and
labels; every batch gathers its features from one table per user row and one per catalog
movie, in the form the model reads (looked up once, when the tables are built).
"""

from __future__ import annotations

import copy
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

Columns = Dict[str, np.ndarray]


def worker_salt() -> tf.Tensor:
    """A number drawn anew wherever the op runs (seeds 0 and 0: from the OS).

    Parameter servers give every worker the same dataset function and no input pipeline id
    (TensorFlow expects "datasets shuffled differently" per worker): a seeded order would
    hand every worker the same batches. Salting the seed makes each worker's order its own;
    an epoch is then ``steps_per_epoch`` batches drawn by the workers, not one exact pass
    (exactly-once visitation would need the tf.data service).
    """
    return tf.raw_ops.RandomUniformInt(shape=tf.constant([], tf.int32), minval=tf.constant(1, tf.int64),
                                       maxval=tf.constant(2 ** 40, tf.int64), seed=0, seed2=0)


def _epoch_seed(shuffle_seed: int, salted: bool) -> tf.Tensor:
    """The seed every epoch's order is drawn from: ``shuffle_seed``, salted per worker."""
    return tf.constant(shuffle_seed, tf.int64) + (worker_salt() if salted else 0)


# The input pipeline's functions are traced as written: none branches on a tensor, and
# AutoGraph's conversion of them (and of every expand function they call) took about 1 s of
# each fit's start on ml-100k.
_as_written = tf.autograph.experimental.do_not_convert


def _prefetched(batches: tf.data.Dataset) -> tf.data.Dataset:
    """The input pipeline's last stage, the same for in-memory rows and shard files."""
    # Fixed parallelism, no autotuning: tearing down an autotuned iterator stalled ``fit``
    # by up to ten seconds at its end on a 2-core machine.
    options = tf.data.Options()
    options.autotune.enabled = False
    # Each input pipeline already reads its own slice (``epochs``): nothing to shard.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return batches.prefetch(2).with_options(options)


class ExampleTables:
    """Per-user and per-movie model inputs, gathered by the rows of each batch.

    Args:
      index: feature columns (string tensors) -> the model's input form for the features
        it reads (its ``index_features``); features it does not read are left out.
      user_columns: feature name -> one value per user-vocabulary row (row 0: unknown user).
      movie_columns: feature name -> one value per catalog movie, in catalog order.
    """

    def __init__(self, index: Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]], user_columns: Columns,
                 movie_columns: Columns):
        def tables(columns: Columns, id_name: str) -> Dict[str, tf.Tensor]:
            features = {name: tf.constant(values) for name, values in columns.items() if name != id_name}
            return index(features) if features else {}

        self.user = tables(user_columns, "user_id")
        self.movie = tables(movie_columns, "movie_id")

    def expand(self, rows: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """A batch of example rows -> the model's features ([batch] each, ragged for token lists)."""
        features = dict(rows)
        for name, table in self.user.items():
            features[name] = tf.gather(table, rows["user_id"])
        if "movie_id" in rows:  # examples of whole users have no movie
            movie_positions = tf.maximum(rows["movie_id"] - 1, 0)
            for name, table in self.movie.items():
                features[name] = tf.gather(table, movie_positions)
        return features


def repeated_for_steps(rows: np.ndarray, batch_size: int, min_steps: int) -> np.ndarray:
    """``rows`` repeated as a whole as often as makes at least ``min_steps`` batches (once at
    least): a small dataset's single pass is a handful of steps, and validating after each
    epoch would cost more than training, or stop it by patience before it learned anything."""
    passes = max(1, -(-min_steps * batch_size // max(1, len(rows))))
    return np.tile(rows, passes)


def _user_chunks(rows: Columns, chunk: int, seed: int):
    """``rows`` ordered by user (each user's in a seeded random order), and the (start,
    length) of every chunk of at most ``chunk`` consecutive rows of one user."""
    users = np.asarray(rows["user_id"])
    order = np.lexsort((np.random.default_rng(seed).random(len(users)), users))
    users = users[order]
    first = np.r_[0, np.flatnonzero(np.diff(users)) + 1]  # where each user's rows begin
    rank = np.arange(len(users)) - np.repeat(first, np.diff(np.r_[first, len(users)]))
    starts = np.flatnonzero(rank % chunk == 0)
    lengths = np.diff(np.r_[starts, len(users)])
    sorted_rows = {name: np.asarray(values)[order] for name, values in rows.items()}
    return sorted_rows, (tf.constant(starts, tf.int64), tf.constant(lengths, tf.int64))


class ExampleBatches:
    """In-memory example rows cut into batches: a new seeded permutation every epoch, or in order.

    Each epoch's permutation is a function of the seed and the epoch's number alone, so a run
    resumed at epoch ``k`` sees what an uninterrupted one would have, and under a
    ``tf.distribute`` strategy every input pipeline cuts its own slice of the same global
    batches before gathering their features.

    Args:
      rows: column name -> array (or tensor), all of the same length.
      batch_size: examples per (global) batch.
      shuffle_seed: a new permutation every epoch from this seed; None keeps the order.
      drop_remainder: when shuffling, drop the last, smaller batch (one batch shape means one
        trace of the train step; every epoch drops other rows).
      expand: batch of rows -> features (ExampleTables.expand), run in the pipeline.
      user_chunk: when shuffling, keep each user's rows in chunks of at most this many (a
        user's rows in a seeded random order, cut into chunks once) and permute the chunks
        instead of the rows: a batch then holds fewer distinct users, and pooling each
        distinct user's history once is the largest cost of a step that pools them.
        None: rows are permuted one by one.
    """

    def __init__(self, rows: Columns, batch_size: int, shuffle_seed: Optional[int] = None,
                 drop_remainder: bool = False,
                 expand: Optional[Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]] = None,
                 user_chunk: Optional[int] = None):
        self.chunks = None
        if user_chunk and shuffle_seed is not None:
            rows, self.chunks = _user_chunks(rows, user_chunk, shuffle_seed)
        self.tensors = {name: values if isinstance(values, (tf.Tensor, tf.RaggedTensor)) else tf.constant(values)
                        for name, values in rows.items()}
        self.size = int(next(iter(self.tensors.values())).shape[0])
        self.batch_size, self.shuffle_seed, self.expand = batch_size, shuffle_seed, expand
        self.drop_remainder = drop_remainder and shuffle_seed is not None and self.size >= batch_size
        self.steps_per_epoch = self.size // batch_size if self.drop_remainder else -(-self.size // batch_size)
        self.salted = False

    @property
    def examples_per_step(self) -> Optional[int]:
        """Examples in every batch, when they all have the same number (else None)."""
        return self.batch_size if self.drop_remainder or self.size % self.batch_size == 0 else None

    def _epoch(self, epoch: tf.Tensor) -> tf.data.Dataset:
        """The batches of row numbers of one epoch ([batch] int64 each)."""
        size, batch, full = self.size, self.batch_size, self.steps_per_epoch
        if self.shuffle_seed is None:
            return tf.data.Dataset.range(full).map(
                _as_written(lambda b: tf.range(b * batch, tf.minimum((b + 1) * batch, size))))
        # One permutation per epoch, cut into batches: shuffling row numbers one element at
        # a time through tf.data costs seconds per million rows, and memory per element.
        seed = tf.stack([_epoch_seed(self.shuffle_seed, self.salted), tf.cast(epoch, tf.int64)])
        if self.chunks is None:
            order = tf.random.experimental.stateless_shuffle(tf.range(size, dtype=tf.int64), seed=seed)
        else:
            starts, lengths = self.chunks
            chosen = tf.random.experimental.stateless_shuffle(tf.range(tf.size(starts, tf.int64)), seed=seed)
            start = tf.gather(starts, chosen)
            order = tf.ragged.range(start, start + tf.gather(lengths, chosen)).flat_values
        if full * batch <= size:
            return tf.data.Dataset.from_tensor_slices(tf.reshape(order[:full * batch], [full, batch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch)

    def _features(self, batches: tf.data.Dataset) -> tf.data.Dataset:
        return _prefetched(batches.map(_as_written(self._gather), num_parallel_calls=2, deterministic=True))

    def _gather(self, index: tf.Tensor) -> Dict[str, tf.Tensor]:
        batch = {name: tf.gather(t, index) for name, t in self.tensors.items()}
        return self.expand(batch) if self.expand else batch

    def for_cluster(self, cluster) -> "ExampleBatches":
        """The batches ``cluster``'s input pipelines read: the same ones (each cuts its slice
        when it is made), or under parameter servers each worker's own order (``salted``)."""
        if not cluster.coordinated:
            return self
        salted = copy.copy(self)
        salted.salted = True
        return salted

    def head(self, count: int) -> Dict[str, tf.Tensor]:
        """The features of the first ``count`` rows (e.g. to create a model's variables)."""
        return self._gather(tf.range(min(count, self.size), dtype=tf.int64))

    def dataset(self) -> tf.data.Dataset:
        """One pass (epoch 0): for prediction and evaluation."""
        return self._features(self._epoch(tf.constant(0, tf.int64)))

    def epochs(self, first: int = 0, input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        """Epoch ``first``, then the next ones, without end (``fit`` cuts them by ``steps_per_epoch``).

        Args:
          first: the number of the first epoch (a resumed run's next one).
          input_context: under a strategy, which input pipeline this is: it keeps its share of
            each global batch, one element per local replica (``batch_size`` must divide
            evenly among all replicas).
        """
        batches = tf.data.Dataset.range(first, 2 ** 62).flat_map(_as_written(self._epoch))
        if input_context is not None and input_context.num_replicas_in_sync > 1:
            local = input_context.num_replicas_in_sync // input_context.num_input_pipelines
            per_replica = input_context.get_per_replica_batch_size(self.batch_size)
            share = per_replica * local
            pipeline = input_context.input_pipeline_id
            batches = batches.flat_map(_as_written(lambda index: tf.data.Dataset.from_tensor_slices(
                tf.reshape(index[pipeline * share:(pipeline + 1) * share], [local, per_replica]))))
        return self._features(batches)



class ShardedBatches:
    """Example rows read from shard files (data.shards): each input pipeline reads its own.

    Every epoch, the files' order and the rows inside each file are permuted from (seed,
    epoch) alone, and the rows are cut into batches in that order (the last, smaller batch
    dropped), so a resumed run sees what an uninterrupted one would have. Under
    ``multi-worker``, worker ``w`` of ``n`` reads files ``w, w + n, ...`` and cuts its share
    of the global batch from them, the same number of steps as every other worker; under
    parameter servers (no input pipeline ids there) each worker reads every file in an
    order of its own (``worker_salt``), and the steps of an epoch go to whichever worker is
    free.

    Args:
      files: the part's shard files (data.shards.ShardFile).
      batch_size: examples per (global) batch.
      shuffle_seed: seeds every epoch's order.
      expand: batch of rows ("user_id", "movie_id", "rating") -> features, in the pipeline.
      pipelines: input pipelines that split the files between them (``for_cluster`` sets it).
    """

    def __init__(self, files, batch_size: int, shuffle_seed: int,
                 expand: Optional[Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]] = None,
                 pipelines: int = 1, salted: bool = False):
        self.files, self.batch_size, self.shuffle_seed, self.expand = list(files), batch_size, shuffle_seed, expand
        self.pipelines, self.salted = pipelines, salted
        if len(self.files) < pipelines:
            raise ValueError(f"{len(self.files)} shard file(s) cannot feed {pipelines} input pipelines: "
                             f"prepare at least {pipelines} shards")
        # In lockstep, every pipeline takes as many steps as the one with the fewest rows.
        self.steps_per_epoch = min(self._steps(p) for p in range(pipelines))

    def for_cluster(self, cluster) -> "ShardedBatches":
        """The same batches, their files split over ``cluster``'s input pipelines."""
        if cluster.coordinated:
            return ShardedBatches(self.files, self.batch_size, self.shuffle_seed, self.expand, salted=True)
        if cluster.several_workers:
            return ShardedBatches(self.files, self.batch_size, self.shuffle_seed, self.expand, cluster.num_workers)
        return self

    @property
    def examples_per_step(self) -> int:
        return self.batch_size

    def _pipeline_batch(self) -> int:
        return self.batch_size // self.pipelines

    def _steps(self, pipeline: int) -> int:
        batch = self._pipeline_batch()
        return sum(shard.rows for shard in self.files[pipeline::self.pipelines]) // batch

    @staticmethod
    def _read(path: tf.Tensor) -> Dict[str, tf.Tensor]:
        values = tf.reshape(tf.io.decode_raw(tf.io.read_file(path), tf.int32, little_endian=True), [3, -1])
        return {"user_id": tf.cast(values[0], tf.int64), "movie_id": tf.cast(values[1], tf.int64),
                "rating": tf.bitcast(values[2], tf.float32)}

    def _epoch(self, epoch: tf.Tensor, paths: tf.Tensor, batch: int, steps: int) -> tf.data.Dataset:
        seed = _epoch_seed(self.shuffle_seed, self.salted)
        epoch = tf.cast(epoch, tf.int64)
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.size(paths, out_type=tf.int64)),
                                                         seed=tf.stack([seed, epoch]))
        files = tf.data.Dataset.from_tensor_slices((tf.gather(paths, order), order))

        def permuted(path, file_index):
            rows = self._read(path)
            permutation = tf.random.experimental.stateless_shuffle(
                tf.range(tf.size(rows["user_id"], out_type=tf.int64)),
                seed=tf.stack([seed, epoch * 1_000_003 + file_index + 1]))
            return {name: tf.gather(values, permutation) for name, values in rows.items()}

        # One element per file, its rows permuted; rebatch cuts batches across file boundaries.
        return files.map(_as_written(permuted)).rebatch(batch, drop_remainder=True).take(steps)

    def epochs(self, first: int = 0, input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        """Epoch ``first``, then the next ones, without end; see ExampleBatches.epochs."""
        pipeline = input_context.input_pipeline_id if input_context is not None else 0
        if input_context is not None and input_context.num_input_pipelines != self.pipelines:
            raise ValueError(f"batches made for {self.pipelines} input pipelines fed to "
                             f"{input_context.num_input_pipelines}")
        paths = tf.constant([shard.path for shard in self.files[pipeline::self.pipelines]])
        batch, steps = self._pipeline_batch(), self.steps_per_epoch
        batches = tf.data.Dataset.range(first, 2 ** 62).flat_map(
            _as_written(lambda epoch: self._epoch(epoch, paths, batch, steps)))
        if input_context is not None and input_context.num_replicas_in_sync > self.pipelines:
            local = input_context.num_replicas_in_sync // self.pipelines
            batches = batches.flat_map(_as_written(lambda rows: tf.data.Dataset.from_tensor_slices(
                {name: tf.reshape(values, [local, -1]) for name, values in rows.items()})))
        return self._features(batches)

    def _features(self, batches: tf.data.Dataset) -> tf.data.Dataset:
        if self.expand is not None:
            batches = batches.map(_as_written(self.expand), num_parallel_calls=2, deterministic=True)
        return _prefetched(batches)

    def head(self, count: int) -> Dict[str, tf.Tensor]:
        """The features of the first ``count`` rows of the first file."""
        rows = {name: values[:count] for name, values in self._read(tf.constant(self.files[0].path)).items()}
        return self.expand(rows) if self.expand else rows

    def dataset(self) -> tf.data.Dataset:
        """One pass over every file in order (epoch 0's batches, unshuffled files)."""
        paths = tf.constant([shard.path for shard in self.files])
        return self._features(
            tf.data.Dataset.from_tensor_slices(paths).map(_as_written(self._read)).unbatch().batch(self.batch_size))
