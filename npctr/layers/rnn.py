r"""DeepCTR's ``DynamicGRU``: a GRU, AGRU or AUGRU over padded sequences with lengths.

The equations (both frameworks' cells, the attention gates, the masked step and
backpropagation through time) are :mod:`npctr.ops.gru`; the derivation with shapes is
``docs/dien.md``. This layer owns the weights, in the layout its conventions profile names
(``gru_layout``), and reads the profile's AUGRU meaning (``augru_gate``, ``augru_tied_bias``).
"""
import numbers

import numpy as np

from .base import Layer, make_rng
from .sequence import _lengths
from .. import initializers
from .._validation import float_array, check_rank, check_list, check_seed
from ..ops.gru import WEIGHTS, TorchGRUWeights, gru_sequence, gru_sequence_backward, weight_shapes
from ..ops.sequence import sequence_mask

#: DeepCTR's ``gru_type`` values: "AIGRU" is a plain GRU (the attention scales its input, outside)
GRU_TYPES = ("GRU", "AIGRU", "AGRU", "AUGRU")


class DynamicGRU(Layer):
    r"""A GRU over padded sequences, as DeepCTR's ``DynamicGRU`` (``dynamic_rnn``) and
    DeepCTR-Torch's packed ``nn.GRU`` / ``DynamicGRU``.

    With :math:`m_t = [t < L]`: :math:`h_t = m_t ? \tilde h_t : h_{t-1}`,
    :math:`o_t = m_t ? \tilde h_t : 0`, :math:`h_{-1} = 0`, where :math:`\tilde h_t` is the
    cell of ``gru_type`` on :math:`(x_t, h_{t-1})` (:mod:`npctr.ops.gru`).

    Parameters
    ----------
    num_units : int or None
        The state size H; None: the input's last dimension (DeepCTR's default).
    gru_type : {'GRU', 'AIGRU', 'AGRU', 'AUGRU'}, default 'GRU'
        'AIGRU' is a plain GRU (as in DeepCTR). 'AGRU' and 'AUGRU' take attention scores.
    return_sequence : bool, default True
        Return every output ``(batch_size, T, H)``, else the final state ``(batch_size, 1, H)``.
    seed : int, default 1024
        Seeds the kernels' initializer.

    Inputs ``[rnn_input (batch_size, T, D), sequence_length (batch_size, 1)]``, plus
    ``att_score (batch_size, T, 1)`` for AGRU / AUGRU. ``backward`` returns the matching list
    ``[d rnn_input, None, d att_score]`` (lengths have no gradient).

    Weights (``gru_layout``): ``'keras'``: ``gates_kernel (D + H, 2H)`` (columns ``r | u``),
    ``gates_bias (2H,)`` (initialised to 1, as tf.keras), ``candidate_kernel (D + H, H)``,
    ``candidate_bias (H,)``; ``'torch'`` (``(in, out)``, columns ``r | z | n``):
    ``kernel_ih (D, 3H)``, ``kernel_hh (H, 3H)``, ``bias_ih (3H,)``, ``bias_hh (3H,)``, or one
    ``bias (3H,)`` for an AUGRU whose profile ties them. Kernels start glorot-uniform.

    Notes
    -----
    Backward (BPTT): from the last step down, the gradient at :math:`\tilde h_t` is
    :math:`m_t (dh_t + do_t)`, a padded step passes :math:`dh_t` to :math:`h_{t-1}` unchanged;
    through :math:`\tilde h = g h + (1 - g) c`: :math:`dg = d\tilde h (h - c)`,
    :math:`dc = d\tilde h (1 - g)`, :math:`dh \mathrel{+}= d\tilde h\,g`; then the keep gate's,
    the candidate's and the gates' backward (``docs/dien.md``). The weights' gradients are one
    GEMM each over every position; a tied bias gets the sum of both uses.
    """

    def __init__(self, num_units=None, gru_type="GRU", return_sequence=True, seed=1024, **kwargs):
        super().__init__(**kwargs)
        if num_units is not None and (isinstance(num_units, bool) or not isinstance(num_units, numbers.Integral)
                                      or num_units <= 0):
            raise ValueError(f"num_units must be a positive integer or None, got {num_units!r}")
        if gru_type not in GRU_TYPES:
            raise ValueError(f"gru_type must be one of {list(GRU_TYPES)}, got {gru_type!r}")
        self.num_units = None if num_units is None else int(num_units)
        self.gru_type = gru_type
        self.return_sequence = bool(return_sequence)
        self.seed = check_seed(seed)

    @property
    def uses_attention(self):
        """AGRU and AUGRU take attention scores as a third input."""
        return self.gru_type in ("AGRU", "AUGRU")

    @property
    def _cell_type(self):
        return "GRU" if self.gru_type == "AIGRU" else self.gru_type

    @property
    def tied_bias(self):
        """One bias for both uses (an AUGRU under a profile with ``augru_tied_bias``)."""
        conv = self.conventions
        return conv.gru_layout == "torch" and self.gru_type == "AUGRU" and conv.augru_tied_bias

    def build(self, input_shape):
        input_size = input_shape[0][-1] if isinstance(input_shape, list) else input_shape[-1]
        if self.num_units is None:
            self.num_units = int(input_size)
        layout = self.conventions.gru_layout
        rng = make_rng(self.seed)
        for key, shape in weight_shapes(layout, int(input_size), self.num_units).items():
            if key.endswith("kernel") or key.startswith("kernel"):
                value = initializers.glorot_uniform(rng, shape)
            elif key == "gates_bias":           # tf.keras GRUCell: gate biases start at 1
                value = initializers.ones(None, shape)
            else:
                value = initializers.zeros(None, shape)
            if key == "bias_hh" and self.tied_bias:
                continue
            self.add_weight("bias" if (key == "bias_ih" and self.tied_bias) else key, value)
        self._input_size = int(input_size)
        super().build(input_shape)

    def cell_weights(self):
        """The cell's weights as :mod:`npctr.ops.gru`'s NamedTuple of the layout
        (``KerasGRUWeights`` / ``TorchGRUWeights``; a tied bias passed as both biases): what the
        serving paths and exporters arrange."""
        p = self._params
        layout = self.conventions.gru_layout
        if self.tied_bias:
            return TorchGRUWeights(p["kernel_ih"], p["kernel_hh"], p["bias"], p["bias"])
        return WEIGHTS[layout](*(p[k] for k in WEIGHTS[layout]._fields))

    def _inputs(self, inputs):
        n = 3 if self.uses_attention else 2
        check_list(inputs, "inputs", n)
        x = float_array(inputs[0], "rnn_input", self.dtype)
        check_rank(x, "rnn_input", rank=3)
        length = _lengths(inputs[1], x.shape[0], "sequence_length")
        att = None
        if self.uses_attention:
            att = float_array(inputs[2], "att_score", self.dtype or x.dtype)
            if att.shape not in (x.shape[:2] + (1,), x.shape[:2]):
                raise ValueError(f"att_score must have shape (batch_size, T, 1) = {x.shape[:2] + (1,)}, "
                                 f"got {att.shape}")
        return x, length, att

    def forward(self, inputs, training=False, backprop=None):
        x, length, att = self._inputs(inputs)
        self._build_for(x.dtype, [x.shape, length.shape])
        if x.shape[-1] != self._input_size:
            raise ValueError(f"rnn_input must have last dimension {self._input_size} (the size the layer was "
                             f"built for), got shape {x.shape}")
        x = x.astype(self.dtype, copy=False)
        if att is not None:
            att = att.astype(self.dtype, copy=False).reshape(x.shape[:2])
        keep = self._keeps_cache(training, backprop)
        outputs, final, cache = gru_sequence(x, sequence_mask(length, x.shape[1]), self.cell_weights(),
                                             self._cell_type, att, self.conventions.augru_gate, keep_cache=keep)
        self._cache = cache
        y = outputs if self.return_sequence else final[:, None, :]
        self._output_shape = y.shape
        return y

    def backward(self, grad_output):
        cache, dy = self._take_cache(grad_output)
        if self.return_sequence:
            d_x, grads, d_att = gru_sequence_backward(dy, None, cache)
        else:
            d_x, grads, d_att = gru_sequence_backward(None, dy[:, 0, :], cache)
        if self.tied_bias:              # one bias, two uses: the gradients add up
            self._grads.update(kernel_ih=grads.kernel_ih, kernel_hh=grads.kernel_hh,
                               bias=grads.bias_ih + grads.bias_hh)
        else:
            self._grads.update(grads._asdict())
        if self.uses_attention:
            return [d_x, None, d_att[:, :, None]]
        return [d_x, None]

    def compute_output_shape(self, input_shape):
        seq_shape = input_shape[0]
        units = self.num_units if self.num_units is not None else seq_shape[-1]
        if self.return_sequence:
            return tuple(seq_shape[:2]) + (units,)
        return (seq_shape[0], 1, units)

    def get_config(self):
        return {**super().get_config(), "num_units": self.num_units, "gru_type": self.gru_type,
                "return_sequence": self.return_sequence, "seed": self.seed}
