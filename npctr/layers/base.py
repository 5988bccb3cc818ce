"""The layer protocol every npctr layer follows.

A layer owns three dicts of arrays:

* ``params``: trainable weights, name -> ndarray;
* ``grads``: the same keys, written by ``backward``;
* ``state``: non-trainable arrays (BatchNormalization's moving statistics).

Child layers contribute their entries under path names (``dnn/kernel0``,
``dnn/bn0/gamma``), so a whole model is one flat dict. The arrays in these
dicts are the layer's own storage: optimizers update them in place.

``forward(inputs, training=False, backprop=None)`` computes the output and, when
``backprop`` (default: ``training``) is true, keeps a named cache that
``backward(grad_output)`` reads. Inference mode caches nothing.
"""
import re

import numpy as np

from .. import initializers
from .._validation import resolve_dtype, check_seed, float_array, check_rank, as_array
from .. import conventions as conventions_mod
from .weights import WeightList, positional_names


class NoCacheError(ValueError, RuntimeError):
    """``backward`` without a forward that kept its cache (a ValueError, and a RuntimeError)."""


def _snake_case(name):
    """Keras's default layer names: ``DNN`` -> ``dnn``, ``BatchNormalization`` -> ``batch_normalization``."""
    intermediate = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", intermediate).lower()


class Layer:
    """Base class: weights, child layers, flat dicts, weight import/export, config."""

    def __init__(self, name=None, dtype=None, trainable=True, conventions=None):
        self.name = name if name is not None else _snake_case(type(self).__name__)
        self.dtype = resolve_dtype(dtype)
        # None: open, taken from the parent (add_layer) or, at use, the default profile
        self._conventions_name = conventions_mod.check_name(conventions)
        self.trainable = bool(trainable)
        self.built = False
        self._params = {}
        self._grads = {}
        self._state = {}
        self._l2 = {}          # param key -> L2 coefficient (Keras's l2(c): c * sum(w**2))
        self._layers = {}      # child name -> Layer, in creation order (Keras tracking order)
        self._cache = None
        self._output_shape = None

    # -- conventions --------------------------------------------------------------------
    @property
    def conventions(self):
        """The :class:`npctr.conventions.Conventions` profile this layer follows."""
        return conventions_mod.get(self._conventions_name)

    def _set_conventions(self, name):
        """Fix this layer's profile if still open, and pass it on to children still open."""
        if self._conventions_name is None:
            self._conventions_name = name
        for child in self._layers.values():
            child._set_conventions(self._conventions_name)

    # -- construction -----------------------------------------------------------------
    def add_weight(self, key, value, trainable=True, l2_reg=0.0):
        """Register a weight under ``key``; returns the stored array."""
        if self.dtype is None:      # built by hand before any input fixed the dtype
            self.dtype = np.dtype(np.float64)
        weight_dtype = self.dtype
        if initializers.placeholders_active():    # load_model: the stored array replaces it
            value = grad = initializers.placeholder_weight(np.shape(value), weight_dtype)
        else:
            value = np.array(value, dtype=weight_dtype)
            grad = np.zeros(value.shape, value.dtype)
        if trainable:
            self._params[key] = value
            self._grads[key] = grad
            if l2_reg:
                self._l2[key] = float(l2_reg)
        else:
            self._state[key] = value
        return value

    def add_layer(self, key, layer, input_shape=None):
        """Register a child layer; its weights appear under ``key/...``.

        A child whose dtype (or conventions profile) is open takes this layer's (now, or
        when it is fixed).
        With ``input_shape``, the child is built now, in this layer's dtype.
        """
        self._layers[key] = layer
        if self.dtype is not None:
            layer._set_dtype(self.dtype)
        if self._conventions_name is not None:
            layer._set_conventions(self._conventions_name)
        if input_shape is not None:
            layer._build_for(self.dtype, input_shape)
        return layer

    def build(self, input_shape):
        """Create the weights for ``input_shape``. Subclasses extend this."""
        self.built = True

    def _input(self, inputs, min_rank=None, name="inputs"):
        """The one-array input as a float array of the layer's dtype, checked, the layer built."""
        x = float_array(inputs, name, self.dtype)
        if min_rank is not None:
            check_rank(x, name, min_rank=min_rank)
        self._build_for(x.dtype, x.shape)
        return x

    def _set_dtype(self, dtype):
        """Fix this layer's dtype if still open, and pass it on to children still open."""
        if self.dtype is None:
            self.dtype = np.dtype(dtype)
        for child in self._layers.values():
            child._set_dtype(self.dtype)

    def _build_for(self, dtype, input_shape):
        """Fix the dtype from the first input (float32 stays float32) and build once."""
        self._set_dtype(dtype)
        if not self.built:
            self.build(input_shape)
            self.built = True

    # -- flat views -------------------------------------------------------------------
    def _flat(self, attr):
        out = dict(getattr(self, attr))
        for child_key, child in self._layers.items():
            for key, value in child._flat(attr).items():
                out[f"{child_key}/{key}"] = value
        return out

    @property
    def params(self):
        """Trainable weights of this layer and its children, path -> ndarray."""
        return self._flat("_params")

    @property
    def grads(self):
        """Gradients of the last ``backward``, same keys as ``params``."""
        return self._flat("_grads")

    @property
    def state(self):
        """Non-trainable arrays (moving statistics), path -> ndarray."""
        return self._flat("_state")

    def get_layer(self, path):
        """The child layer at ``path`` (``"bn0"``, ``"local_att/dnn"``), as Keras's
        ``model.get_layer(name)``; a ValueError names the children that exist."""
        layer = self
        for key in path.split("/"):
            child = layer._layers.get(key)
            if child is None:
                raise ValueError(f"{self.name} has no layer {path!r}; its layers: "
                                 f"{[p.rstrip('/') for p, _ in self.sublayers() if p]}")
            layer = child
        return layer

    def sublayers(self):
        """This layer and every descendant, depth first, with their path prefixes."""
        yield "", self
        for child_key, child in self._layers.items():
            for prefix, layer in child.sublayers():
                yield (f"{child_key}/{prefix}" if prefix else f"{child_key}/"), layer

    # -- calling ----------------------------------------------------------------------
    def forward(self, inputs, training=False, backprop=None):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError

    def __call__(self, inputs, training=False, backprop=None, **kwargs):
        """``forward``; keyword arguments (e.g. ``mask=``) go to it unchanged."""
        return self.forward(inputs, training=training, backprop=backprop, **kwargs)

    def call(self, inputs, training=None, **kwargs):
        """DeepCTR/Keras spelling of ``forward``; ``training=None`` means inference."""
        return self.forward(inputs, training=bool(training), **kwargs)

    @staticmethod
    def _keeps_cache(training, backprop):
        return bool(training) if backprop is None else bool(backprop)

    def _require_cache(self):
        """The cache of the last forward; ``NoCacheError`` if that forward kept none."""
        if self._cache is None:
            raise NoCacheError(
                f"{self.name}.backward called without a forward that kept its cache: "
                "call forward(inputs, training=True) or forward(..., backprop=True) first")
        return self._cache

    def _take_cache(self, grad_output):
        """Return the cache of the last forward and check ``grad_output`` against it."""
        cache = self._require_cache()
        grad_output = as_array(grad_output, "grad_output")
        if grad_output.shape != self._output_shape:
            raise ValueError(
                f"grad_output of {self.name}.backward must have the output's shape "
                f"{self._output_shape}, got {grad_output.shape}")
        return cache, grad_output.astype(self.dtype, copy=False)

    def compute_output_shape(self, input_shape):
        raise NotImplementedError

    # -- regularization ---------------------------------------------------------------
    def _l2_coefficients(self):
        """``key -> c`` as the profile applies them (tf.keras 2 rounds ``c`` to float32)."""
        if not self._l2:
            return {}
        if self.conventions.l2_float32:
            return {k: float(np.float32(c)) for k, c in self._l2.items()}
        return self._l2

    def regularization_loss(self):
        """Sum of ``c * sum(w**2)`` over every regularized weight (Keras's ``l2(c)``)."""
        # vdot: the sum of squares without a weight-sized temporary (embedding tables are large)
        total = sum(c * float(np.vdot(self._params[k], self._params[k]))
                    for k, c in self._l2_coefficients().items())
        return total + sum(child.regularization_loss() for child in self._layers.values())

    def add_regularization_grads(self):
        """Add ``2 c w`` to the gradient of each regularized weight."""
        for key, c in self._l2_coefficients().items():
            self._grads[key] += (2.0 * c) * self._params[key]
        for child in self._layers.values():
            child.add_regularization_grads()

    # -- weights in DeepCTR's order ---------------------------------------------------
    def _ordered(self, trainable):
        own = self._params if trainable else self._state
        keys = list(own)
        for child_key, child in self._layers.items():
            keys += [f"{child_key}/{k}" for k in child._ordered(trainable)]
        return keys

    def weight_names(self, order="tf_keras"):
        """Weight paths in a framework's ``get_weights()`` order.

        ``"tf_keras"`` (default, DeepCTR on tf.keras 2): every trainable weight, then the rest.
        ``"keras3"`` (Keras 3): layer by layer, each layer's own weights (trainable and
        non-trainable together, in creation order) before its children's.
        """
        if order == "tf_keras":
            return self._ordered(True) + self._ordered(False)
        if order == "keras3":
            return self._layerwise()
        raise ValueError(f"order must be 'tf_keras' or 'keras3', got {order!r}")

    def _layerwise(self):
        keys = list(self._params) + list(self._state)
        for child_key, child in self._layers.items():
            keys += [f"{child_key}/{k}" for k in child._layerwise()]
        return keys

    def _locate(self, path):
        """The layer holding weight ``path`` and the weight's key in it."""
        layer = self
        *parents, key = path.split("/")
        for p in parents:
            layer = layer._layers[p]
        return layer, key

    def _lookup(self, path):
        layer, key = self._locate(path)
        return (layer._params if key in layer._params else layer._state)[key]

    def _adopt(self, path, array):
        """Make ``array`` (the weight's shape and dtype, writeable) the storage of weight ``path``,
        without a copy; its gradient starts at zero (``load_model``)."""
        layer, key = self._locate(path)
        if key in layer._params:
            layer._params[key] = array
            layer._grads[key] = np.zeros(array.shape, array.dtype)
        else:
            layer._state[key] = array

    def get_weights(self, order="tf_keras"):
        """Copies of the weights in a framework's order (default DeepCTR's tf.keras 2
        ``get_weights()``), as a ``WeightList`` that remembers its order for ``set_weights``."""
        return WeightList((self._lookup(p).copy() for p in self.weight_names(order)), order=order)

    def set_weights(self, weights, strict=True, order=None):
        """Load weights from a list in ``get_weights()`` order, or a dict path -> array.

        Values are copied into the existing arrays (cast to the layer's dtype), so
        references held by an optimizer stay valid. A dict with ``strict=False``
        may name a subset of the weights.

        A list is read in ``order`` (``"tf_keras"`` or ``"keras3"``, see ``weight_names``).
        With ``order=None`` the order is detected from the shapes: a list whose shapes fit
        only one of the two orders loads in that one; one that fits both while the two
        orders differ is refused (ValueError), since the values would be silently misplaced.
        Nothing is written unless every shape matches.
        """
        names = self.weight_names()
        if isinstance(weights, dict):
            unknown = sorted(set(weights) - set(names))
            if unknown:
                raise ValueError(f"set_weights: unknown weight names {unknown}; known: {names}")
            missing = [n for n in names if n not in weights]
            if strict and missing:
                raise ValueError(f"set_weights: missing weights {missing} (pass strict=False "
                                 "to set a subset)")
            pairs = [(n, weights[n]) for n in names if n in weights]
        elif isinstance(weights, (list, tuple)):
            pairs = list(zip(positional_names(self, weights, order), weights))
        else:
            raise TypeError(f"set_weights: weights must be a list or a dict, got {type(weights).__name__}")
        for name, value in pairs:
            target = self._lookup(name)
            value = as_array(value, f"set_weights: weight {name!r}")
            if value.shape != target.shape:
                raise ValueError(f"set_weights: weight {name!r} must have shape {target.shape}, "
                                 f"got {value.shape}")
        for name, value in pairs:
            self._lookup(name)[...] = value

    # -- config -----------------------------------------------------------------------
    def get_config(self):
        config = {"name": self.name,
                  "dtype": None if self.dtype is None else self.dtype.name,
                  "trainable": self.trainable}
        if self._conventions_name is not None:     # written only when chosen: old configs load as before
            config["conventions"] = self._conventions_name
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # -- reproducibility helpers (used by the gradient checker) -------------------------
    def snapshot(self):
        """Copy of every moving statistic and random generator state below this layer."""
        rngs = {p: layer._rng.bit_generator.state
                for p, layer in self.sublayers() if getattr(layer, "_rng", None) is not None}
        return {k: v.copy() for k, v in self.state.items()}, rngs

    def restore(self, snap):
        """Undo everything a forward changed since ``snapshot()``."""
        states, rngs = snap
        for k, v in self.state.items():
            v[...] = states[k]
        for p, layer in self.sublayers():
            if p in rngs:
                layer._rng.bit_generator.state = rngs[p]

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


def make_rng(seed):
    """A NumPy Generator for ``seed`` (None: fresh entropy); never the global state."""
    return np.random.default_rng(check_seed(seed))
