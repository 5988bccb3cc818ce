"""``model.summary()``: Keras's table of a model's layers, output shapes and parameter counts."""
import numpy as np


def _count(layer, attr):
    return int(sum(np.size(v) for v in layer._flat(attr).values()))


def layer_param_counts(layer):
    """``(trainable, non_trainable)`` numbers of values of ``layer`` and its children: moving
    statistics and the weights of frozen layers are non-trainable, as in Keras."""
    frozen = [prefix for prefix, sub in layer.sublayers() if not sub.trainable]
    params = layer.params
    n_frozen = sum(np.size(v) for k, v in params.items() if any(k.startswith(p) for p in frozen))
    n_params = sum(np.size(v) for v in params.values())
    return int(n_params - n_frozen), int(_count(layer, "_state") + n_frozen)


def _shape_text(shape):
    if shape is None:
        return "multiple"
    return str((None,) + tuple(shape[1:])) if len(shape) else "()"


def format_summary(model, shapes, line_length=None):
    """The table as text; ``shapes`` maps a top-level layer key to its output shape (or None)."""
    rows = []
    for key, layer in model._layers.items():
        trainable, fixed = layer_param_counts(layer)
        rows.append((f"{key} ({type(layer).__name__})", _shape_text(shapes.get(key)), str(trainable + fixed)))
    widths = [max([len("Layer (type)")] + [len(r[0]) for r in rows]) + 2,
              max([len("Output Shape")] + [len(r[1]) for r in rows]) + 2,
              max([len("Param #")] + [len(r[2]) for r in rows]) + 1]
    total = sum(widths) + 1
    if line_length is not None:
        total = max(total, int(line_length))

    def line(cells):
        return " " + "".join(c.ljust(w) for c, w in zip(cells, widths))

    trainable, fixed = layer_param_counts(model)
    out = [f'Model: "{model.name}"', "_" * total, line(("Layer (type)", "Output Shape", "Param #")), "=" * total]
    for i, row in enumerate(rows):
        out.append(line(row))
        out.append(("_" if i < len(rows) - 1 else "=") * total)
    if not rows:
        out.append("=" * total)
    itemsize = model.dtype.itemsize if model.dtype is not None else 8
    for label, count in (("Total", trainable + fixed), ("Trainable", trainable), ("Non-trainable", fixed)):
        out.append(f"{label} params: {count:,} ({_bytes(count * itemsize)})")
    out.append("_" * total)
    return "\n".join(out)


def _bytes(n):
    for unit in ("Byte", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}" if unit != "Byte" else f"{n} Byte"
        n /= 1024
