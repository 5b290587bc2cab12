"""The one check that the legacy Keras (tf-keras) is what ``tf.keras`` resolves to."""

import tensorflow as tf


def require_legacy_keras():
    """Returns ``tf.keras`` after checking it is Keras 2 (tf-keras), as TFRS needs.

    Returns:
      The ``tf.keras`` module.

    Raises:
      RuntimeError: if ``tf.keras`` was resolved to Keras 3 before twostage set
        ``TF_USE_LEGACY_KERAS=1`` (someone touched ``tf.keras`` before importing twostage).
    """
    keras = tf.keras
    if not getattr(keras, "__name__", "").startswith("tf_keras"):
        raise RuntimeError(
            "tf.keras is Keras 3, but TensorFlow Recommenders needs tf-keras: import twostage "
            "before using tf.keras, or set TF_USE_LEGACY_KERAS=1 in the environment."
        )
    return keras
