r"""DeepCTR's core layers: ``DNN``, ``LocalActivationUnit`` and ``PredictionLayer``.

Forward and backward equations are in each class's Notes; the derivations, with
shapes, are in ``docs/dnn.md``, ``docs/local_activation_unit.md`` and
``docs/prediction_layer.md``.
"""
from typing import NamedTuple

import numpy as np

from .base import Layer, make_rng
from .activation import activation_layer, activation_name, PReLU, Activation, Dice
from .dropout import Dropout
from .normalization import BatchNormalization
from .. import initializers
from ..ops.activations import ACTIVATIONS
from ..ops.attention import QueryKeyInput, QueryKeyUnits, attention_input, attention_input_backward
from ..ops.dense import dense_forward, dense_backward
from ..ops.rows import column_sums
from .._validation import (float_array, check_rank, check_last_dim, check_list, check_units,
                           check_rate, check_nonnegative, check_seed)


#: compute the LocalActivationUnit once per row on its shared-key (masked all-padding) positions; False
#: gives the plain path (for benchmarks and tests comparing the two)
SHARE_PADDING = True


class DNNCache(NamedTuple):
    layer_inputs: list        # the input of each Dense (an array, or the factored first input)


class DNN(Layer):
    r"""The multi-layer perceptron of DeepCTR.

    Per hidden layer :math:`i`:
    :math:`z_i = a_{i-1} W_i + b_i`, then BatchNormalization (``use_bn``), the
    activation (``output_activation`` on the last layer when given), then
    ``Dropout(dropout_rate, seed=seed + i)``.

    Parameters
    ----------
    hidden_units : sequence of int
        Units per layer; empty means the identity.
    activation : str or activation Layer class, default 'relu'
    l2_reg : float, default 0
        ``l2_reg * sum(W_i ** 2)`` per kernel.
    dropout_rate : float in [0, 1), default 0
    use_bn : bool, default False
    output_activation : str, class or None
        Replaces ``activation`` on the last layer.
    seed : int, default 1024

    Input ``(batch_size, ..., input_dim)``; output ``(batch_size, ..., hidden_units[-1])``.
    Weights (DeepCTR names): ``kernel{i}`` ``(in_i, out_i)``, ``bias{i}``; children
    ``bn{i}`` (``gamma``, ``beta``, moving statistics), ``activation{i}``
    (``dice_alpha`` or ``alpha`` for Dice/PReLU), ``dropout{i}``.

    Notes
    -----
    Backward runs the layers in reverse: dropout mask, activation derivative,
    batch-norm backward, then :math:`da_{i-1} = dz_i W_i^\top`,
    :math:`dW_i = a_{i-1}^\top dz_i`, :math:`db_i = \sum dz_i`.
    """

    def __init__(self, hidden_units, activation="relu", l2_reg=0, dropout_rate=0, use_bn=False,
                 output_activation=None, seed=1024, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = check_units(hidden_units, "hidden_units")
        self.activation = activation
        self.l2_reg = check_nonnegative(l2_reg, "l2_reg")
        self.dropout_rate = check_rate(dropout_rate, "dropout_rate")
        self.use_bn = bool(use_bn)
        self.output_activation = output_activation
        self.seed = check_seed(seed)
        # fail at construction, not at first call, on an unknown activation
        # (activation=None is refused as DeepCTR refuses it; only output_activation may be None)
        activation_layer(activation)
        if output_activation:       # DeepCTR treats any falsy value as 'no override'
            activation_layer(output_activation)

    def build(self, input_shape):
        sizes = (input_shape[-1],) + self.hidden_units
        rng = make_rng(self.seed)
        n = len(self.hidden_units)
        # Keras tracking order: kernels, biases, then bn, dropout, activation layers
        for i in range(n):
            # DeepCTR-Torch's DNN stores l2_reg but never registers it (profile field l2_on_dnn)
            self.add_weight(f"kernel{i}", initializers.glorot_normal(rng, (sizes[i], sizes[i + 1])),
                            l2_reg=self.l2_reg if self.conventions.l2_on_dnn else 0.0)
        for i in range(n):
            self.add_weight(f"bias{i}", initializers.zeros(None, (sizes[i + 1],)))
        if self.use_bn:
            for i in range(n):
                self.add_layer(f"bn{i}", BatchNormalization(dtype=self.dtype, name=f"bn{i}"))
        for i in range(n):
            seed = None if self.seed is None else self.seed + i
            self.add_layer(f"dropout{i}", Dropout(self.dropout_rate, seed=seed, dtype=self.dtype,
                                                  name=f"dropout{i}"))
        for i in range(n):
            last = i == n - 1 and self.output_activation
            act = self.output_activation if last else self.activation
            self.add_layer(f"activation{i}", activation_layer(act, name=f"activation{i}", dtype=self.dtype))
        self._input_dim = input_shape[-1]
        # build the children now, so every weight exists after build (get_weights/set_weights
        # before any call); only a PReLU needs every non-batch size and may have to wait
        for i in range(n):
            shape = tuple(input_shape[:-1]) + (sizes[i + 1],)
            children = [self._layers[f"bn{i}"]] if self.use_bn else []
            act = self._layers[f"activation{i}"]
            if not (isinstance(act, PReLU) and None in shape[1:]):
                children.append(act)
            for child in children:
                child._build_for(self.dtype, shape)
        super().build(input_shape)

    @property
    def input_dim(self):
        """The size of the input's last axis (set by ``build``)."""
        return self._input_dim

    def forward(self, inputs, training=False, backprop=None):
        x = self._input(inputs, min_rank=2)
        check_last_dim(x, "inputs", self._input_dim)
        return self.forward_factored(x, training, backprop)

    def forward_factored(self, x, training=False, backprop=None, counts=None):
        """The stack on ``x``: an array ``(..., input_dim)`` (unchecked), or a *factored* input
        that computes its own product with ``kernel0`` (``x.dense(kernel, bias)`` and
        ``x.dense_backward(dz, kernel)``, e.g. :class:`npctr.ops.attention.QueryKeyInput`:
        DIN's ``[q, k, q - k, q * k]`` never formed). ``backward`` then returns what the
        factored input's ``dense_backward`` gives for it.

        ``counts`` (rows standing for several identical rows, see ``shares_rows``) reach the
        batch statistics of BatchNormalization and Dice.
        """
        keep = self._keeps_cache(training, backprop)
        layer_inputs = []
        a = x
        for i in range(len(self.hidden_units)):
            layer_inputs.append(a)
            kernel, bias = self._params[f"kernel{i}"], self._params[f"bias{i}"]
            z = dense_forward(a, kernel, bias) if isinstance(a, np.ndarray) else a.dense(kernel, bias)
            if self.use_bn:                     # counts (rows standing for several) reach the
                z = self._layers[f"bn{i}"].forward_counted(z, training, backprop, counts)
            act = self._layers[f"activation{i}"]  # batch statistics; other layers are row-wise
            if counts is not None and type(act) is Dice:
                a = act.forward_counted(z, training, backprop, counts)
            else:
                a = act.forward(z, training, backprop)
            a = self._layers[f"dropout{i}"].forward(a, training, backprop)
        self._cache = DNNCache(layer_inputs) if keep else None
        self._output_shape = a.shape
        return a

    def shares_rows(self, training):
        """Whether identical input rows may be computed once with ``counts``: every layer is
        row-wise except the batch statistics, which take the counts (no dropout drawing
        different masks per row, no PReLU with a per-position alpha)."""
        if training and self.dropout_rate:
            return False
        return all(type(self._layers[f"activation{i}"]) in (Activation, Dice)
                   for i in range(len(self.hidden_units)))

    def backward(self, grad_output):
        """Backward through every layer; returns ``dL/dx`` (for a factored input, what its
        ``dense_backward`` returns)."""
        cache, d = self._take_cache(grad_output)
        for i in reversed(range(len(self.hidden_units))):
            d = self._layers[f"dropout{i}"].backward(d)
            d = self._layers[f"activation{i}"].backward(d)
            if self.use_bn:
                d = self._layers[f"bn{i}"].backward(d)
            a, kernel = cache.layer_inputs[i], self._params[f"kernel{i}"]
            if isinstance(a, np.ndarray):
                d, self._grads[f"kernel{i}"], self._grads[f"bias{i}"] = dense_backward(d, a, kernel)
            else:
                self._grads[f"bias{i}"] = column_sums(d.reshape(-1, d.shape[-1]))
                d, self._grads[f"kernel{i}"] = a.dense_backward(d, kernel)
        return d

    def compute_output_shape(self, input_shape):
        if not self.hidden_units:
            return tuple(input_shape)
        return tuple(input_shape[:-1]) + (self.hidden_units[-1],)

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units,
                "activation": activation_name(self.activation), "l2_reg": self.l2_reg,
                "dropout_rate": self.dropout_rate, "use_bn": self.use_bn,
                "output_activation": activation_name(self.output_activation), "seed": self.seed}


class LocalActivationUnitCache(NamedTuple):
    query: np.ndarray        # (B, 1, E)
    keys: np.ndarray         # (B, T, E)
    dnn_output: np.ndarray   # (B, T, H) input of the final projection


class SharedPaddingCache(NamedTuple):
    """The LAU computed once per distinct position (``docs/local_activation_unit.md``); the
    units themselves are the DNN's input (:class:`npctr.ops.attention.QueryKeyUnits`)."""
    dnn_output: np.ndarray   # (1, U, H)
    unit_of: np.ndarray      # (B*T,) unit of every position


class LocalActivationUnit(Layer):
    r"""DIN's local activation unit: a score per behaviour for one candidate.

    .. math::
        u = [q, k, q - k, q \odot k] \in \mathbb R^{B \times T \times 4E}, \quad
        h = \mathrm{DNN}(u), \quad s = h\,w + c \in \mathbb R^{B \times T \times 1}

    with :math:`q` the query repeated over the :math:`T` keys.

    Parameters
    ----------
    hidden_units : sequence of int, default (64, 32)
    activation : str or activation Layer class, default 'sigmoid'
    l2_reg, dropout_rate, use_bn, seed : as ``DNN``
    split : bool, default True
        Compute the first layer as :math:`q(W_a + W_c) + k(W_b - W_c) + (q \odot k) W_d`,
        the query term once per row instead of once per time step (same result up
        to round-off; ``split=False`` builds :math:`u` explicitly, as DeepCTR does).

    Inputs ``[query (batch_size, 1, embedding_size), keys (batch_size, T, embedding_size)]``;
    output ``(batch_size, T, 1)``. Weights: ``kernel (H or 4E, 1)``, ``bias (1,)``,
    then the DNN's under ``dnn/``.

    Notes
    -----
    Backward: :math:`dh = ds\,w^\top`, :math:`dw = \sum h^\top ds`, :math:`dc = \sum ds`,
    :math:`du = \mathrm{DNN}^\top(dh)` split into :math:`(du_1, du_2, du_3, du_4)`; then
    :math:`dq = \sum_T (du_1 + du_3 + du_4 \odot k)` and
    :math:`dk = du_2 - du_3 + du_4 \odot q` (each input reaches :math:`u` along three paths).
    """

    def __init__(self, hidden_units=(64, 32), activation="sigmoid", l2_reg=0, dropout_rate=0,
                 use_bn=False, seed=1024, split=True, **kwargs):
        super().__init__(**kwargs)
        # the DNN validates the shared arguments; its weights come after this layer's own
        dnn = self.add_layer("dnn", DNN(hidden_units, activation, l2_reg, dropout_rate, use_bn, seed=seed,
                                        dtype=self.dtype, name="dnn"))
        self.hidden_units, self.activation, self.l2_reg = dnn.hidden_units, dnn.activation, dnn.l2_reg
        self.dropout_rate, self.use_bn, self.seed = dnn.dropout_rate, dnn.use_bn, dnn.seed
        self.split = bool(split)

    def _check_inputs(self, inputs):
        check_list(inputs, "inputs", 2)
        query = float_array(inputs[0], "query", self.dtype)
        keys = float_array(inputs[1], "keys", self.dtype if self.dtype is not None else query.dtype)
        check_rank(query, "query", rank=3)
        check_rank(keys, "keys", rank=3)
        if query.shape[1] != 1:
            raise ValueError(f"query must have shape (batch_size, 1, embedding_size), got {query.shape}")
        if query.shape[0] != keys.shape[0]:
            raise ValueError(f"query and keys must have the same batch size, got query {query.shape} "
                             f"and keys {keys.shape}")
        if query.shape[2] != keys.shape[2]:
            raise ValueError(f"query and keys must have the same embedding size, got query {query.shape} "
                             f"and keys {keys.shape}")
        return query, keys

    def build(self, input_shape):
        query_shape, keys_shape = input_shape
        size = self.hidden_units[-1] if self.hidden_units else 4 * keys_shape[-1]
        rng = make_rng(self.seed)
        self.add_weight("kernel", initializers.glorot_normal(rng, (size, 1)))
        self.add_weight("bias", initializers.zeros(None, (1,)))
        self._layers["dnn"]._build_for(self.dtype, tuple(keys_shape[:-1]) + (4 * keys_shape[-1],))
        self._embedding_size = keys_shape[-1]
        super().build(input_shape)

    def forward(self, inputs, training=False, backprop=None, shared_keys=None):
        """``shared_keys`` (optional, ``(B, T)`` bool): positions whose keys are equal within each
        row and whose scores get no gradient (DIN's masked all-padding positions): in training
        they are computed once per row (``docs/local_activation_unit.md``), same results."""
        query, keys = self._check_inputs(inputs)
        self._build_for(query.dtype, [query.shape, keys.shape])
        query = query.astype(self.dtype, copy=False)
        keys = keys.astype(self.dtype, copy=False)
        check_last_dim(keys, "keys", self._embedding_size)
        dnn = self._layers["dnn"]
        keep = self._keeps_cache(training, backprop)
        # training only: there the batch statistics make it pay; an inference forward stays
        # row by row the same whatever else is in the batch (the Predictor is the fast inference)
        if (training and shared_keys is not None and SHARE_PADDING and self._factored
                and dnn.shares_rows(training) and shared_keys.any()):
            units = QueryKeyUnits.of(query, keys, shared_keys, self.dtype)
            h = dnn.forward_factored(units, training, backprop, counts=units.counts)       # (1, U, H)
            score_u = dense_forward(h, self._params["kernel"], self._params["bias"])       # (1, U, 1)
            score = score_u.reshape(-1)[units.unit_of].reshape(keys.shape[:2] + (1,))
            self._cache = SharedPaddingCache(h, units.unit_of) if keep else None
        else:
            # the split first layer takes u in factored form; otherwise u is formed, as DeepCTR does
            u = QueryKeyInput.of(query, keys) if self._factored else attention_input(query, keys)
            h = dnn.forward_factored(u, training, backprop)
            score = dense_forward(h, self._params["kernel"], self._params["bias"])
            self._cache = LocalActivationUnitCache(query, keys, h) if keep else None
        self._output_shape = score.shape
        return score

    @property
    def _factored(self):
        """The MLP's first layer takes ``[q, k, q - k, q * k]`` in factored form (``split``)."""
        return self.split and bool(self.hidden_units)

    def backward(self, grad_output):
        cache, d_score = self._take_cache(grad_output)
        h = cache.dnn_output
        if isinstance(cache, SharedPaddingCache):
            # each unit's score stands for several positions: their gradients add up
            d_score = np.bincount(cache.unit_of, weights=d_score.reshape(-1), minlength=h.shape[1])
            d_score = d_score.astype(self.dtype).reshape(1, -1, 1)
        d_h, self._grads["kernel"], self._grads["bias"] = dense_backward(d_score, h, self._params["kernel"])
        d_input = self._layers["dnn"].backward(d_h)
        if isinstance(cache, SharedPaddingCache) or self._factored:
            d_query, d_keys = d_input                # the factored input's own backward
        else:
            d_query, d_keys = attention_input_backward(d_input, cache.query, cache.keys)
        return [d_query, d_keys]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1][:2]) + (1,)

    def compute_mask(self, inputs, mask):
        return mask

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units,
                "activation": activation_name(self.activation), "l2_reg": self.l2_reg,
                "dropout_rate": self.dropout_rate, "use_bn": self.use_bn, "seed": self.seed,
                "split": self.split}


TASKS = ("binary", "multiclass", "regression")


class PredictionCache(NamedTuple):
    y: np.ndarray           # the output, (batch_size, 1) or (batch_size, n_classes)
    input_shape: tuple      # the input's shape, restored by backward


class PredictionLayer(Layer):
    r"""Output layer: add ``global_bias``, then the task's link.

    ``binary``: :math:`\hat y = \sigma(x + b)`; ``regression``: :math:`\hat y = x + b`;
    both reshaped to ``(batch_size, 1)`` as DeepCTR does.
    ``multiclass``: :math:`\hat y = \mathrm{softmax}(x + b)` over the last axis,
    output ``(batch_size, n_classes)``. DeepCTR accepts ``multiclass`` but applies
    no softmax and flattens ``(B, C)`` to ``(B*C, 1)``; npctr does what users of
    a multiclass head expect and documents the difference (``docs/prediction_layer.md``).

    Parameters
    ----------
    task : {'binary', 'multiclass', 'regression'}, default 'binary'
    use_bias : bool, default True
        Weight ``global_bias``: shape ``(1,)`` (``(C,)`` for multiclass), zeros.

    Notes
    -----
    Backward: binary :math:`dx = d\hat y\,\hat y(1-\hat y)`; regression :math:`dx = d\hat y`;
    multiclass :math:`dx = \hat y \odot (d\hat y - \langle d\hat y, \hat y\rangle)`;
    :math:`db = \sum dx`.
    """

    def __init__(self, task="binary", use_bias=True, **kwargs):
        super().__init__(**kwargs)
        if task not in TASKS:
            raise ValueError(f"task must be binary, multiclass or regression, got {task!r}")
        self.task = task
        self.use_bias = bool(use_bias)
        self._link = {"binary": "sigmoid", "multiclass": "softmax", "regression": "linear"}[task]

    @property
    def link(self):
        """The output function: ``'sigmoid'``, ``'softmax'`` or ``'linear'`` (the task's)."""
        return self._link

    def _check_input(self, inputs):
        x = float_array(inputs, "inputs", self.dtype)
        check_rank(x, "inputs", min_rank=1)
        if self.task == "multiclass":
            check_rank(x, "inputs", rank=2)
        elif int(np.prod(x.shape[1:])) != 1:
            raise ValueError(f"inputs of a {self.task} PredictionLayer must have one value per sample, "
                             f"shape (batch_size, 1), got {x.shape}")
        return x

    def build(self, input_shape):
        if self.use_bias:
            n = input_shape[-1] if self.task == "multiclass" else 1
            self.add_weight("global_bias", initializers.zeros(None, (n,)))
        super().build(input_shape)

    def forward(self, inputs, training=False, backprop=None):
        x = self._check_input(inputs)
        self._build_for(x.dtype, x.shape)
        input_shape = x.shape
        if self.task == "multiclass":
            if self.use_bias:
                check_last_dim(x, "inputs", self._params["global_bias"].shape[0])
        else:
            x = x.reshape(-1, 1)
        if self.use_bias:
            x = x + self._params["global_bias"]
        y = ACTIVATIONS[self._link][0](x)
        self._cache = PredictionCache(y, input_shape) if self._keeps_cache(training, backprop) else None
        self._output_shape = y.shape
        return y

    def backward(self, grad_output):
        cache, dy = self._take_cache(grad_output)
        dx = ACTIVATIONS[self._link][1](dy, cache.y)
        if self.use_bias:
            self._grads["global_bias"] = dx.sum(axis=0)
        return dx.reshape(cache.input_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] if self.task == "multiclass" else 1)

    def get_config(self):
        return {**super().get_config(), "task": self.task, "use_bias": self.use_bias}

