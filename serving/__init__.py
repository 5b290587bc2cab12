"""Serving: both stages joined into one SavedModel, and what writes, reads and calls it.

* ``graph``: the exported ``tf.Module`` (request inputs, exclusions, search, ranking, signatures);
* ``artifact``: assembling, exporting, re-exporting and loading the SavedModel;
* ``clients``: ``Recommender``, ``RestClient``, ``GrpcClient`` (``requests`` is their shared contract);
* ``diagnostics``: which ops of an export a GPU runs.
"""
