"""Model code both stages share: Keras layers and feature encoders, the tf.data input and the fit loop.

Knows no stage: retrieval and ranking import it, never the reverse; it imports only
``twostage.data``.
"""
