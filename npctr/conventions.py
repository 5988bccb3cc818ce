"""Numeric conventions of the frameworks npctr reproduces, one frozen profile each.

Every number that differs between DeepCTR on tf.keras 2, DeepCTR on Keras 3 and
DeepCTR-Torch lives here and nowhere else: layers, losses, models and optimizers
*read* a profile's fields (they never test which framework it is). Choose one with
``conventions=`` on any layer or model (``"tf_keras"`` is the default); children
take their parent's. Explicit constructor arguments (``epsilon=``, ``momentum=``)
still win over the profile.

>>> import npctr.conventions as c
>>> c.list_conventions()
['keras3', 'tf_keras', 'torch']
>>> c.get("torch").bn_epsilon
1e-05

The fields, side by side, are in ``docs/conventions.md``. NumPy-free, import-free:
this module knows no layer.
"""
from dataclasses import dataclass, fields, asdict, replace

DEFAULT = "tf_keras"


@dataclass(frozen=True)
class Conventions:
    """One framework's numeric conventions (see ``docs/conventions.md``).

    Attributes
    ----------
    name : str
        The profile's name (``"tf_keras"``, ``"keras3"``, ``"torch"``).
    framework : str
        What it reproduces, with versions.
    bn_momentum : float
        BatchNormalization's default momentum, in the framework's own terms (below).
    bn_momentum_convention : {'keras', 'torch'}
        ``'keras'``: the momentum is the weight of the old moving statistic (0.99);
        ``'torch'``: the weight of the batch statistic (``BatchNorm1d(momentum=0.1)``,
        0.9 in Keras terms). A layer's explicit ``momentum=`` is always in Keras terms.
    bn_epsilon : float
        BatchNormalization's default epsilon.
    bn_moving_update : {'subtract', 'lerp', 'torch'}
        The arithmetic of the moving-statistic update, with ``d = 1 - momentum``:
        ``'subtract'``: ``moving -= (moving - batch) * d`` (tf.keras 2);
        ``'lerp'``: ``moving * momentum + batch * d`` (Keras 3);
        ``'torch'``: ``d * batch + (1 - d) * moving`` (``torch.nn.BatchNorm``).
    bn_decay_float32 : bool
        ``d = 1 - momentum`` is rounded to float32 even in a float64 layer (tf.keras 2).
    bn_moving_variance : {'biased', 'unbiased'}
        Estimator fed to the moving variance: ``sum((x - mean)**2) / m`` or ``/(m - 1)``
        (torch). The forward always normalises with the biased batch variance.
    dice_epsilon : float
        Epsilon of Dice's inner BatchNormalization.
    dice_bn_affine : bool
        Dice's BatchNormalization learns ``gamma`` / ``beta`` (torch's ``BatchNorm1d``).
    dice_bn_momentum : float
        Momentum of Dice's BatchNormalization (``bn_momentum_convention`` terms).
    loss : {'tf_keras', 'keras3', 'torch'}
        Formula family of the training losses (``npctr.training.losses``):
        tf.keras 2 clips ``p`` to ``[1e-7, 1 - 1e-7]`` *and* adds ``1e-7`` inside the logs;
        Keras 3 only clips; torch clamps each log at -100 and has its own gradient
        ``(p - y) / max(p (1 - p), 1e-12)``.
    loss_reduction : {'mean', 'sum'}
        Batch reduction of the data loss (DeepCTR-Torch's fit: ``reduction='sum'``).
    l2_float32 : bool
        The L2 coefficient enters rounded to float32 in float64 models (Keras 3's
        ``ops.cast(self.l2, x.dtype)`` goes through a float32 constant; tf.keras 2 casts it to
        ``floatx``, which a float64 DeepCTR model sets to float64: exact).
    l2_on_dnn : bool
        ``l2_reg_dnn`` / a DNN's ``l2_reg`` enters the loss. DeepCTR-Torch's DNN stores
        ``l2_reg`` but never registers it, so its DIN ignores ``l2_reg_dnn``.
    history_mask : {'nonzero_ids', 'length'}
        How DIN masks the behaviour history: id 0 is padding (Keras ``mask_zero``), or
        positions ``t < length`` from the first ``VarLenSparseFeat.length_name``
        (DeepCTR-Torch).
    optimizer_flavor : {'keras', 'keras_legacy', 'torch'}
        Flavour of ``compile``'s optimizers (``npctr.training.optimizers``); the profile's
        name refines it where two frameworks of one flavour round differently (Keras 3's
        Adagrad starts its accumulator at float32(0.1)).
    kernel_layout : {'(in, out)', '(out, in)'}
        How the framework stores dense kernels (for importers; npctr always stores ``(in, out)``).
    gru_layout : {'keras', 'torch'}
        DIEN's GRU cells (``npctr.ops.gru``): tf.keras's legacy ``GRUCell`` (fused ``[x, h] @ K_g``
        giving ``r | u``, candidate ``tanh([x, r * h] @ K_c + b_c)``, one bias per gate) or
        ``torch.nn.GRU`` (blocks ``r | z | n``, two biases, candidate
        ``tanh(x W_in + b_in + r * (h W_hn + b_hn))``). Different functions, not layouts of one.
    augru_gate : {'keep', 'update'}
        What AUGRU's attention ``a`` scales: ``'keep'``: the gate weighing the old state,
        ``g = (1 - a) u`` (DeepCTR-TF, the DIEN authors' code); ``'update'``: the gate weighing the
        candidate, ``1 - g = a z`` (DeepCTR-Torch, the paper). Attention 0 is a plain GRU step
        under ``'keep'`` and keeps the state under ``'update'``.
    augru_tied_bias : bool
        AUGRU has ONE bias used as both ``b_i`` and ``b_h`` (DeepCTR-Torch's ``AUGRUCell``
        registers ``bias_hh`` under the name ``bias_ih``); npctr's weight ``bias``.
    aux_loss_reduction : {'all_positions', 'valid_entries'}
        DIEN's auxiliary loss: the masked sum divided by ``B (T - 1)`` (DeepCTR-TF's
        ``reduce_mean`` over every position, padding and empty rows included), or the mean over
        the ``2N`` valid click and no-click entries (DeepCTR-Torch; 0 when ``N = 0``).
    aux_loss_log_clamp : float or None
        None: plain ``-log p``, ``-log(1 - q)`` (DeepCTR-TF); a number: torch's
        ``F.binary_cross_entropy``, logs clamped at it (-100), with torch's backward
        ``(p - y) / max(p (1 - p), 1e-12)`` (``npctr.ops.losses``).
    dien_dnn_input : tuple of str
        The order of DIEN's DNN input, from ``"sparse"`` (every SparseFeat embedding),
        ``"pooled"`` (non-history sequences pooled by their combiner), ``"hist"`` (the final
        interest) and ``"dense"``; a piece not listed is not used (DeepCTR-Torch's DIEN ignores
        non-history sequences).
    dien_dense_float32 : bool
        DIEN's dense features enter rounded to float32, also in a float64 model (DeepCTR-Torch's
        DIEN reads them with ``get_dense_input``, which casts with ``.float()``; its DIN does not).
    dien_attention_rows : {'all', 'nonempty'}
        Rows of the evolving layer's attention: every row (DeepCTR-TF: Dice's batch statistics
        over ``B x T``) or only rows of length > 0 (DeepCTR-Torch drops empty rows first).
        Only batch statistics (Dice / BN in the attention, training mode) can tell them apart.
    """
    name: str
    framework: str
    bn_momentum: float
    bn_momentum_convention: str
    bn_epsilon: float
    bn_moving_update: str
    bn_decay_float32: bool
    bn_moving_variance: str
    dice_epsilon: float
    dice_bn_affine: bool
    dice_bn_momentum: float
    loss: str
    loss_reduction: str
    l2_float32: bool
    l2_on_dnn: bool
    history_mask: str
    optimizer_flavor: str
    kernel_layout: str
    gru_layout: str
    augru_gate: str
    augru_tied_bias: bool
    aux_loss_reduction: str
    aux_loss_log_clamp: object
    dien_dnn_input: tuple
    dien_dense_float32: bool
    dien_attention_rows: str

    def as_dict(self):
        """The fields as a plain dict (for tables and reports)."""
        return asdict(self)


TF_KERAS = Conventions(
    name="tf_keras", framework="DeepCTR 0.9.4 on tf.keras 2 (tf-keras 2.21, TF_USE_LEGACY_KERAS=1)",
    bn_momentum=0.99, bn_momentum_convention="keras", bn_epsilon=1e-3, bn_moving_update="subtract",
    bn_decay_float32=True,
    bn_moving_variance="biased", dice_epsilon=1e-9, dice_bn_affine=False, dice_bn_momentum=0.99,
    loss="tf_keras", loss_reduction="mean", l2_float32=False, l2_on_dnn=True,
    history_mask="nonzero_ids", optimizer_flavor="keras", kernel_layout="(in, out)",
    gru_layout="keras", augru_gate="keep", augru_tied_bias=False, aux_loss_reduction="all_positions",
    aux_loss_log_clamp=None, dien_dnn_input=("sparse", "pooled", "hist", "dense"), dien_dense_float32=False,
    dien_attention_rows="all")

# Keras 3 runs DeepCTR's graph as tf.keras 2 does; only these conventions differ (DIEN's fields are
# tf.keras 2's: DeepCTR's DIEN is one graph whichever Keras runs it)
KERAS3 = replace(
    TF_KERAS, name="keras3", framework="DeepCTR 0.9.4 on Keras 3 (TensorFlow 2.21's default Keras)",
    bn_moving_update="lerp", bn_decay_float32=False, loss="keras3", l2_float32=True)

TORCH = Conventions(
    name="torch", framework="DeepCTR-Torch 0.3.0 on PyTorch 2.13",
    bn_momentum=0.1, bn_momentum_convention="torch", bn_epsilon=1e-5, bn_moving_update="torch",
    bn_decay_float32=False,
    bn_moving_variance="unbiased", dice_epsilon=1e-8, dice_bn_affine=True, dice_bn_momentum=0.1,
    loss="torch", loss_reduction="sum", l2_float32=False, l2_on_dnn=False,
    history_mask="length", optimizer_flavor="torch", kernel_layout="(out, in)",
    gru_layout="torch", augru_gate="update", augru_tied_bias=True, aux_loss_reduction="valid_entries",
    aux_loss_log_clamp=-100.0, dien_dnn_input=("hist", "sparse", "dense"), dien_dense_float32=True,
    dien_attention_rows="nonempty")

PROFILES = {p.name: p for p in (TF_KERAS, KERAS3, TORCH)}


def list_conventions():
    """The names of the known profiles, sorted."""
    return sorted(PROFILES)


def get(conventions=None):
    """The profile for a name (None: ``"tf_keras"``) or a :class:`Conventions`, returned as is.

    An unknown name is a ValueError listing the known ones.
    """
    if conventions is None:
        return PROFILES[DEFAULT]
    if isinstance(conventions, Conventions):
        return conventions
    if isinstance(conventions, str) and conventions in PROFILES:
        return PROFILES[conventions]
    raise ValueError(f"conventions must be one of {list_conventions()} (or None for {DEFAULT!r}), "
                     f"got {conventions!r}")


def check_name(conventions):
    """Validate a ``conventions=`` argument; returns its name, or None (open: the parent's / default)."""
    if conventions is None:
        return None
    return get(conventions).name


FIELDS = tuple(f.name for f in fields(Conventions))
