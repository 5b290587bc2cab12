"""Integer example rows, batched and shuffled per epoch; features gathered from per-row tables."""

import numpy as np
import tensorflow as tf

from twostage.modeling.examples import ExampleTables, example_batches


def _epochs(dataset, epochs):
    iterator = iter(dataset.repeat())
    steps = int(dataset.cardinality())
    return [[next(iterator)["row"].numpy() for _ in range(steps)] for _ in range(epochs)]


def test_every_epoch_is_a_new_permutation_and_runs_repeat_exactly():
    rows = {"row": np.arange(103)}
    first = _epochs(example_batches(rows, 10, shuffle_seed=5), 3)
    for epoch in first:
        assert sorted(np.concatenate(epoch).tolist()) == list(range(103))  # every row once
    assert not np.array_equal(np.concatenate(first[0]), np.concatenate(first[1]))
    again = _epochs(example_batches(rows, 10, shuffle_seed=5), 3)
    assert all(np.array_equal(np.concatenate(a), np.concatenate(b)) for a, b in zip(first, again))
    other = _epochs(example_batches(rows, 10, shuffle_seed=6), 1)
    assert not np.array_equal(np.concatenate(other[0]), np.concatenate(first[0]))


def test_drop_remainder_keeps_one_batch_shape_and_order_is_kept_unshuffled():
    dropped = _epochs(example_batches({"row": np.arange(103)}, 10, shuffle_seed=1, drop_remainder=True), 2)
    assert all(len(batch) == 10 for epoch in dropped for batch in epoch) and len(dropped[0]) == 10
    ordered = [b["row"].numpy() for b in example_batches({"row": np.arange(23)}, 10)]
    assert [len(b) for b in ordered] == [10, 10, 3] and np.concatenate(ordered).tolist() == list(range(23))


def test_tables_gather_each_rows_user_and_movie_features_in_the_models_form():
    lookup = tf.keras.layers.StringLookup(vocabulary=["a", "b", "c"], mask_token=None)

    def index(features):  # a model that looks "genre" up and reads "zip" as it is
        return {name: lookup(values) if name == "genre" else values for name, values in features.items()}

    tables = ExampleTables(index, {"zip": np.asarray(["", "10", "20"])},
                           {"movie_id": np.asarray(["m1", "m2"]), "genre": np.asarray(["b", "c"])})
    batch = next(iter(example_batches({"user_id": np.asarray([2, 0, 1]), "movie_id": np.asarray([1, 2, 2]),
                                       "rating": np.asarray([5.0, 3.0, 1.0])}, 3, expand=tables.expand)))
    assert batch["zip"].numpy().tolist() == [b"20", b"", b"10"]
    assert batch["genre"].numpy().tolist() == [2, 3, 3]  # "b", "c", "c" after the out-of-vocabulary row
    assert batch["rating"].numpy().tolist() == [5.0, 3.0, 1.0] and "movie_title" not in batch
