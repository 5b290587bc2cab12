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

import glob as _glob
import os as _os

_os.environ["TF_USE_LEGACY_KERAS"] = "1"


def _machine_has_a_gpu() -> bool:
    """Whether any NVIDIA device (or WSL's GPU bridge) exists, whatever CUDA_VISIBLE_DEVICES says."""
    return bool(_glob.glob("/dev/nvidia[0-9]*")) or _os.path.exists("/proc/driver/nvidia") or _os.path.exists("/dev/dxg")


# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) hides the progress a user
# is looking for: keep its warnings and errors, except where the machine has no GPU at all,
# where its one error ("failed call to cuInit") says nothing but that, and alarms CPU users.
# Where a GPU exists, nothing is hidden. TF_CPP_MIN_LOG_LEVEL set by the user always wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if _machine_has_a_gpu() else "3")

__version__ = "0.1.0"

__all__ = ["Recommender", "__version__"]


def __getattr__(name):
    # The public API is imported lazily so `twostage --help` does not pay for TensorFlow.
    if name == "Recommender":
        from twostage.serving.clients.recommender import Recommender

        return Recommender
    raise AttributeError(f"module 'twostage' has no attribute {name!r}")
