"""Figures for teaching DIN: learning curves, attention weights, gradient checks, Dice.

matplotlib is an optional extra (``pip install npctr[plot]``) imported only here, and
nothing else in npctr imports this module, so ``import npctr`` and ``load_model`` stay
NumPy-only. Every function returns the ``matplotlib.figure.Figure`` and, with
``path=``, also writes it as a PNG of ``figsize * dpi`` pixels. Without a display (and
without a backend chosen by the user) the figures are drawn with Agg; a backend the
user has chosen is left alone.

=============================  ===========================================================
``plot_history``               loss and metrics per epoch, training and validation
``plot_attention``             DIN's attention weight of every behaviour, for chosen rows
``plot_attention_contrast``    one history scored against several candidates
``plot_gradient_check``        finite-difference error against step size (the V curve)
``plot_dice``                  Dice's gate and activation for a few batch statistics
``demo_figures``               the figures of ``python -m npctr demo --plot DIR``
=============================  ===========================================================
"""
import inspect
import numbers
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .gradcheck import check_gradients
from .layers.activation import Dice, PReLU

#: the step (and stencil) of npctr's whole-model DIN checks (tests/test_gradients_din.py)
MODEL_CHECK_STEP, MODEL_CHECK_ORDER = 1e-4, 4
#: fonts large enough for a slide
STYLE = {"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": 10,
         "xtick.labelsize": 10, "ytick.labelsize": 10, "figure.titlesize": 14}
#: bar colours of plot_attention: no match, then matches on 1, 2, ... fields
MATCH_COLOURS = ("#8da0cb", "#fc8d62", "#d62728", "#7b3294")
PADDING_COLOUR = "#d9d9d9"
#: panel titles of plot_history
METRIC_NAMES = {"loss": "loss (L2 included)", "auc": "AUC", "binary_crossentropy": "log loss",
                "logloss": "log loss", "accuracy": "accuracy", "acc": "accuracy", "mse": "MSE"}


# -- matplotlib, lazily --------------------------------------------------------------------
def require_matplotlib():
    """``matplotlib.pyplot``, with Agg when there is no display and no backend was chosen.

    Raises ``ImportError`` saying how to install the ``plot`` extra when matplotlib is missing.
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("npctr.plot needs matplotlib: pip install 'npctr[plot]' "
                          "(or pip install matplotlib)") from exc
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        chosen = getattr(matplotlib.rcParams, "_get_backend_or_none", lambda: None)()
        headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                            or os.environ.get("WAYLAND_DISPLAY"))
        if chosen is None and headless:
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _figure(figsize, dpi):
    plt = require_matplotlib()
    return plt.figure(figsize=figsize, dpi=dpi, layout="constrained")


def _finish(fig, path, dpi):
    if path is not None:
        fig.savefig(Path(path), dpi=dpi, format="png")
    return fig


def _check_dpi(dpi):
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Real) or not dpi > 0:
        raise ValueError(f"dpi must be a positive number, got {dpi!r}")
    return float(dpi)


# -- plot_history ----------------------------------------------------------------------------
def _history_dict(history, name):
    """The ``{key: per-epoch list}`` of a History (or of such a dict), checked."""
    logs = history.history if hasattr(history, "history") else history
    if not isinstance(logs, Mapping):
        raise TypeError(f"{name} must be a History (an object with a .history dict) or a dict "
                        f"of per-epoch lists, got {type(history).__name__}")
    if not logs:
        raise ValueError(f"{name} holds no epochs (an empty history)")
    out = {}
    for key, values in logs.items():
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be metric names (str), got {key!r}")
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}[{key!r}] must be a list of numbers, got {values!r}") from exc
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{name}[{key!r}] must be a non-empty list with one number per epoch, "
                             f"got shape {arr.shape}")
        out[key] = arr
    lengths = {k: v.size for k, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"every entry of {name} must have one value per epoch; lengths differ: {lengths}")
    return out


def _is_history(obj):
    return hasattr(obj, "history") and isinstance(obj.history, Mapping)


def plot_history(history, metrics=None, title=None, path=None, dpi=100):
    """Training (solid) and validation (dashed) loss and metrics per epoch.

    Parameters
    ----------
    history : History, dict, or dict of label -> History/dict
        What ``model.fit`` returns (npctr's or Keras's: anything with a ``.history``
        dict), its ``.history`` dict (``{'loss': [...], 'val_loss': [...], 'auc': ...}``),
        or several of them by label (``{'DIN': h1, 'DNN': h2}``) drawn in one figure.
    metrics : list of str, optional
        Panels to draw (names without ``val_``); default: ``loss`` then every other.
    title : str, optional
    path : str or Path, optional
        Also write the figure there as a PNG.
    dpi : float, default 100

    Returns
    -------
    matplotlib.figure.Figure
        One panel per metric; each line's label is ``'<label> train'`` / ``'<label> validation'``.
    """
    if isinstance(history, Mapping) and history and all(
            _is_history(v) or isinstance(v, Mapping) for v in history.values()):
        runs = {str(label): _history_dict(h, f"history[{label!r}]") for label, h in history.items()}
    else:
        runs = {"": _history_dict(history, "history")}
    available = []
    for logs in runs.values():
        for key in logs:
            base = key[4:] if key.startswith("val_") else key
            if base not in available:
                available.append(base)
    if metrics is None:
        metrics = sorted(available, key=lambda k: k != "loss")   # loss first, else in order
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in metrics if m not in available]
        if unknown or not metrics:
            raise ValueError(f"metrics must name some of {available}, got {metrics!r}")
    dpi = _check_dpi(dpi)
    plt = require_matplotlib()
    with plt.rc_context(STYLE):
        fig = _figure((4.6 * len(metrics) + 0.6, 4.0), dpi)
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, metric in zip(axes, metrics):
            for i, (label, logs) in enumerate(runs.items()):
                colour = colours[i % len(colours)]
                for key, style, kind in ((metric, "-", "train"), ("val_" + metric, "--", "validation")):
                    if key in logs:
                        values = logs[key]
                        epochs = np.arange(1, values.size + 1)
                        ax.plot(epochs, values, style, color=colour, marker="o", markersize=4,
                                label=f"{label} {kind}".strip())
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric if metric != "auc" else "AUC")
            ax.set_title(METRIC_NAMES.get(metric, metric))
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=len(runs), frameon=False)
        if title:
            fig.suptitle(title)
        return _finish(fig, path, dpi)


# -- attention ---------------------------------------------------------------------------------
def _check_attention_model(model):
    if not getattr(model, "history_columns", None) or not hasattr(model, "attention_scores"):
        raise ValueError(f"model must be a DIN (a model with attention over a behaviour history), "
                         f"got {type(model).__name__}, which has no attention to plot")


def _check_rows(rows, n, name="rows"):
    if isinstance(rows, (numbers.Integral, np.integer)) and not isinstance(rows, bool):
        rows = [rows]
    try:
        rows = list(rows)
    except TypeError:
        raise TypeError(f"{name} must be a row index or a list of row indices, got {rows!r}") from None
    if not rows:
        raise ValueError(f"{name} must name at least one row, got an empty list")
    for r in rows:
        if isinstance(r, bool) or not isinstance(r, (numbers.Integral, np.integer)):
            raise TypeError(f"{name} must hold integer row indices, got {r!r}")
        if not 0 <= r < n:
            raise ValueError(f"{name} must be in [0, {n}) (x holds {n} samples), got {int(r)}")
    return [int(r) for r in rows]


def _score_rows(model, x):
    """Inference forward; returns (p (B,), weights (B, T), canonical features)."""
    _, features = model.check_features(x)
    p = model.forward(x, training=False)
    return np.asarray(p)[:, 0], np.array(model.attention_scores[:, 0, :]), features


def _draw_attention(ax, model, features, i, weights, title):
    """Bars of row ``i``'s attention weights, coloured by the fields matching its candidate."""
    hist = [features[fc.name][i] for fc in model.history_columns]            # each (T,)
    query = [int(features[fc.name][i, 0]) for fc in model.query_columns]
    fields = [fc.name for fc in model.query_columns]
    valid = np.logical_and.reduce([h != 0 for h in hist])
    matches = np.stack([h == q for h, q in zip(hist, query)], axis=1)          # (T, n_fields)
    n_match = matches.sum(axis=1)
    T = valid.size
    positions = np.arange(1, T + 1)
    colours = [MATCH_COLOURS[min(k, len(MATCH_COLOURS) - 1)] if v else PADDING_COLOUR
               for k, v in zip(n_match, valid)]
    ax.bar(positions, weights, color=colours, edgecolor="black", linewidth=0.4, label="attention weight")
    # shade each run of padded positions (post-padding gives one run at the end)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (~valid).astype(int), [0]])))
    runs = list(zip(edges[::2] + 1, edges[1::2]))                                # 1-based, inclusive
    for lo, hi in runs:
        ax.axvspan(lo - 0.5, hi + 0.5, color=PADDING_COLOUR, alpha=0.5, hatch="//", zorder=0, linewidth=0)
    if runs:
        lo, hi = max(runs, key=lambda r: r[1] - r[0])
        wide = hi - lo + 1 >= max(T // 3, 1)
        ax.text((lo + hi) / 2, 0.5, "padding (id 0, masked: weight 0)" if wide else "padding",
                transform=ax.get_xaxis_transform(), ha="center", va="center", fontsize=10, color="0.35",
                rotation=0 if wide else 90)
    ax.axhline(0, color="black", linewidth=0.6)
    ticks = positions[valid]
    ax.set_xticks(ticks)
    ax.set_xticklabels([" / ".join(str(int(h[t - 1])) for h in hist) for t in ticks], rotation=90, fontsize=8)
    ax.set_xlim(0.5, T + 0.5)
    ax.set_ylabel("attention weight")
    ax.set_title(title, fontsize=11, loc="left")
    legend = {}
    for t in np.flatnonzero(valid):
        key = tuple(f for f, m in zip(fields, matches[t]) if m)
        legend.setdefault(key, colours[t])
    return legend


def _legend_handles(legends):
    import matplotlib.patches as mpatches
    merged = {}
    for legend in legends:
        merged.update(legend)
    order = sorted(merged, key=len, reverse=True)
    return [mpatches.Patch(facecolor=merged[k], edgecolor="black", linewidth=0.4,
                           label=("same " + " and ".join(k) + " as the candidate") if k
                           else "no match with the candidate") for k in order]


def _candidate_text(fields, query):
    return ", ".join(f"{f} {q}" for f, q in zip(fields, query))


def plot_attention(model, x, rows=(0,), titles=None, caption=None, path=None, dpi=100):
    """DIN's attention weight of every behaviour of the history, for chosen rows of ``x``.

    One panel per row: a bar per history position (labelled by its ids, e.g.
    ``item_id / cate_id``), coloured by which of its fields equal the candidate's;
    padding positions (id 0, masked) are shaded. The weights are
    ``model.attention_scores`` of an inference forward on those rows.

    Parameters
    ----------
    model : DIN
    x : dict of ndarray
        Features keyed by ``model.feature_names`` (as for ``model.predict``).
    rows : int or list of int, default (0,)
        Rows of ``x`` to draw, in ``[0, n_samples)``.
    titles : list of str, optional
        One per row; default names the row, its candidate and the predicted click probability.
    caption : str, optional
        A line under the panels (say how the rows were chosen).
    path : str or Path, optional
        Also write the figure there as a PNG.
    dpi : float, default 100

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[i].containers[0]`` holds the bars of ``rows[i]`` (heights = the weights).
    """
    _check_attention_model(model)
    n, _ = model.check_features(x)
    rows = _check_rows(rows, n)
    if titles is not None and len(titles) != len(rows):
        raise ValueError(f"titles must hold one title per row ({len(rows)}), got {len(titles)}")
    dpi = _check_dpi(dpi)
    p, weights, features = _score_rows(model, {k: np.asarray(v)[rows] for k, v in x.items()})
    plt = require_matplotlib()
    with plt.rc_context(STYLE):
        fig = _figure((11.0, 2.9 * len(rows) + (0.5 if caption else 0.0)), dpi)
        axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
        legends = []
        for i, (ax, row) in enumerate(zip(axes, rows)):
            query = [int(features[fc.name][i, 0]) for fc in model.query_columns]
            fields = [fc.name for fc in model.query_columns]
            title = titles[i] if titles is not None else (
                f"row {row}: candidate {_candidate_text(fields, query)}, predicted p(click) = {p[i]:.2f}")
            legends.append(_draw_attention(ax, model, features, i, weights[i], title))
        axes[-1].set_xlabel("history behaviours (" + " / ".join(fc.name for fc in model.history_columns) + ")")
        fig.legend(handles=_legend_handles(legends), loc="outside upper center", ncol=3, frameon=False)
        if caption:
            fig.supxlabel(caption, fontsize=10, wrap=True)
        return _finish(fig, path, dpi)


def plot_attention_contrast(model, x, row, candidates, caption=None, path=None, dpi=100):
    """One user's history scored against several candidates: DIN's local activation.

    The same row of ``x`` is scored once per candidate, every feature kept but the
    candidate's ids; one panel per candidate, on a shared weight axis.

    Parameters
    ----------
    model : DIN
    x : dict of ndarray
    row : int
        The row whose history (and other features) is used.
    candidates : list of dict
        At least two; each maps candidate feature names (``SparseFeat`` names, e.g.
        ``{'item_id': 12, 'cate_id': 3}``) to ids replacing the row's.
    caption : str, optional
    path : str or Path, optional
    dpi : float, default 100

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[j].containers[0]`` holds the bars for ``candidates[j]``.
    """
    _check_attention_model(model)
    n, _ = model.check_features(x)
    row = _check_rows(row, n, "row")
    if len(row) != 1:
        raise ValueError(f"row must be one row index, got {row}")
    if isinstance(candidates, Mapping) or not hasattr(candidates, "__len__") or len(candidates) < 2:
        raise ValueError("candidates must be a list of at least two dicts {feature name: id}, "
                         f"got {candidates!r}")
    sparse = [fc.name for fc in model.sparse_columns]
    query_names = [fc.name for fc in model.query_columns]
    batch = {k: np.repeat(np.asarray(v)[row], len(candidates), axis=0) for k, v in x.items()}
    for j, cand in enumerate(candidates):
        if not isinstance(cand, Mapping) or not cand:
            raise TypeError(f"candidates[{j}] must be a non-empty dict {{feature name: id}}, got {cand!r}")
        unknown = [k for k in cand if k not in sparse]
        if unknown:
            raise ValueError(f"candidates[{j}] names {unknown}, which are not candidate features "
                             f"(SparseFeat names: {sparse})")
        if not any(k in query_names for k in cand):
            raise ValueError(f"candidates[{j}] must set at least one attended feature {query_names} "
                             f"(others leave the attention unchanged), got {sorted(cand)}")
        for k, v in cand.items():
            if isinstance(v, bool) or not isinstance(v, (numbers.Integral, np.integer)):
                raise TypeError(f"candidates[{j}][{k!r}] must be an integer id, got {v!r}")
            batch[k] = np.array(batch[k], copy=True)
            batch[k].reshape(len(candidates), -1)[j] = v
    dpi = _check_dpi(dpi)
    p, weights, features = _score_rows(model, batch)
    plt = require_matplotlib()
    with plt.rc_context(STYLE):
        fig = _figure((11.0, 2.9 * len(candidates) + 0.4 + (0.5 if caption else 0.0)), dpi)
        axes = fig.subplots(len(candidates), 1, squeeze=False, sharex=True, sharey=True)[:, 0]
        legends = []
        for j, ax in enumerate(axes):
            query = [int(features[fc.name][j, 0]) for fc in model.query_columns]
            title = f"candidate {j + 1}: {_candidate_text(query_names, query)}, predicted p(click) = {p[j]:.2f}"
            legends.append(_draw_attention(ax, model, features, j, weights[j], title))
            ax.tick_params(labelbottom=True)
        axes[-1].set_xlabel("the same history behaviours (" + " / ".join(fc.name for fc in model.history_columns)
                            + ")")
        fig.legend(handles=_legend_handles(legends), loc="outside upper center", ncol=3, frameon=False,
                   title=f"One user's history (row {row[0]}) scored against {len(candidates)} candidates: "
                         "the attention follows the candidate", title_fontproperties={"size": 13})
        if caption:
            fig.supxlabel(caption, fontsize=10, wrap=True)
        return _finish(fig, path, dpi)


# -- gradient checks --------------------------------------------------------------------------
def _cast(inputs, dtype):
    """A copy of ``inputs`` with every floating array in ``dtype`` (ids untouched)."""
    if isinstance(inputs, Mapping):
        return {k: _cast(v, dtype) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return [_cast(v, dtype) for v in inputs]
    arr = np.asarray(inputs)
    return arr.astype(dtype) if arr.dtype.kind == "f" else arr.copy()


def _in_dtype(layer, inputs, dtype):
    """``layer`` rebuilt in ``dtype`` with the same weights and statistics (itself if it already is)."""
    if layer.dtype == dtype:
        return layer
    clone = type(layer).from_config({**layer.get_config(), "dtype": dtype.name})
    if not getattr(clone, "built", True):
        clone.forward(inputs, training=False)          # builds; inference draws nothing
    clone.set_weights(dict(zip(layer.weight_names(), layer.get_weights())))
    return clone


def gradient_check_errors(layer, inputs, steps, order=2, dtype="float64", name=None, **check_kwargs):
    """Relative error of ``check_gradients`` at each step, ``(len(steps),)``.

    The worst array's ``rel_error`` (or that of ``name``), for ``layer`` rebuilt in
    ``dtype`` with the same weights and ``inputs`` cast to it.
    """
    dtype = np.dtype(dtype)
    inputs = _cast(inputs, dtype)
    if not getattr(layer, "built", True):
        layer.forward(_cast(inputs, np.float64), training=False)
    layer = _in_dtype(layer, inputs, dtype)
    errors = []
    for eps in steps:
        results = check_gradients(layer, inputs, eps=float(eps), order=order, **check_kwargs)
        if name is None:
            errors.append(max(r.rel_error for r in results.values()))
        elif name in results:
            errors.append(results[name].rel_error)
        else:
            raise ValueError(f"name must be one of the checked arrays {sorted(results)}, got {name!r}")
    return np.array(errors)


def plot_gradient_check(layer_or_model, inputs, steps=None, name=None, training=False, title=None,
                        path=None, dpi=100, **check_kwargs):
    r"""Relative error of the finite-difference gradient against the step, float64 and float32.

    For each step :math:`\varepsilon` and each stencil (two-point, ``order=2``; five-point,
    ``order=4``), ``npctr.check_gradients`` compares the layer's backward with central
    differences; the error falls with :math:`\varepsilon^2` or :math:`\varepsilon^4`
    (truncation, right) until round-off, :math:`\sim\epsilon_{\text{mach}}/\varepsilon`, takes
    over (left). The steps npctr's checks use are marked.

    Parameters
    ----------
    layer_or_model : Layer or Model
        Rebuilt in float64 and float32 (``from_config`` + ``set_weights``) for the two panels.
    inputs : ndarray, list or dict of ndarrays
        As for ``check_gradients``; floating arrays are cast to each dtype.
    steps : array_like, optional
        Positive steps; default ``np.logspace(-12, 0, 25)``.
    name : str, optional
        The input or parameter to follow; default: the worst array at each step.
    training : bool, default False
    title : str, optional
    path : str or Path, optional
    dpi : float, default 100
    **check_kwargs
        Passed to ``check_gradients`` (``params``, ``check_inputs``, ``seed``, ``upstream``).

    Returns
    -------
    matplotlib.figure.Figure
        Lines labelled ``'two-point (order=2)'`` / ``'five-point (order=4)'`` in each panel.
    """
    for needed in ("forward", "backward", "params", "grads", "get_config", "weight_names"):
        if not hasattr(layer_or_model, needed):
            raise TypeError(f"layer_or_model must be an npctr Layer or Model, got "
                            f"{type(layer_or_model).__name__} (no {needed!r})")
    steps = np.logspace(-12, 0, 25) if steps is None else np.asarray(steps, dtype=np.float64)
    if steps.ndim != 1 or steps.size < 2 or not np.all(np.isfinite(steps) & (steps > 0)):
        raise ValueError(f"steps must be at least two positive finite numbers, got {steps!r}")
    unknown = sorted(set(check_kwargs) - {"params", "check_inputs", "seed", "upstream"})
    if unknown:
        raise TypeError(f"plot_gradient_check got unexpected keyword arguments {unknown}")
    dpi = _check_dpi(dpi)
    default_eps = inspect.signature(check_gradients).parameters["eps"].default
    default_order = inspect.signature(check_gradients).parameters["order"].default
    stencils = ((2, "two-point (order=2)", "o"), (4, "five-point (order=4)", "s"))
    plt = require_matplotlib()
    with plt.rc_context(STYLE):
        fig = _figure((11.0, 4.6), dpi)
        axes = fig.subplots(1, 2, sharey=True)
        for ax, dtype in zip(axes, ("float64", "float32")):
            for order, label, marker in stencils:
                errors = gradient_check_errors(layer_or_model, inputs, steps, order, dtype, name,
                                               training=training, **check_kwargs)
                ax.loglog(steps, np.maximum(errors, 1e-17), marker=marker, markersize=4, label=label)
            ax.axvline(default_eps, color="0.3", linestyle=":", linewidth=1.5,
                       label=f"check_gradients default: eps={default_eps:g}, order={default_order}")
            ax.axvline(MODEL_CHECK_STEP, color="0.3", linestyle="--", linewidth=1.2,
                       label=f"DIN model checks: eps={MODEL_CHECK_STEP:g}, order={MODEL_CHECK_ORDER}")
            machine = np.finfo(dtype).eps
            ax.set_title(f"{dtype} (machine epsilon {machine:.1e})")
            ax.set_xlabel(r"finite-difference step $\varepsilon$")
            ax.text(0.03, 0.45, "round-off\n" + r"$\propto \epsilon_{mach}/\varepsilon$", transform=ax.transAxes,
                    va="center", fontsize=10, color="0.25")
            ax.text(0.98, 0.03, "truncation\n" + r"$\propto \varepsilon^2$ or $\varepsilon^4$",
                    transform=ax.transAxes, va="bottom", ha="right", fontsize=10, color="0.25")
            if dtype == "float32":
                ax.text(0.03, 0.88, "steps below float32's resolution:\n" + r"$x \pm \varepsilon$ rounds to $x$",
                        transform=ax.transAxes, va="top", fontsize=9, color="0.25")
            ax.grid(alpha=0.3, which="major")
        axes[0].set_ylabel("relative error of the gradient" + ("" if name is None else f" of {name}"))
        axes[1].legend(loc="lower left", fontsize=9)
        what = type(layer_or_model).__name__ + (" (training mode)" if training else "")
        fig.suptitle(title or f"Finite-difference gradient check of {what}: error against step size")
        return _finish(fig, path, dpi)


# -- Dice ---------------------------------------------------------------------------------------
def _dice_curve(x, alpha, mean, std):
    """npctr's Dice on ``x (N, 1)`` with the statistics of a batch of that mean and std."""
    layer = Dice()
    layer.forward(x[:2], training=False)                 # builds
    layer.set_weights({"dice_alpha": [alpha], "bn/moving_mean": [mean], "bn/moving_variance": [std ** 2]})
    return layer.forward(x, training=False)[:, 0]


def plot_dice(stats=((0.0, 1.0), (2.0, 0.5), (-1.5, 2.0)), alpha=0.2, x_range=(-5.0, 5.0), title=None,
              path=None, dpi=100):
    r"""Dice against PReLU: the gate and the activation for a few batch statistics.

    PReLU switches at 0 with a hard gate :math:`[x > 0]`; Dice's gate
    :math:`p = \sigma\big((x - \mu)/\sqrt{\sigma^2 + \epsilon}\big)` is a sigmoid centred on
    the batch mean :math:`\mu` with the batch's spread as its width, so the switch point
    follows the data. Curves come from npctr's ``Dice`` and ``PReLU`` layers (Dice's
    statistics set to each :math:`(\mu, \sigma^2)`, which is what it uses in training
    mode on a batch with those statistics).

    Parameters
    ----------
    stats : sequence of (mean, std)
        Batch statistics, ``std > 0``.
    alpha : float, default 0.2
        The slope of both on the "off" side (``dice_alpha``, PReLU's ``alpha``).
    x_range : (float, float), default (-5, 5)
    title : str, optional
    path : str or Path, optional
    dpi : float, default 100

    Returns
    -------
    matplotlib.figure.Figure
        Left panel the gates, right panel the activations.
    """
    try:
        stats = [(float(m), float(s)) for m, s in stats]
    except (TypeError, ValueError):
        raise ValueError(f"stats must be a sequence of (mean, std) pairs, got {stats!r}") from None
    if not stats or not all(np.isfinite(m) and np.isfinite(s) and s > 0 for m, s in stats):
        raise ValueError(f"stats must hold at least one (mean, std) pair with finite mean and std > 0, "
                         f"got {stats!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not np.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    lo, hi = (float(v) for v in x_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"x_range must be (low, high) with low < high, got {x_range!r}")
    dpi = _check_dpi(dpi)
    x = np.linspace(lo, hi, 400).reshape(-1, 1)                 # even count: 0 is not a grid point
    prelu = PReLU()
    prelu.forward(x[:2])
    prelu.set_weights([np.array([alpha])])
    plt = require_matplotlib()
    with plt.rc_context(STYLE):
        fig = _figure((11.0, 4.6), dpi)
        gate_ax, act_ax = fig.subplots(1, 2)
        gate_ax.plot(x[:, 0], (x[:, 0] > 0).astype(float), color="black", linestyle="--", linewidth=2,
                     label="PReLU: hard switch at 0")
        act_ax.plot(x[:, 0], prelu.forward(x)[:, 0], color="black", linestyle="--", linewidth=2,
                    label=rf"PReLU ($\alpha$={alpha:g})")
        for m, s in stats:
            gate = _dice_curve(x, 0.0, m, s) / x[:, 0]           # Dice with alpha 0 is p(x) x
            line, = gate_ax.plot(x[:, 0], gate, linewidth=2, label=rf"Dice, batch $\mu$={m:g}, $\sigma$={s:g}")
            density = np.exp(-0.5 * ((x[:, 0] - m) / s) ** 2)
            gate_ax.fill_between(x[:, 0], 0, 0.25 * density, color=line.get_color(), alpha=0.15, linewidth=0)
            gate_ax.axvline(m, color=line.get_color(), linestyle=":", linewidth=1)
            act_ax.plot(x[:, 0], _dice_curve(x, alpha, m, s), linewidth=2, color=line.get_color(),
                        label=rf"Dice, $\mu$={m:g}, $\sigma$={s:g}")
        gate_ax.set_title("the gate p(x): where the switch happens")
        gate_ax.set_xlabel("x (pre-activation)")
        gate_ax.set_ylabel("p(x)")
        gate_ax.text(0.02, 0.6, "shaded: the batch's\ndistribution of x", transform=gate_ax.transAxes,
                     fontsize=9, color="0.3")
        act_ax.set_title(r"the activation $f(x) = x\,(\alpha + (1-\alpha)\,p(x))$")
        act_ax.set_xlabel("x (pre-activation)")
        act_ax.set_ylabel("f(x)")
        for ax in (gate_ax, act_ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=9, loc="upper left" if ax is act_ax else "lower right")
        fig.suptitle(title or "Dice: a PReLU whose switch point follows the batch (mean) and whose "
                              "sharpness follows its spread")
        return _finish(fig, path, dpi)


# -- the demo's figures -----------------------------------------------------------------------
def _valid_and_matches(features, model, category):
    """Per row: history length, positions matching the candidate's ``category`` (B, T)."""
    valid = np.logical_and.reduce([features[fc.name] != 0 for fc in model.history_columns])
    matches = valid & (features["hist_" + category] == features[category])
    return valid, matches


def demo_figures(model, histories, x, directory, item="item_id", category="cate_id", min_length=10,
                 n_rows=3, dpi=100, out=None):
    """The figures of ``python -m npctr demo --plot DIR``, written into ``directory``.

    * ``learning_curves.png``: ``plot_history(histories)``;
    * ``attention.png``: ``plot_attention`` on held-out rows chosen from the inputs only,
      before looking at any weight: the first ``n_rows`` rows of ``x`` with at least
      ``min_length`` behaviours of which one or two have the candidate's ``category``,
      then the first such long row with no behaviour of that category;
    * ``attention_contrast.png``: the first of those rows scored against its own candidate
      and against an item of the history's most frequent other category (an item not
      in the history, so only the category can match); skipped if the history holds one category only.

    The captions say how the rows were chosen and, over every row of ``x`` whose history
    holds the candidate's category, how often the behaviour of largest absolute weight has
    that category, next to the rate of a behaviour drawn at random. (DIN's weights are
    unnormalised scores by default: a behaviour dominates the pooled ``sum_t w_t e_t``
    through a large weight of either sign.)

    Returns
    -------
    dict name -> path of the files written, and ``'top_match_rate'``, ``'chance_rate'``.
    """
    _check_attention_model(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plt = require_matplotlib()
    written = {}

    fig = plot_history(histories, title="Learning curves on the demo's synthetic clicks "
                                        "(solid: training, dashed: held-out)",
                       path=directory / "learning_curves.png", dpi=dpi)
    plt.close(fig)
    written["learning_curves"] = directory / "learning_curves.png"

    _, features = model.check_features(x)
    valid, matches = _valid_and_matches(features, model, category)
    length, n_match = valid.sum(axis=1), matches.sum(axis=1)
    long_enough = length >= min_length
    rows = list(np.flatnonzero(long_enough & (n_match >= 1) & (n_match <= 2))[:n_rows])
    rows += list(np.flatnonzero(long_enough & (n_match == 0))[:1])
    if not rows:
        raise ValueError(f"x holds no row with at least {min_length} behaviours to plot")

    # how often attention singles out a matching behaviour, over every row with a match; the weights
    # are unnormalised scores (DeepCTR's default), so a behaviour stands out in sum_t w_t e_t by |w_t|
    _, weights, _ = _score_rows(model, x)
    has_match = n_match >= 1
    top = np.argmax(np.where(valid, np.abs(weights), -np.inf), axis=1)
    top_match_rate = float(np.mean(matches[np.arange(len(top)), top][has_match]))
    chance_rate = float(np.mean(n_match[has_match] / length[has_match]))
    summary = (f"Over all {int(has_match.sum())} held-out impressions whose history holds the candidate's "
               f"{category}, the behaviour of largest |weight| has that {category} in {100 * top_match_rate:.0f}% "
               f"(a random behaviour of the history: {100 * chance_rate:.0f}%).")
    caption = (f"Rows chosen from the inputs only, before looking at the weights: the first {n_rows} held-out "
               f"impressions with >= {min_length} behaviours of which 1-2 share the candidate's {category}, then "
               f"the first with none. " + summary)
    fig = plot_attention(model, x, rows, caption=caption, path=directory / "attention.png", dpi=dpi)
    plt.close(fig)
    written["attention"] = directory / "attention.png"

    row = rows[0]
    own = {item: int(features[item][row, 0]), category: int(features[category][row, 0])}
    hist_items, hist_cates = features["hist_" + item][row], features["hist_" + category][row]
    others = [c for c in hist_cates[valid[row]] if c != own[category]]
    if others:
        values, counts = np.unique(others, return_counts=True)
        other = int(values[np.argmax(counts)])
        # an item of that category seen anywhere in x but not in this history
        pairs = np.concatenate([np.stack([features["hist_" + item].ravel(), features["hist_" + category].ravel()]),
                                np.stack([features[item].ravel(), features[category].ravel()])], axis=1)
        candidates = np.unique(pairs[0][(pairs[1] == other) & ~np.isin(pairs[0], hist_items)])
        other_item = int(candidates[0]) if candidates.size else int(hist_items[hist_cates == other][0])
        caption = (f"Row {row} (the first row of the attention figure), scored against its own candidate and "
                   f"against item {other_item} of {category} {other}, the history's most frequent other "
                   f"{category}{'' if candidates.size else ' (an item of the history)'}. The weights are "
                   "unnormalised scores (DeepCTR's default): large ones of either sign dominate the pooled interest.")
        fig = plot_attention_contrast(model, x, row, [own, {item: other_item, category: other}],
                                      caption=caption, path=directory / "attention_contrast.png", dpi=dpi)
        plt.close(fig)
        written["attention_contrast"] = directory / "attention_contrast.png"
    if out is not None:
        print(f"\nfigures written to {directory}: " + ", ".join(p.name for p in written.values()), file=out)
        print(summary, file=out)
    return {**written, "top_match_rate": top_match_rate, "chance_rate": chance_rate}
