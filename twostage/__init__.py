"""twostage: a two-stage movie recommender built on TensorFlow Recommenders.

Layout (data flows one way; docs/design.md says what each folder owns):

    twostage.data       raw MovieLens-shaped rows -> typed tables, splits, vocabularies, metrics
    twostage.modeling   Keras layers and feature encoders both stages share, the fit loop
    twostage.retrieval  two-tower model (TFRS) + ScaNN / brute-force index
    twostage.ranking    rating model (TFRS Ranking task)
    twostage.serving    both stages in one SavedModel (graph, artifact) and its clients
    twostage            (this package) command line, pipeline, evaluation, report, public API

TFRS 0.7 is written against Keras 2, so the legacy Keras (tf-keras) must be selected
before TensorFlow is imported for the first time. Every stage module is imported through
this package (``twostage.<stage>``), so this is the one place that does it. TensorFlow
resolves ``tf.keras`` lazily, so importing tensorflow earlier is fine as long as nothing
touched ``tf.keras`` before twostage was imported (checked when models are built).
"""

import os as _os
_os.environ["TF_USE_LEGACY_KERAS"] = "1"
# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) hides the progress a
# user is looking for; keep warnings and errors.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["Recommender", "__version__"]


def __getattr__(name):
    # The public API is imported lazily so `twostage --help` does not pay for TensorFlow.
    if name == "Recommender":
        from twostage.serving.clients.recommender import Recommender

        return Recommender
    raise AttributeError(f"module 'twostage' has no attribute {name!r}")
