"""DeepCTR-Torch weights in and out of npctr, by ``state_dict()`` name.

DeepCTR-Torch names follow its module attributes: ``dnn.linears.0.weight``,
``dnn.bn.0.running_mean``, ``attention.local_att.dnn.activation_layers.1.alpha``,
``embedding_dict.item_id.weight``, ``dnn_linear.weight``, ``out.bias``. Layouts converted:

* ``nn.Linear.weight`` is ``(out, in)``: npctr's kernels are its transpose;
* ``Dice.alpha`` is ``(E, 1)`` on a 3-D input (``dim=3``) and ``(E,)`` on a 2-D one: npctr ``(E,)``;
* ``BatchNorm1d``: ``weight``/``bias``/``running_mean``/``running_var`` are npctr's
  ``gamma``/``beta``/``moving_mean``/``moving_variance``; ``num_batches_tracked`` is ignored on the
  way in and written as 0 on the way out (it matters only for ``momentum=None``);
* DeepCTR-Torch's Dice wraps an *affine* BatchNorm1d: its ``bn.weight``/``bn.bias`` load into
  npctr's ``<dice>/bn/gamma``/``beta``, which exist when the model is built with the Torch
  conventions; a model without them reports those names as unmatched.
"""
import numpy as np

from ..layers.activation import Dice, PReLU
from ..layers.core import DNN, LocalActivationUnit, PredictionLayer
from ..layers.dense import Dense
from ..layers.embedding import Embedding
from ..layers.normalization import BatchNormalization
from ..layers.sequence import AttentionSequencePoolingLayer
from ..models.base import Model
from ._names import ExportedWeights, check_conventions, load_matched, source_path, take_prefix, to_numpy

_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
LINEAR, ALPHA, PLAIN, PRELU = "linear", "alpha", "plain", "prelu"


def _entries(layer):
    """``(npctr path, torch name, layout)`` for ``layer``'s weights, names relative to its module."""
    if isinstance(layer, BatchNormalization):
        for key in list(layer._params) + list(layer._state):
            yield key, _BN[key], PLAIN
    elif isinstance(layer, Dice):
        yield "dice_alpha", "alpha", ALPHA
        yield from _child(layer, "bn", "bn")
    elif isinstance(layer, PReLU):
        yield "alpha", "weight", PRELU
    elif isinstance(layer, DNN):
        for i in range(len(layer.hidden_units)):
            yield f"kernel{i}", f"linears.{i}.weight", LINEAR
            yield f"bias{i}", f"linears.{i}.bias", PLAIN
            if layer.use_bn:
                yield from _child(layer, f"bn{i}", f"bn.{i}")
            yield from _child(layer, f"activation{i}", f"activation_layers.{i}")
    elif isinstance(layer, LocalActivationUnit):
        yield "kernel", "dense.weight", LINEAR
        yield "bias", "dense.bias", PLAIN
        yield from _child(layer, "dnn", "dnn")
    elif isinstance(layer, AttentionSequencePoolingLayer):
        yield from _child(layer, "local_att", "local_att")
    elif isinstance(layer, PredictionLayer):
        for key in layer._params:
            yield key, "bias", PLAIN
    elif isinstance(layer, Dense):
        yield "kernel", "weight", LINEAR
        if layer.use_bias:
            yield "bias", "bias", PLAIN
    elif isinstance(layer, Embedding):
        yield "embeddings", "weight", PLAIN
    elif isinstance(layer, Model) and hasattr(layer, "sparse_columns"):
        yield from _feature_model_entries(layer)
    elif layer.params or layer.state:
        raise TypeError(f"no DeepCTR-Torch name is known for the weights of {type(layer).__name__}")


def _child(layer, child_key, module_name):
    for path, name, layout in _entries(layer._layers[child_key]):
        yield f"{child_key}/{path}", f"{module_name}.{name}", layout


# DIN / DNNModel: npctr child -> DeepCTR-Torch attribute
_MODEL_MODULES = {"attention_sequence_pooling_layer": "attention", "dnn": "dnn", "dense": "dnn_linear",
                  "prediction_layer": "out"}


def _feature_model_entries(model):
    for child_key, child in model._layers.items():
        if isinstance(child, Embedding):
            yield from _child(model, child_key, f"embedding_dict.{child_key[len('sparse_emb_'):]}")
        elif child_key in _MODEL_MODULES:
            yield from _child(model, child_key, _MODEL_MODULES[child_key])
        elif child.params or child.state:
            raise TypeError(f"no DeepCTR-Torch name is known for {child_key} of {type(model).__name__}")


def torch_spec(model):
    """``{npctr path: (DeepCTR-Torch state_dict name, layout)}`` for every weight of ``model``;
    layout is ``"linear"`` (transposed), ``"alpha"`` (Dice's ``(E, 1)`` or ``(E,)``) or ``"plain"``."""
    spec = {path: (name, layout) for path, name, layout in _entries(model)}
    missing = set(model.weight_names()) - set(spec)
    if missing:
        raise TypeError(f"no DeepCTR-Torch name is known for {sorted(missing)} of {type(model).__name__}")
    return spec


def _to_npctr(layout, array, target, name=None):
    if layout == PRELU and array.size == 1 and target.size != 1:
        raise ValueError(
            f"load_torch_state_dict: {name!r} has shape {array.shape}: DeepCTR-Torch's 'prelu' is one "
            "nn.PReLU() per layer, a single alpha shared by all its units, while npctr's PReLU (as Keras's) "
            f"has one alpha per unit {target.shape}; npctr cannot represent that layer (copying the one alpha "
            "to every unit would predict the same but train differently), so nothing was loaded. Use another "
            "activation, or a DeepCTR (Keras) model, whose PReLU npctr reproduces")
    if layout == LINEAR and array.ndim == 2:
        return array.T
    if layout == ALPHA and array.shape in ((target.size, 1), (target.size,)):
        return array.reshape(target.shape)
    return array


def _dice_input_rank(model, path):
    """The input rank of the Dice holding ``path`` (``.../dice_alpha``): 3 in an attention DNN."""
    layer = model
    for part in path.split("/")[:-1]:
        layer = layer._layers[part]
    return getattr(layer._layers["bn"], "_ndim", 2)


def _from_npctr(model, path, layout, array):
    if layout == LINEAR:
        return array.T.copy()
    if layout == ALPHA and _dice_input_rank(model, path) == 3:
        return array.reshape(-1, 1).copy()
    return array.copy()


def read_torch_source(source, prefix=None):
    """``{state_dict name: array or tensor}`` from a dict, a module or a ``.pt`` / ``.pth`` file."""
    path = source_path(source)
    if path is not None:
        state = _read_torch_file(path)
    elif isinstance(source, dict):
        state = dict(source)
    elif hasattr(source, "state_dict") and callable(source.state_dict):
        state = dict(source.state_dict())
    elif isinstance(source, (list, tuple)):
        raise TypeError("load_torch_state_dict matches weights by name, never by position: pass a "
                        "state_dict(), the module or a .pt file, not a list")
    else:
        raise TypeError(f"load_torch_state_dict: source must be a state_dict (dict), a torch module or "
                        f"a path to a .pt / .pth file, got {type(source).__name__}")
    return take_prefix(state, prefix, ".", str, "load_torch_state_dict")


def _read_torch_file(path):
    """A state_dict saved with ``torch.save``, read with ``torch.load(weights_only=True)``:
    npctr never unpickles arbitrary objects (that would run code)."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"reading {path!r} needs torch (a .pt file is a pickle, which only torch.load("
                          "weights_only=True) reads safely): pip install torch, or pass the state_dict "
                          "as a dict of NumPy arrays") from exc
    with open(path, "rb"):     # FileNotFoundError as usual
        pass
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except TypeError as exc:
        raise ValueError(f"this torch ({torch.__version__}) has no torch.load(weights_only=True); npctr "
                         f"refuses to unpickle {path!r} without it (that could run code): upgrade torch "
                         ">= 1.13 or pass a dict of arrays") from exc
    except Exception as exc:    # UnpicklingError (objects other than tensors), not a torch file...
        raise ValueError(f"{path!r} is not a state_dict file torch.load(weights_only=True) can read "
                         f"(a pickle of other objects is refused, as is a non-torch file): "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]       # a checkpoint {"state_dict": ..., "epoch": ...}
    if not isinstance(state, dict) or not all(hasattr(v, "detach") for v in state.values()):
        raise ValueError(f"{path!r} holds {type(state).__name__}, not a state_dict {{name: tensor}}")
    return state


def load_torch_state_dict(model, source, strict=True, prefix=None, check_conventions=True):
    """Load DeepCTR-Torch weights into an npctr layer or model, matching by name.

    Parameters
    ----------
    model : npctr Layer or Model (built)
    source : dict, torch module or path
        A ``state_dict()`` (torch tensors or NumPy arrays), the module itself, or a ``.pt`` /
        ``.pth`` file read with ``torch.load(weights_only=True)`` (needs torch).
    strict : bool, default True
        Every npctr weight must get a value and every name must find an npctr weight
        (``num_batches_tracked`` is always ignored). With ``False`` a subset loads; names
        that match nothing are still an error.
    prefix : str, optional
        Take only the names under this module path (e.g. ``"attention"`` of a DIN for an
        npctr ``AttentionSequencePoolingLayer``).
    check_conventions : bool, default True
        DeepCTR-Torch's weights go into a model built with ``conventions="torch"``: a model of
        another profile whose numbers depend on it (any model; a layer with a BatchNormalization
        or Dice) is refused with a ``ValueError`` naming the profile to use (its predictions
        would differ by up to ~1e-2). A dict exported by ``to_torch_state_dict`` is judged by the
        profile it was exported from. ``False`` loads anyway.

    Returns the list of npctr paths loaded. ``ValueError`` (nothing written) on unmatched,
    duplicate or wrongly shaped weights, or a conventions mismatch.
    """
    state = read_torch_source(source, prefix)
    spec = torch_spec(model)
    layouts = {path: layout for path, (_, layout) in spec.items()}
    names = {path: name for path, (name, _) in spec.items()}
    ignored = {k for k in state if k.rsplit(".", 1)[-1] == "num_batches_tracked"}
    return load_matched(model, {path: name for path, (name, _) in spec.items()}, state,
                        lambda names: {n: n for n in names}, strict, "torch_state_dict",
                        convert=lambda path, array, target: _to_npctr(layouts[path], array, target, names[path]),
                        ignored=ignored,
                        before_write=(lambda: _check_torch_conventions(model, source)) if check_conventions else None)


def _check_torch_conventions(model, source):
    check_conventions(model, source, ("torch",), "DeepCTR-Torch", "load_torch_state_dict")


def to_torch_state_dict(model, numpy=False):
    """The DeepCTR-Torch ``state_dict`` of ``model``'s weights, in Torch's layouts.

    Returns torch tensors (needs torch; ``module.load_state_dict(sd)`` takes it as is, with a
    ``num_batches_tracked`` of 0 for each BatchNorm1d), or NumPy arrays with ``numpy=True``.
    """
    spec = torch_spec(model)
    out = {}
    for path, (name, layout) in spec.items():
        out[name] = _from_npctr(model, path, layout, model._lookup(path))
        if name.endswith(".running_var"):
            out[name[:-len("running_var")] + "num_batches_tracked"] = np.array(0, dtype=np.int64)
    if numpy:
        return ExportedWeights(out, model.conventions.name)
    try:
        import torch
    except ImportError as exc:
        raise ImportError("to_torch_state_dict returns torch tensors and needs torch; pass numpy=True "
                          "for NumPy arrays") from exc
    return ExportedWeights({name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in out.items()},
                           model.conventions.name)
