"""Integer example rows, batched and shuffled per epoch; features gathered from per-row tables."""

import numpy as np
import tensorflow as tf

from twostage.modeling.examples import ExampleBatches, ExampleTables, repeated_for_steps


def _epochs(batches: ExampleBatches, epochs: int, first: int = 0, **kwargs):
    iterator = iter(batches.epochs(first, **kwargs))
    return [[next(iterator)["row"].numpy() for _ in range(batches.steps_per_epoch)] for _ in range(epochs)]


def test_every_epoch_is_a_new_permutation_and_runs_repeat_exactly():
    rows = {"row": np.arange(103)}
    first = _epochs(ExampleBatches(rows, 10, shuffle_seed=5), 3)
    for epoch in first:
        assert sorted(np.concatenate(epoch).tolist()) == list(range(103))  # every row once
    assert not np.array_equal(np.concatenate(first[0]), np.concatenate(first[1]))
    again = _epochs(ExampleBatches(rows, 10, shuffle_seed=5), 3)
    assert all(np.array_equal(np.concatenate(a), np.concatenate(b)) for a, b in zip(first, again))
    other = _epochs(ExampleBatches(rows, 10, shuffle_seed=6), 1)
    assert not np.array_equal(np.concatenate(other[0]), np.concatenate(first[0]))


def test_user_chunks_keep_a_users_rows_together_and_every_row_once_an_epoch():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 40, 1000)
    rows = {"row": np.arange(1000), "user_id": users}
    chunked = ExampleBatches(rows, 100, shuffle_seed=5, user_chunk=8)
    plain = ExampleBatches(rows, 100, shuffle_seed=5)
    epochs = _epochs(chunked, 2)
    for epoch in epochs:
        order = np.concatenate(epoch)
        assert sorted(order.tolist()) == list(range(1000))  # every row once, no row twice
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))

    def distinct_users(batches):
        iterator = iter(batches.epochs())
        return np.mean([len(np.unique(next(iterator)["user_id"].numpy())) for _ in range(batches.steps_per_epoch)])

    assert distinct_users(chunked) < 0.6 * distinct_users(plain)
    # Runs of one user's rows: at most 8 long, each a piece of that user's rows.
    order = np.concatenate(epochs[0])
    boundaries = np.flatnonzero(np.diff(users[order]) != 0) + 1
    assert max(np.diff(np.r_[0, boundaries, len(order)])) <= 16  # two chunks of one user may meet


def test_a_resumed_run_sees_the_epochs_an_uninterrupted_one_does():
    batches = ExampleBatches({"row": np.arange(57)}, 8, shuffle_seed=3, drop_remainder=True)
    whole = _epochs(batches, 4)
    resumed = _epochs(batches, 2, first=2)
    assert all(np.array_equal(np.stack(a), np.stack(b)) for a, b in zip(whole[2:], resumed))


def test_each_input_pipeline_reads_its_slice_of_the_same_global_batches():
    batches = ExampleBatches({"row": np.arange(100)}, 8, shuffle_seed=1, drop_remainder=True)
    whole = _epochs(batches, 2)
    # Two workers with two replicas each: every pipeline yields one element per local replica.
    parts = []
    for pipeline in range(2):
        iterator = iter(batches.epochs(0, tf.distribute.InputContext(2, pipeline, 4)))
        parts.append([next(iterator)["row"].numpy() for _ in range(2 * 2 * batches.steps_per_epoch)])
    for step in range(2 * batches.steps_per_epoch):
        global_batch = np.concatenate([parts[p][2 * step + r] for p in range(2) for r in range(2)])
        assert np.array_equal(global_batch, whole[step // batches.steps_per_epoch][step % batches.steps_per_epoch])
        assert all(len(parts[p][2 * step + r]) == 2 for p in range(2) for r in range(2))


def test_drop_remainder_keeps_one_batch_shape_and_order_is_kept_unshuffled():
    batches = ExampleBatches({"row": np.arange(103)}, 10, shuffle_seed=1, drop_remainder=True)
    dropped = _epochs(batches, 2)
    assert all(len(batch) == 10 for epoch in dropped for batch in epoch) and len(dropped[0]) == 10
    assert batches.examples_per_step == 10
    in_order = ExampleBatches({"row": np.arange(23)}, 10)
    ordered = [b["row"].numpy() for b in in_order.dataset()]
    assert [len(b) for b in ordered] == [10, 10, 3] and np.concatenate(ordered).tolist() == list(range(23))
    assert in_order.examples_per_step is None and in_order.steps_per_epoch == 3


def test_tables_gather_each_rows_user_and_movie_features_in_the_models_form():
    lookup = tf.keras.layers.StringLookup(vocabulary=["a", "b", "c"], mask_token=None)

    def index(features):  # a model that looks "genre" up and reads "zip" as it is
        return {name: lookup(values) if name == "genre" else values for name, values in features.items()}

    tables = ExampleTables(index, {"zip": np.asarray(["", "10", "20"])},
                           {"movie_id": np.asarray(["m1", "m2"]), "genre": np.asarray(["b", "c"])})
    rows = {"user_id": np.asarray([2, 0, 1]), "movie_id": np.asarray([1, 2, 2]), "rating": np.asarray([5.0, 3.0, 1.0])}
    batch = next(iter(ExampleBatches(rows, 3, expand=tables.expand).dataset()))
    assert batch["zip"].numpy().tolist() == [b"20", b"", b"10"]
    assert batch["genre"].numpy().tolist() == [2, 3, 3]  # "b", "c", "c" after the out-of-vocabulary row
    assert batch["rating"].numpy().tolist() == [5.0, 3.0, 1.0] and "movie_title" not in batch
    head = ExampleBatches(rows, 3, expand=tables.expand).head(2)
    assert head["zip"].numpy().tolist() == [b"20", b""]


def _shards(tmp_path, sizes):
    from twostage.data.shards import ShardFile

    files, start = [], 0
    for index, size in enumerate(sizes):
        path = tmp_path / f"part-{index}.bin"
        users = np.arange(start, start + size, dtype="<i4")
        path.write_bytes(users.tobytes() + (users + 1000).astype("<i4").tobytes() +
                         (users * 0.5).astype("<f4").tobytes())
        files.append(ShardFile(str(path), size))
        start += size
    return files


def _sharded_epochs(batches, epochs, first=0, context=None):
    iterator = iter(batches.epochs(first, context))
    return [[next(iterator) for _ in range(batches.steps_per_epoch)] for _ in range(epochs)]


def test_shard_files_give_every_row_once_an_epoch_in_a_seeded_order(tmp_path):
    from twostage.modeling.examples import ShardedBatches

    batches = ShardedBatches(_shards(tmp_path, [30, 25, 26]), 8, shuffle_seed=4)
    assert batches.steps_per_epoch == 81 // 8
    epochs = _sharded_epochs(batches, 3)
    for epoch in epochs:
        users = np.concatenate([b["user_id"].numpy() for b in epoch])
        assert len(set(users.tolist())) == len(users) == 80  # one smaller batch dropped, across files
        for batch in epoch:  # the columns stay together
            assert (batch["movie_id"].numpy() == batch["user_id"].numpy() + 1000).all()
            assert np.allclose(batch["rating"].numpy(), batch["user_id"].numpy() * 0.5)
    flat = [np.concatenate([b["user_id"].numpy() for b in epoch]) for epoch in epochs]
    assert not np.array_equal(flat[0], flat[1])
    resumed = _sharded_epochs(batches, 1, first=2)[0]
    assert np.array_equal(np.concatenate([b["user_id"].numpy() for b in resumed]), flat[2])


def test_workers_in_lockstep_read_their_own_files_for_the_same_steps(tmp_path):
    from twostage.modeling.distribute import Cluster
    from twostage.modeling.examples import ShardedBatches

    files = _shards(tmp_path, [20, 20, 20, 19])
    two_workers = Cluster(tf.distribute.get_strategy(), "multi-worker", num_workers=2)
    batches = ShardedBatches(files, 8, shuffle_seed=1).for_cluster(two_workers)
    assert batches.steps_per_epoch == 39 // 4  # each worker cuts 4 of the 8 examples a step
    seen = []
    for pipeline in range(2):
        epoch = _sharded_epochs(batches, 1, context=tf.distribute.InputContext(2, pipeline, 2))[0]
        assert all(b["user_id"].shape == (4,) for b in epoch)
        seen.append(set(np.concatenate([b["user_id"].numpy() for b in epoch]).tolist()))
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] <= set(range(0, 20)) | set(range(40, 60))  # files 0 and 2


def test_parameter_server_workers_each_draw_their_own_order(tmp_path):
    from twostage.modeling.distribute import Cluster
    from twostage.modeling.examples import ShardedBatches

    coordinated = Cluster(tf.distribute.get_strategy(), "parameter-server", num_workers=2, parameter_servers=1)
    batches = ShardedBatches(_shards(tmp_path, [40, 40]), 8, shuffle_seed=1).for_cluster(coordinated)
    first, second = (np.concatenate([b["user_id"].numpy() for b in _sharded_epochs(batches, 1)[0]])
                     for _ in range(2))
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(80))
    assert not np.array_equal(first, second)
    rows = ExampleBatches({"row": np.arange(64)}, 8, shuffle_seed=1, drop_remainder=True).for_cluster(coordinated)
    one, two = (np.concatenate(_epochs(rows, 1)[0]) for _ in range(2))
    assert not np.array_equal(one, two)


def test_rows_are_repeated_whole_until_an_epoch_has_the_fewest_steps():
    rows = np.arange(1, 161)
    # 6 steps of 256 need 1,536 rows: ten passes over 160.
    np.testing.assert_array_equal(repeated_for_steps(rows, 256, 6), np.tile(rows, 10))
    np.testing.assert_array_equal(repeated_for_steps(rows, 16, 6), rows)  # one pass already makes 10 steps
    assert repeated_for_steps(np.zeros(0, np.int64), 256, 6).size == 0
