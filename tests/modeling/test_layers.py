"""The shared feature layers (modeling.layers) and the tables behind them (data.history)."""

import numpy as np
import pytest
import tensorflow as tf

from twostage.modeling import pooling as pooling_module
from twostage.data.history import RaggedTable, training_history
from twostage.modeling.layers import IdEmbedding, PooledTokens
from twostage.modeling.pooling import RatedMoviesPooling
from twostage.data.schema import Movies, Ratings


def _catalog(ids):
    return Movies(np.asarray(ids), np.asarray(ids), tuple(() for _ in ids), np.zeros(len(ids), np.int32))


def test_ragged_table_keeps_each_pairs_weight_and_the_last_of_a_repeated_pair():
    table = RaggedTable(np.array([1, 0, 1, 1]), np.array([2, 0, 1, 2]), 3, weights=np.array([1.0, 2.0, 3.0, 4.0]))
    assert table.values.tolist() == [0, 1, 2] and table.row_splits.tolist() == [0, 1, 3, 3]
    assert table.weights.tolist() == [2.0, 3.0, 4.0]  # pair (1, 2) given twice: the later weight


def test_rating_weighted_pooling_centres_ratings_and_leaves_the_target_out():
    train = Ratings.from_rows(["u", "u", "u"], ["a", "b", "c"], [5, 4, 3], [1, 2, 3])
    catalog = ["a", "b", "c", "d"]
    pooling = RatedMoviesPooling(training_history(train, ["u"], _catalog(catalog), with_ratings=True), catalog, 4,
                                 rating_weighted=True)
    rows = tf.constant([1, 1], tf.int64)
    out = pooling(rows, tf.constant(["a", "d"])).numpy()
    plain, rated = pooling.embedding.embeddings.numpy(), pooling.rating_embedding.embeddings.numpy()
    centred = np.array([5.0, 4.0, 3.0]) - 4.0  # the history's mean rating is 4
    np.testing.assert_allclose(out[0, :4], plain[[1, 2]].mean(axis=0), rtol=1e-5)  # "a" left out
    np.testing.assert_allclose(out[0, 4:], (centred[1] * rated[1] + centred[2] * rated[2]) / 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out[1, 4:], (centred[:, None] * rated[:3]).sum(axis=0) / 3, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="ratings"):
        RatedMoviesPooling(training_history(train, ["u"], _catalog(catalog)), catalog, 4, rating_weighted=True)


def _random_history(rng, num_users: int, num_movies: int, num_ratings: int):
    """User ids, movie ids and the history table (with ratings) of random ratings."""
    users, movies = [str(u) for u in range(num_users)], [str(m) for m in range(num_movies)]
    train = Ratings.from_rows(rng.choice(users, num_ratings).tolist(), rng.choice(movies, num_ratings).tolist(),
                              rng.integers(1, 6, num_ratings).tolist(), list(range(num_ratings)))
    return users, movies, training_history(train, users, _catalog(movies), with_ratings=True)


def test_dense_and_sparse_history_pooling_agree(monkeypatch):
    rng = np.random.default_rng(0)
    users, movies, history = _random_history(rng, 20, 30, 200)
    pooling = RatedMoviesPooling(history, movies, 8, rating_weighted=True)
    rows = tf.constant(rng.integers(0, 21, 64), tf.int64)
    targets = tf.constant(rng.choice(movies, 64))

    def pooled(batch):
        # A fixed batch size picks the path when tracing (training); an open one, per call (serving).
        fn = tf.function(lambda r, t: pooling(r, t), input_signature=[tf.TensorSpec([batch], tf.int64),
                                                                       tf.TensorSpec([batch], tf.string)])
        return fn(rows, targets).numpy()

    dense = pooled(64)
    np.testing.assert_allclose(pooled(None), dense, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(pooling_module, "DENSE_POOLING_CELLS", 0)
    np.testing.assert_allclose(pooled(64), dense, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled(None), dense, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(pooling_module, "DENSE_POOLING_CELLS", 10 ** 9)
    monkeypatch.setattr(pooling_module, "DENSE_POOLING_SPARSITY", 0)  # too sparse: the sparse product
    np.testing.assert_allclose(pooled(None), dense, rtol=1e-5, atol=1e-6)


def test_layers_take_looked_up_ids_as_well_as_strings():
    ids = IdEmbedding(["x", "y"], 3)
    np.testing.assert_array_equal(ids(tf.constant(["y", "zz"])).numpy(), ids(ids.index(tf.constant(["y", "zz"]))).numpy())
    genres = PooledTokens(["Action", "Drama"], 3, "|")
    text = tf.constant(["Action|Drama", ""])
    np.testing.assert_array_equal(genres(text).numpy(), genres(genres.index(text)).numpy())


def test_sampled_history_pooling_is_exact_for_short_histories_and_a_subset_mean_for_long_ones():
    rng = np.random.default_rng(1)
    users, movies, history = _random_history(rng, 12, 40, 300)
    rows = tf.constant(rng.integers(0, 13, 64), tf.int64)
    targets = tf.constant(rng.choice(movies, 64))
    exact = RatedMoviesPooling(history, movies, 8, rating_weighted=True)
    whole = RatedMoviesPooling(history, movies, 8, rating_weighted=True, sample=history.max_length)
    exact(rows, targets), whole(rows, targets)
    whole.set_weights(exact.get_weights())
    np.testing.assert_allclose(whole(rows, targets).numpy(), exact(rows, targets).numpy(), rtol=1e-5, atol=1e-6)

    few = RatedMoviesPooling(history, movies, 8, sample=3)
    few(rows, targets)
    table = few.embedding.embeddings.numpy()
    pooled = few(rows, targets).numpy()
    for row, target, vector in zip(rows.numpy(), targets.numpy().astype(str), pooled):
        rated = history.values[history.row_splits[row]:history.row_splits[row + 1]].tolist()
        others = [m for m in rated if movies[m] != target]
        if not others:
            np.testing.assert_allclose(vector, 0.0, atol=1e-7)
        elif len(rated) <= 3:  # short histories are pooled whole
            np.testing.assert_allclose(vector, table[others].mean(axis=0), rtol=1e-5, atol=1e-6)
        else:  # a mean of at most 3 draws from the history, never the target
            candidates = table[others]
            assert np.linalg.norm(vector) <= np.linalg.norm(candidates, axis=1).max() + 1e-5
    # Serving (no targets) always pools the whole history.
    plain = RatedMoviesPooling(history, movies, 8)
    plain(rows)
    plain.set_weights(few.get_weights())
    np.testing.assert_allclose(few(rows).numpy(), plain(rows).numpy(), rtol=1e-6)


def test_a_given_history_pools_as_the_baked_in_one():
    users, movies, history = _random_history(np.random.default_rng(1), 6, 12, 40)
    pooling = RatedMoviesPooling(history, movies, 4, rating_weighted=True)
    rows = tf.range(0, 7, dtype=tf.int64)  # the unknown user's row 0 included: an empty history
    baked = pooling(rows).numpy()
    given = pooling.pool_given(tf.RaggedTensor.from_row_splits(history.values, history.row_splits),
                               tf.RaggedTensor.from_row_splits(history.weights, history.row_splits)).numpy()
    np.testing.assert_allclose(given, baked, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs its ratings"):
        pooling.pool_given(tf.RaggedTensor.from_row_splits(history.values, history.row_splits))


def test_split_history_pools_the_kept_movies_mean_alike_dense_and_sparse(monkeypatch):
    rng = np.random.default_rng(1)
    users, movies, history = _random_history(rng, 12, 25, 150)
    pooling = RatedMoviesPooling(history, movies, 4)
    pooling.build(None)
    split = pooling.split(tf.constant(rng.integers(1, 13, 16), tf.int64), drop_rate=0.5)
    table = pooling.embedding.embeddings.numpy()
    expected = np.zeros((16, 4), np.float32)
    for user in range(16):
        mine = (split.rowids.numpy() == user) & (split.kept.numpy() > 0)
        if mine.any():
            expected[user] = table[split.movies.numpy()[mine]].mean(axis=0)

    def pooled_and_gradient():
        with tf.GradientTape() as tape:
            pooled = pooling(None, split=split)
            loss = tf.reduce_sum(pooled * np.arange(4, dtype=np.float32))
        return pooled.numpy(), tape.gradient(loss, pooling.embedding.embeddings)

    dense, dense_gradient = pooled_and_gradient()  # 16 x 25 cells, half of them rated: dense
    np.testing.assert_allclose(dense, expected, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(pooling_module, "DENSE_POOLING_CELLS", 0)
    sparse, sparse_gradient = pooled_and_gradient()
    np.testing.assert_allclose(sparse, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tf.convert_to_tensor(sparse_gradient).numpy(),
                               tf.convert_to_tensor(dense_gradient).numpy(), rtol=1e-5, atol=1e-6)


def test_residual_mlp_adds_a_nonlinear_correction_to_its_input():
    from twostage.modeling.layers import ResidualMLP

    layer = ResidualMLP(hidden=8, width=4)
    x = tf.constant([[10.0, -20.0, 5.0, 30.0]])
    y = tf.constant([[-5.0, 15.0, 25.0, -10.0]])

    def correction(v):
        return layer(v).numpy() - v.numpy()

    assert layer(x).shape == (1, 4) and len(layer.trainable_weights) == 6  # norm, hidden and correction
    assert np.abs(correction(x)).max() > 1e-3
    # Normalised first, the correction depends on the vector's direction, not its length ...
    np.testing.assert_allclose(correction(2 * x), correction(x), rtol=1e-3, atol=1e-4)
    # ... and not linearly on it.
    assert not np.allclose(correction(x + y), correction(x) + correction(y), atol=1e-3)
    layer.correction.kernel.assign(tf.zeros_like(layer.correction.kernel))
    layer.correction.bias.assign(tf.zeros_like(layer.correction.bias))
    np.testing.assert_allclose(layer(x).numpy(), x.numpy())  # a zero correction passes x through


def test_pooled_tokens_are_the_mean_of_their_embeddings_zeros_without_tokens_also_from_a_split_table():
    words = PooledTokens(["a", "b", "c"], 4, " ")
    text = tf.constant(["a b", "", "c a c", "zz"])
    with tf.GradientTape() as tape:
        pooled = words(text)
        loss = tf.reduce_sum(pooled * tf.range(16, dtype=tf.float32)[:4])
    table = words.embedding.embeddings.numpy()  # rows: mask, out-of-vocabulary, then "a", "b", "c"
    expected = np.stack([table[[2, 3]].mean(0), np.zeros(4), table[[4, 2, 4]].mean(0), table[1]])
    np.testing.assert_allclose(pooled.numpy(), expected, rtol=1e-6)
    gradient = tf.convert_to_tensor(tape.gradient(loss, words.embedding.embeddings)).numpy()

    # Split over parameter servers the table is no tf.Variable: the layer gathers it through Embedding.
    from tensorflow.python.distribute.sharded_variable import ShardedVariable
    shards = ShardedVariable([tf.Variable(table[:3]), tf.Variable(table[3:])])
    words.embedding.embeddings = shards
    assert not isinstance(words.embedding.embeddings, tf.Variable)
    with tf.GradientTape() as tape:
        pooled_split = words(text)
        loss = tf.reduce_sum(pooled_split * tf.range(16, dtype=tf.float32)[:4])
    np.testing.assert_allclose(pooled_split.numpy(), expected, rtol=1e-6)
    parts = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, shards.variables)]
    np.testing.assert_allclose(np.concatenate(parts), gradient, rtol=1e-6)
