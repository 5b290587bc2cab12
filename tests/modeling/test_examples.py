"""Integer example rows, batched and shuffled per epoch; features gathered from per-row tables."""

import numpy as np
import tensorflow as tf

from twostage.modeling.examples import ExampleBatches, ExampleTables


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
