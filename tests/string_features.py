"""Every user and movie feature joined onto each rating, as strings: the form serving feeds,
to compare with the integer rows and tables training feeds (modeling.examples)."""

import tensorflow as tf


def string_features(prepared, ratings):
    features = prepared.user_inputs(ratings.user_id)
    positions = ratings.movies.positions(prepared.movies.movie_id)
    features.update({name: values[positions] for name, values in prepared.movie_columns.items()})
    return {name: tf.constant(values) for name, values in features.items()}
