r"""DIEN's auxiliary loss: each interest state predicts the next behaviour against a sampled negative.

DeepCTR's ``auxiliary_loss`` (``deepctr/models/sequence/dien.py``) and DeepCTR-Torch's
``InterestExtractor._cal_auxiliary_loss``. With :math:`m'_t = [t < L - 1]`, a small network
:math:`\mathrm{DNN}_{aux}` (2H -> 100 -> 50 -> 1, sigmoid after every layer) and
:math:`p_t = \mathrm{DNN}_{aux}([h_t, e_{t+1}])`, :math:`q_t = \mathrm{DNN}_{aux}([h_t, e^-_{t+1}])`:

.. math::
    \mathcal L_{aux} = \frac{1}{Z} \sum_{b, t} m'_{bt}\,\big(\ell(1, p_{bt}) + \ell(0, q_{bt})\big)

where the profile sets the per-entry loss :math:`\ell` (``aux_loss_log_clamp``: plain logs, or
torch's clamped BCE) and the count :math:`Z` (``aux_loss_reduction``: :math:`B (T - 1)`, or the
:math:`2N` valid entries). Derivation: ``docs/dien.md``.
"""
from typing import NamedTuple

import numpy as np

from .base import Layer
from .core import DNN
from .sequence import _lengths
from .._validation import float_array, check_rank, check_list, check_units
from ..ops.losses import log_loss, log_loss_grad, torch_bce, torch_bce_grad
from ..ops.sequence import sequence_mask

REDUCTIONS = ("all_positions", "valid_entries")


class AuxiliaryLossCache(NamedTuple):
    rows: np.ndarray        # (N,) row of each valid position
    steps: np.ndarray       # (N,) time step of each valid position
    p: np.ndarray           # (2N, 1): click probabilities, then no-click ones
    count: float            # Z, the divisor of the reduction
    shapes: tuple           # (h_states shape, click_seq shape)


class AuxiliaryLoss(Layer):
    r"""DIEN's auxiliary loss, a scalar, with its network (child ``dnn``).

    Parameters
    ----------
    hidden_units : sequence of int, default (100, 50, 1)
        The network's sizes (DeepCTR hard-codes these; the last must be 1).
    activation : str, default 'sigmoid'
        After every layer, the last included (it gives the probability).

    Inputs ``[h_states (batch_size, T', H), click_seq (batch_size, T', E), noclick_seq
    (batch_size, T', E), mask_length (batch_size, 1)]``: valid positions are
    ``t < mask_length`` (DIEN passes the interests ``o[:, :-1]``, the behaviours ``e[:, 1:]`` and
    ``e-[:, 1:]`` and ``L - 1``). Output: the loss, a 0-d array. Only the valid positions
    enter the network (padded ones cannot change the loss, and a saturated padded entry would
    be ``0 * inf`` in DeepCTR-TF). ``backward(d_loss)`` returns
    ``[d h_states, d click_seq, d noclick_seq, None]``.

    Notes
    -----
    Backward: :math:`dp = \frac{d\mathcal L}{Z}\,\ell'(1, p)`, :math:`dq = \frac{d\mathcal L}{Z}\,\ell'(0, q)`;
    the network's backward gives :math:`d[h, e]` for each entry; the click and no-click entries
    add their :math:`dh` at the same state (the network is shared).
    """

    def __init__(self, hidden_units=(100, 50, 1), activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = check_units(hidden_units, "hidden_units")
        if not self.hidden_units or self.hidden_units[-1] != 1:
            raise ValueError(f"hidden_units must end in 1 (the network gives one probability per entry), "
                             f"got {self.hidden_units}")
        self.activation = activation
        # DeepCTR's DNN([100, 50, 1], activation='sigmoid'): no L2, no dropout, no BN, default seed
        self.add_layer("dnn", DNN(self.hidden_units, activation, l2_reg=0, dropout_rate=0, use_bn=False,
                                  seed=1024, dtype=self.dtype, name="dnn"))

    def build(self, input_shape):
        h_shape, click_shape = input_shape[0], input_shape[1]
        self._layers["dnn"]._build_for(self.dtype, (None, h_shape[-1] + click_shape[-1]))
        self._sizes = (h_shape[-1], click_shape[-1])
        super().build(input_shape)

    def _inputs(self, inputs):
        check_list(inputs, "inputs", 4)
        names = ("h_states", "click_seq", "noclick_seq")
        h, click, noclick = (float_array(a, n, self.dtype) for a, n in zip(inputs[:3], names))
        for a, n in zip((h, click, noclick), names):
            check_rank(a, n, rank=3)
        if click.shape != noclick.shape or click.shape[:2] != h.shape[:2]:
            raise ValueError(f"h_states (batch_size, T', H), click_seq and noclick_seq (batch_size, T', E) must "
                             f"agree, got {h.shape}, {click.shape}, {noclick.shape}")
        return h, click, noclick, _lengths(inputs[3], h.shape[0], "mask_length")

    def forward(self, inputs, training=False, backprop=None):
        h, click, noclick, length = self._inputs(inputs)
        self._build_for(h.dtype, [h.shape, click.shape])
        if (h.shape[-1], click.shape[-1]) != self._sizes:
            raise ValueError(f"h_states and click_seq must have last dimensions {self._sizes} (the sizes the layer "
                             f"was built for), got {h.shape[-1]} and {click.shape[-1]}")
        h, click, noclick = (a.astype(self.dtype, copy=False) for a in (h, click, noclick))
        b, steps = h.shape[:2]
        rows, ts = np.nonzero(sequence_mask(length, steps))
        n = rows.size
        conv = self.conventions
        count = b * steps if conv.aux_loss_reduction == "all_positions" else 2 * n
        keep = self._keeps_cache(training, backprop)
        dnn = self._layers["dnn"]
        if n == 0:                      # no valid entry: the loss is 0 (the network is not run)
            loss = np.zeros((), self.dtype)
            p = np.zeros((0, 1), self.dtype)
        else:
            h_valid = h[rows, ts]
            inp = np.concatenate([np.concatenate([h_valid, click[rows, ts]], axis=-1),
                                  np.concatenate([h_valid, noclick[rows, ts]], axis=-1)])     # (2N, H + E)
            p = dnn.forward(inp, training, backprop)                                           # (2N, 1)
            y = self._targets(n)
            terms = torch_bce(y, p) if conv.aux_loss_log_clamp is not None else log_loss(y, p)
            loss = np.asarray(terms.sum() / self.dtype.type(count), dtype=self.dtype)
        self._cache = AuxiliaryLossCache(rows, ts, p, count, (h.shape, click.shape)) if keep else None
        self._output_shape = ()
        return loss

    def _targets(self, n):
        """``(2N, 1)``: 1 for the click entries, 0 for the no-click ones."""
        y = np.zeros((2 * n, 1), self.dtype)
        y[:n] = 1
        return y

    def backward(self, grad_output=1.0):
        cache, d_loss = self._take_cache(np.asarray(grad_output))
        h_shape, click_shape = cache.shapes
        d_h, d_click, d_noclick = (np.zeros(s, self.dtype) for s in (h_shape, click_shape, click_shape))
        n = cache.rows.size
        if n:
            y = self._targets(n)
            p = cache.p
            d_p = torch_bce_grad(y, p) if self.conventions.aux_loss_log_clamp is not None else log_loss_grad(y, p)
            d_p *= d_loss / self.dtype.type(cache.count)
            d_inp = self._layers["dnn"].backward(d_p)
            size_h = h_shape[-1]
            rows, ts = cache.rows, cache.steps
            d_h[rows, ts] = d_inp[:n, :size_h] + d_inp[n:, :size_h]    # one state, two entries
            d_click[rows, ts] = d_inp[:n, size_h:]
            d_noclick[rows, ts] = d_inp[n:, size_h:]
        else:                                                  # the network did not run: no gradient
            dnn = self._layers["dnn"]
            dnn._grads.update({k: np.zeros_like(v) for k, v in dnn._params.items()})
        return [d_h, d_click, d_noclick, None]

    def compute_output_shape(self, input_shape):
        return ()

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units, "activation": self.activation}
