r"""Pooling over a behaviour sequence: ``SequencePoolingLayer`` and DIN's
``AttentionSequencePoolingLayer``, with DeepCTR's masking semantics.

A position :math:`t` of row :math:`b` is valid when :math:`t < \mathrm{len}_b`
(``keys_length`` / ``seq_len``) or, with ``supports_masking``, when the mask
says so (DIN: id 0 is padding). Derivations: ``docs/sequence_pooling.md`` and
``docs/attention_sequence_pooling.md``.
"""
from typing import NamedTuple

import numpy as np

from .base import Layer
from .activation import activation_name
from .core import LocalActivationUnit
from .._validation import float_array, int_array, check_rank, check_list, check_units
from ..ops.attention import attention_weights, attention_weights_backward
from ..ops.sequence import sequence_mask, sequence_pool, sequence_pool_backward


def _lengths(lengths, batch_size, name):
    lengths = int_array(lengths, name)
    if lengths.shape not in ((batch_size, 1), (batch_size,)):
        raise ValueError(f"{name} must have shape (batch_size, 1) = ({batch_size}, 1), got {lengths.shape}")
    if lengths.size and lengths.min() < 0:
        raise ValueError(f"{name} must be >= 0, got {lengths.min()}")
    return lengths.reshape(batch_size, 1)


def _mask(mask, shape, name="mask"):
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{name} must have shape (batch_size, T) = {shape}, got {mask.shape}")
    return mask.astype(bool, copy=False)


def _sequence_and_valid(dtype, seq, seq_name, mask=None, lengths=None, lengths_name=None):
    """The sequence as a checked ``(B, T, E)`` float array, its ``(B, T)`` valid positions and
    ``(B, 1)`` lengths, from ``lengths`` if given, else from the (required) ``mask``."""
    x = float_array(seq, seq_name, dtype)
    check_rank(x, seq_name, rank=3)
    if lengths is not None:
        length = _lengths(lengths, x.shape[0], lengths_name)
        return x, sequence_mask(length, x.shape[1]), length
    if mask is None:
        raise ValueError(f"mask is required when supports_masking=True (the (batch_size, T) mask of {seq_name})")
    valid = _mask(mask, x.shape[:2])
    return x, valid, valid.sum(axis=1, keepdims=True)


class SequencePoolingLayer(Layer):
    r"""Sum, mean or max over the valid positions of a sequence, as DeepCTR.

    .. math::
        \mathrm{sum}: y = \sum_t m_t x_t, \quad
        \mathrm{mean}: y = \frac{\sum_t m_t x_t}{\ell + 10^{-8}}, \quad
        \mathrm{max}: y = \max_t \big(x_t - (1 - m_t)\,10^9\big)

    Parameters
    ----------
    mode : {'mean', 'sum', 'max'}, default 'mean'
    supports_masking : bool, default False
        False: inputs ``[seq_value (batch_size, T, E), seq_len (batch_size, 1)]``.
        True: inputs ``seq_value`` and ``mask (batch_size, T)`` passed as ``mask=``;
        the length is the number of valid positions.

    Output ``(batch_size, 1, E)``. ``backward`` returns ``d seq_value`` (a list
    ``[d seq_value, None]`` for the list input: lengths have no gradient).

    Notes
    -----
    Backward: sum :math:`dx_t = m_t\,dy`; mean :math:`dx_t = m_t\,dy / (\ell + 10^{-8})`;
    max: :math:`dy` goes to the position(s) holding the maximum, shared equally
    between ties (TensorFlow's ``reduce_max`` gradient). As in DeepCTR, ``mean``
    divides by the given length even when it exceeds ``T``, and ``max`` of a row
    with no valid position is about ``-1e9``.
    """

    def __init__(self, mode="mean", supports_masking=False, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"mode must be 'sum', 'mean' or 'max', got {mode!r}")
        self.mode = mode
        self.supports_masking = bool(supports_masking)

    def forward(self, inputs, training=False, backprop=None, mask=None):
        if self.supports_masking:
            x, valid, length = _sequence_and_valid(self.dtype, inputs, "seq_value", mask=mask)
        else:
            check_list(inputs, "inputs", 2)
            x, valid, length = _sequence_and_valid(self.dtype, inputs[0], "seq_value", lengths=inputs[1],
                                                   lengths_name="seq_len")
        self._build_for(x.dtype, x.shape)
        y, self._cache = sequence_pool(x.astype(self.dtype, copy=False), valid, length, self.mode,
                                       keep_cache=self._keeps_cache(training, backprop))
        self._output_shape = y.shape
        return y

    def backward(self, grad_output):
        cache, dy = self._take_cache(grad_output)
        d_seq = sequence_pool_backward(dy, cache)
        # lengths are integers: no gradient
        return d_seq if self.supports_masking else [d_seq, None]

    def compute_output_shape(self, input_shape):
        shape = input_shape if self.supports_masking else input_shape[0]
        return (shape[0], 1, shape[-1])

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "supports_masking": self.supports_masking}


class AttentionCache(NamedTuple):
    keys: np.ndarray       # (B, T, E)
    valid: np.ndarray      # (B, 1, T) bool
    weights: np.ndarray    # (B, 1, T) masked (and maybe softmaxed) scores


class AttentionSequencePoolingLayer(Layer):
    r"""DIN's attention pooling of the behaviour sequence for one candidate.

    .. math::
        s = \mathrm{LAU}(q, k)^\top \in \mathbb R^{B \times 1 \times T}, \quad
        w = \begin{cases} \mathrm{softmax}_T\big(\mathrm{where}(m, s, -2^{32} + 1)\big) & \text{weight\_normalization} \\
                          \mathrm{where}(m, s, 0) & \text{otherwise} \end{cases}, \quad
        y = w\,k \in \mathbb R^{B \times 1 \times E}

    Parameters
    ----------
    att_hidden_units : sequence of int, default (80, 40)
    att_activation : str or activation Layer class, default 'sigmoid'
    weight_normalization : bool, default False
    return_score : bool, default False
        Return ``w`` ``(batch_size, 1, T)`` instead of ``y``.
    supports_masking : bool, default False
        False: inputs ``[query, keys, keys_length (batch_size, 1)]``; True:
        ``[query, keys]`` and ``mask=`` the keys' ``(batch_size, T)`` mask.
    split : bool, default True
        Passed to the ``LocalActivationUnit`` (the split first layer).

    The LocalActivationUnit (child ``local_att``) is fixed, as in DeepCTR, at
    ``l2_reg=0, dropout_rate=0, use_bn=False, seed=1024``.

    Notes
    -----
    Backward: :math:`dw = dy\,k^\top`, :math:`dk \mathrel{+}= w^\top dy`;
    :math:`ds = \mathrm{softmax}^\top(dw)` (or :math:`dw`) zeroed at masked
    positions; then the LAU backward adds its :math:`dq, dk`.
    A row with no valid position gets weights :math:`1/T` with weight
    normalization (the plain mean of all keys), and output 0 without.
    """

    def __init__(self, att_hidden_units=(80, 40), att_activation="sigmoid", weight_normalization=False,
                 return_score=False, supports_masking=False, split=True, **kwargs):
        super().__init__(**kwargs)
        self.att_hidden_units = check_units(att_hidden_units, "att_hidden_units")
        self.att_activation = att_activation
        self.weight_normalization = bool(weight_normalization)
        self.return_score = bool(return_score)
        self.supports_masking = bool(supports_masking)
        self.split = bool(split)
        self.add_layer("local_att", LocalActivationUnit(self.att_hidden_units, att_activation, l2_reg=0,
                                                        dropout_rate=0, use_bn=False, seed=1024,
                                                        split=split, name="local_att"))

    def build(self, input_shape):
        """Build the LocalActivationUnit too, so that every weight exists after ``build``
        (``set_weights`` or an import by name before any call). ``input_shape`` is
        ``[query_shape, keys_shape(, keys_length_shape)]``; None (the dtype fixed at the first
        call) leaves the unit to build on that call."""
        if input_shape is not None:
            if not isinstance(input_shape, (list, tuple)) or len(input_shape) not in (2, 3) or not all(
                    isinstance(shape, (list, tuple)) and len(shape) == 3 for shape in input_shape[:2]):
                raise ValueError("input_shape must be [query_shape, keys_shape] or [query_shape, keys_shape, "
                                 f"keys_length_shape], got {input_shape!r}")
            query_shape, keys_shape = input_shape[0], input_shape[1]
            self._layers["local_att"]._build_for(self.dtype, [tuple(query_shape), tuple(keys_shape)])
        super().build(input_shape)

    def _split_inputs(self, inputs, mask):
        if self.supports_masking:
            check_list(inputs, "inputs", 2)
            query, keys = inputs
            keys, valid, _ = _sequence_and_valid(self.dtype, keys, "keys", mask=mask)
        else:
            check_list(inputs, "inputs", 3)
            query, keys, keys_length = inputs
            keys, valid, _ = _sequence_and_valid(self.dtype, keys, "keys", lengths=keys_length,
                                                 lengths_name="keys_length")
        return query, keys, valid[:, None, :]

    def forward(self, inputs, training=False, backprop=None, mask=None):
        return self.forward_with_scores(inputs, training, backprop, mask)[0]

    def forward_with_scores(self, inputs, training=False, backprop=None, mask=None, shared_keys=None):
        """``forward`` that also returns the attention weights ``w`` ``(batch_size, 1, T)``.

        ``shared_keys`` (optional ``(batch_size, T)`` bool, e.g. DIN's all-padding positions):
        positions whose keys are equal within each row. Those that are masked are computed
        once per row by the LocalActivationUnit (same results, less work).
        """
        query, keys, valid = self._split_inputs(inputs, mask)
        self._build_for(keys.dtype, None)            # the dtype (keys' if open) reaches local_att too
        keys = keys.astype(self.dtype, copy=False)
        if shared_keys is not None:       # only masked positions: theirs get no gradient
            shared_keys = _mask(shared_keys, keys.shape[:2], "shared_keys") & ~valid[:, 0, :]
        score = self._layers["local_att"].forward([query, keys], training=training, backprop=backprop,
                                                  shared_keys=shared_keys)
        w = attention_weights(np.swapaxes(score, 1, 2), valid, self.weight_normalization)   # (B, 1, T)
        y = w if self.return_score else w @ keys
        self._cache = AttentionCache(keys, valid, w) if self._keeps_cache(training, backprop) else None
        self._output_shape = y.shape
        return y, w

    def backward(self, grad_output):
        cache, dy = self._take_cache(grad_output)
        keys, w = cache.keys, cache.weights
        if self.return_score:
            dw, d_keys = dy, 0.0
        else:
            dw = dy @ np.swapaxes(keys, 1, 2)          # (B, 1, E) @ (B, E, T) -> (B, 1, T)
            d_keys = np.swapaxes(w, 1, 2) @ dy         # (B, T, 1) @ (B, 1, E) -> (B, T, E)
        ds = attention_weights_backward(dw, w, cache.valid, self.weight_normalization)
        d_query, d_keys_lau = self._layers["local_att"].backward(np.swapaxes(ds, 1, 2))
        grads = [d_query, d_keys_lau + d_keys]
        return grads if self.supports_masking else grads + [None]

    def compute_output_shape(self, input_shape):
        if self.return_score:
            return (input_shape[1][0], 1, input_shape[1][1])
        return (input_shape[0][0], 1, input_shape[0][-1])

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "att_hidden_units": self.att_hidden_units,
                "att_activation": activation_name(self.att_activation),
                "weight_normalization": self.weight_normalization, "return_score": self.return_score,
                "supports_masking": self.supports_masking, "split": self.split}
