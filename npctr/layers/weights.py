"""Weights as positional lists: the list ``get_weights()`` returns and how a list given to
``set_weights`` is matched to weight names (tf.keras 2's order or Keras 3's, never a guess)."""
import numpy as np


class WeightList(list):
    """The list ``get_weights()`` returns: it knows its ``order`` (``"tf_keras"`` or
    ``"keras3"``), so ``set_weights(layer.get_weights())`` is never ambiguous."""

    def __init__(self, weights=(), order="tf_keras"):
        super().__init__(weights)
        self.order = order


def positional_names(layer, weights, order):
    """The names a positional list is loaded into; refuses a list whose order is ambiguous.

    tf.keras 2 and Keras 3 order a layer's weights differently. When the two orders differ
    and the list's shapes fit both (``DNN((16, 16), use_bn=True)``: every weight has 16
    entries), loading it in the wrong one would silently put moving means into gamma.
    """
    names = layer.weight_names()
    if len(weights) != len(names):
        hint = "" if layer.built else " (the layer is not built yet: call build(input_shape) first)"
        raise ValueError(f"set_weights: {layer.name} expects {len(names)} weights "
                         f"{names}, got {len(weights)}{hint}")
    if order is None:
        order = getattr(weights, "order", None)      # a WeightList from get_weights()
    if order is not None:
        return layer.weight_names(order)
    layerwise = layer._layerwise()
    if layerwise == names:
        return names
    shapes = [np.shape(w) for w in weights]

    def fits(order_names):
        return all(layer._lookup(n).shape == s for n, s in zip(order_names, shapes))

    fits_tf_keras, fits_keras3 = fits(names), fits(layerwise)
    if fits_tf_keras and fits_keras3:
        raise ValueError(
            f"set_weights: a list is ambiguous for {layer.name}: tf.keras 2 orders its weights "
            f"{names}, Keras 3 orders them {layerwise}, and the shapes fit both, so a wrong guess "
            "would load silently wrong values. Say which with set_weights(weights, "
            "order='tf_keras' or 'keras3'), pass a dict {path: array}, or import by name with "
            "npctr.interop.load_keras_weights(layer, keras_layer)")
    if fits_keras3:         # the shapes fit Keras 3's order only: that is what it is
        return layerwise
    return names            # tf.keras 2's order, or wrong shapes (reported by the caller)
