"""Figures for teaching DIN and DIEN: learning curves, attention weights, evolving interests, gradient checks, Dice.

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
``plot_attention_over_time``   DIEN's attention per history step, with the hidden interest
``plot_interest_evolution``    p(click) of a few candidates if the history ended at each step
``plot_gradient_check``        finite-difference error against step size (the V curve)
``plot_dice``                  Dice's gate and activation for a few batch statistics
``demo_figures``               the figures of ``python -m npctr demo --plot DIR``
``dien_demo_figures``          the figures of ``python -m npctr demo --model dien --plot DIR``
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


def _check_titles(titles, rows):
    if titles is not None and len(titles) != len(rows):
        raise ValueError(f"titles must hold one title per row ({len(rows)}), got {len(titles)}")


def _checked_rows(model, x, rows, titles):
    """``(n_samples, rows)`` of a per-row attention figure's request, every argument checked."""
    _check_attention_model(model)
    n, _ = model.check_features(x)
    rows = _check_rows(rows, n)
    _check_titles(titles, rows)
    return n, rows


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
    n, rows = _checked_rows(model, x, rows, titles)
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


# -- DIEN: the attention over time, the evolving interest ----------------------------------------
#: bar colours of plot_attention_over_time: a behaviour of another category, of the candidate's
TIME_BAR_COLOURS = ("#8da0cb", "#fc8d62")
#: background colours of the hidden interests: the candidate's category, then the others in turn
INTEREST_COLOURS = ("#fc8d62", "#b3cde3", "#ccebc5", "#decbe4", "#e5d8bd", "#fddaec", "#d9d9d9")
#: line colours of plot_interest_evolution, one per candidate (at most 8 candidates)
CANDIDATE_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")
#: what a candidate is to its row's hidden interests (``candidate_kinds``)
KIND_TEXT = {"now": "the interest now", "earlier": "an earlier interest, not now",
             "other": "none of the history's interests"}


def _query_index(model, name, argument):
    """Position of the attended candidate feature ``name`` in ``model.query_columns``."""
    names = [fc.name for fc in model.query_columns]
    if name not in names:
        raise ValueError(f"{argument} must name one of the model's attended candidate features {names}, got {name!r}")
    return names.index(name)


def _check_truth(truth, n, maxlen):
    """``make_dien_data(return_truth=True)``'s dict, rows aligned with ``x``, checked (None passes)."""
    if truth is None:
        return None
    if not isinstance(truth, Mapping) or not {"interest", "current_interest"} <= set(truth):
        raise ValueError("truth must be the dict make_dien_data(..., return_truth=True) returns (with 'interest' "
                         f"and 'current_interest'), rows aligned with x; got {type(truth).__name__}"
                         + (f" with keys {sorted(truth)}" if isinstance(truth, Mapping) else ""))
    out = {k: np.asarray(v) for k, v in truth.items()}
    if out["interest"].shape != (n, maxlen) or out["current_interest"].shape != (n,):
        raise ValueError(f"truth['interest'] must have shape (n_samples, T) = {(n, maxlen)} and "
                         f"truth['current_interest'] ({n},), rows aligned with x; got {out['interest'].shape} "
                         f"and {out['current_interest'].shape}")
    return out


def candidate_kinds(candidate, interest, valid, current_interest):
    """What each row's candidate category is to its hidden interests: ``'now'`` (the interest at the
    impression), ``'earlier'`` (active at some behaviour of the history, not now) or ``'other'``.

    ``candidate`` ``(n,)``, ``interest`` and ``valid`` ``(n, T)``, ``current_interest`` ``(n,)``
    (``make_dien_data(return_truth=True)``'s ``interest`` and ``current_interest``).
    """
    candidate = np.asarray(candidate).reshape(-1)
    earlier = np.any(valid & (np.asarray(interest) == candidate[:, None]), axis=1)
    return np.where(candidate == np.asarray(current_interest), "now", np.where(earlier, "earlier", "other"))


def _runs(values):
    """``[(start, stop, value)]``: the runs of equal values of a 1-D array (``stop`` exclusive)."""
    edges = np.flatnonzero(np.diff(values)) + 1
    return [(int(a), int(b), int(values[a])) for a, b in zip(np.r_[0, edges], np.r_[edges, len(values)])]


def _draw_interests(ax, interest, length, now, colour_of, alpha=0.35):
    """Background bands of the hidden interest at each behaviour (positions 1..length), labelled by
    its id, and one more at ``length + 1``: the interest at the impression ("now")."""
    from matplotlib.transforms import blended_transform_factory
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for start, stop, value in _runs(interest[:length]):
        ax.axvspan(start + 0.5, stop + 0.5, color=colour_of(value), alpha=alpha, zorder=0, linewidth=0)
        ax.text((start + stop + 1) / 2, 0.97, str(value), transform=top, ha="center", va="top", fontsize=9)
    ax.axvspan(length + 0.5, length + 1.5, color=colour_of(now), alpha=min(1.0, 2 * alpha), zorder=0,
               linewidth=0)
    ax.text(length + 1, 0.97, str(now), transform=top, ha="center", va="top", fontsize=9, fontweight="bold")
    ax.text(length + 1, 0.5, "now", transform=top, ha="center", va="center", fontsize=9, rotation=90)


def _interest_colours(first, values):
    """category -> background colour: ``first`` (the candidate's) orange, the others in turn."""
    colours = {first: INTEREST_COLOURS[0]}
    for value in values:
        if value not in colours:
            colours[value] = INTEREST_COLOURS[1 + (len(colours) - 1) % (len(INTEREST_COLOURS) - 1)]
    return colours


def plot_attention_over_time(model, x, rows=(0,), truth=None, category="cate_id", titles=None, caption=None,
                             path=None, dpi=100):
    """DIEN's attention over the steps of the history, for chosen rows, with the hidden interest.

    One panel per row: a bar per behaviour, oldest left, most recent right, of height the
    model's ``attention_scores`` in an inference forward on those rows (DIEN: the interest
    evolving layer's attention over the interests, the pooling weights for ``gru_type='GRU'``;
    any model with attention over a history works, DIN's included), orange where the behaviour
    has the candidate's ``category``. With ``truth`` (what ``make_dien_data(return_truth=True)``
    returns, rows aligned with ``x``), the background shows the interest active at each behaviour
    (its id at the top; the candidate's category orange), the band right of the last behaviour
    the interest at the impression ("now"), and hatched bars the browsing noise (a behaviour
    outside the active interest). Positions past the length are padding (shaded grey).

    Parameters
    ----------
    model : DIEN or DIN
    x : dict of ndarray
        Features keyed by ``model.feature_names``.
    rows : int or list of int, default (0,)
    truth : dict of ndarray, optional
        ``interest`` ``(n_samples, T)`` and ``current_interest`` ``(n_samples,)`` (and
        ``click_probability``, shown in the default titles).
    category : str, default 'cate_id'
        The attended candidate feature that the colours and the interests refer to.
    titles : list of str, optional
        One per row; default: the row, what its candidate is to the hidden interests, and the
        predicted (and true) click probability.
    caption : str, optional
    path : str or Path, optional
    dpi : float, default 100

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[i].containers[0]`` holds the bars of ``rows[i]`` (heights = the scores).
    """
    n, rows = _checked_rows(model, x, rows, titles)
    k = _query_index(model, category, "category")
    maxlen = model.history_columns[0].maxlen
    truth = _check_truth(truth, n, maxlen)
    dpi = _check_dpi(dpi)
    p, weights, f = _score_rows(model, {name: np.asarray(v)[rows] for name, v in x.items()})
    valid = model.history_mask(f)                                             # (rows, T)
    hist = f[model.history_columns[k].name]
    candidate = f[category][:, 0]
    positions = np.arange(1, maxlen + 1)
    plt = require_matplotlib()
    import matplotlib.patches as mpatches
    with plt.rc_context(STYLE):
        fig = _figure((11.0, 2.9 * len(rows) + 0.5 + (0.5 if caption else 0.0)), dpi)
        axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
        for i, (ax, row) in enumerate(zip(axes, rows)):
            length = int(valid[i].sum())
            match = valid[i] & (hist[i] == candidate[i])
            bars = ax.bar(positions, weights[i], color=[TIME_BAR_COLOURS[int(m)] for m in match],
                          edgecolor="black", linewidth=0.4)
            title = f"row {row}: candidate {category} {int(candidate[i])}"
            if truth is not None:
                interest, now = truth["interest"][row], int(truth["current_interest"][row])
                kind = candidate_kinds(candidate[i:i + 1], interest[None], valid[i:i + 1], [now])[0]
                colours = _interest_colours(int(candidate[i]), interest[:length])
                colours.setdefault(now, INTEREST_COLOURS[-1])
                _draw_interests(ax, interest, length, now, colours.get)
                for bar, behaviour, active in zip(bars, hist[i][:length], interest[:length]):
                    if behaviour != active:
                        bar.set_hatch("///")
                title += f" ({KIND_TEXT[kind]}), predicted p(click) = {p[i]:.2f}"
                if "click_probability" in truth:
                    title += f", true {float(truth['click_probability'][row]):.2f}"
            else:
                title += f", predicted p(click) = {p[i]:.2f}"
            pad_from = length + (2 if truth is not None else 1)
            if pad_from <= maxlen:
                ax.axvspan(pad_from - 0.5, maxlen + 0.5, color=PADDING_COLOUR, alpha=0.5, hatch="//", zorder=0,
                           linewidth=0)
            ax.axhline(0, color="black", linewidth=0.6)
            ax.set_xticks(positions[valid[i]])
            ax.set_xticklabels([str(int(c)) for c in hist[i][valid[i]]], rotation=90, fontsize=8)
            ax.set_xlim(0.5, maxlen + 0.5)
            low, high = min(0.0, float(weights[i].min())), max(float(weights[i].max()), 1e-12)
            ax.set_ylim(low * 1.1, high * 1.25)
            ax.set_ylabel("attention score")
            ax.set_title(titles[i] if titles is not None else title, fontsize=11, loc="left")
        axes[-1].set_xlabel(f"the history, oldest to most recent (each behaviour's {category})")
        handles = [mpatches.Patch(facecolor=TIME_BAR_COLOURS[1], edgecolor="black", linewidth=0.4,
                                  label=f"behaviour of the candidate's {category}"),
                   mpatches.Patch(facecolor=TIME_BAR_COLOURS[0], edgecolor="black", linewidth=0.4,
                                  label=f"behaviour of another {category}")]
        if truth is not None:
            handles += [mpatches.Patch(facecolor="white", edgecolor="black", hatch="///", linewidth=0.4,
                                       label="browsing (outside the active interest)"),
                        mpatches.Patch(facecolor=INTEREST_COLOURS[1], alpha=0.6,
                                       label="background: the hidden interest (id on top)")]
        fig.legend(handles=handles, loc="outside upper center", ncol=2, frameon=False)
        if caption:
            fig.supxlabel(caption, fontsize=10, wrap=True)
        return _finish(fig, path, dpi)


def _models_by_label(models):
    if isinstance(models, Mapping):
        if not models:
            raise ValueError("models must hold at least one model")
        out = {str(label): m for label, m in models.items()}
    else:
        out = {type(models).__name__: models}
    for label, model in out.items():
        if not getattr(model, "history_columns", None):
            raise ValueError(f"models[{label!r}] must be a model with a behaviour history (DIN, DIEN), got "
                             f"{type(model).__name__}")
    return out


def _an_item_of(x, item_name, hist_item, category_name, hist_category, value, exclude):
    """An item id of category ``value`` seen anywhere in ``x`` and not in ``exclude`` (else any)."""
    items = np.concatenate([np.asarray(x[hist_item]).ravel(), np.asarray(x[item_name]).ravel()])
    cats = np.concatenate([np.asarray(x[hist_category]).ravel(), np.asarray(x[category_name]).ravel()])
    seen = np.unique(items[(cats == value) & (items != 0)])
    fresh = seen[~np.isin(seen, exclude)]
    if fresh.size:
        return int(fresh[0])
    if seen.size:
        return int(seen[0])
    raise ValueError(f"x holds no item of {category_name} {value} to score as a candidate; pass candidates=")


def _prefix_batch(model, x, row, length, candidates):
    """Row ``row`` of ``x`` (the model's features) repeated for every prefix length ``t = 1..length``
    (sequences cut after ``t`` behaviours) and every candidate: ``length * len(candidates)`` rows,
    prefix-major."""
    from .feature_column import VarLenSparseFeat
    k = len(candidates)
    t = np.repeat(np.arange(1, length + 1), k)                                  # (length * k,)
    batch = {name: np.repeat(np.asarray(x[name])[[row]], length * k, axis=0) for name in model.feature_names}
    for fc in model.dnn_feature_columns:
        if isinstance(fc, VarLenSparseFeat):
            ids = batch[fc.name]
            batch[fc.name] = np.where(np.arange(ids.shape[1])[None, :] < t[:, None], ids, 0).astype(ids.dtype)
            if fc.length_name is not None:
                shape = batch[fc.length_name].shape
                batch[fc.length_name] = t.reshape((-1,) + shape[1:]).astype(batch[fc.length_name].dtype)
    for j, cand in enumerate(candidates):
        for name, value in cand.items():
            batch[name] = np.array(batch[name], copy=True)
            batch[name].reshape(length * k, -1)[j::k] = value
    return batch


def plot_interest_evolution(models, x, rows=(0,), candidates=None, truth=None, item="item_id", category="cate_id",
                            max_candidates=4, caption=None, path=None, dpi=100):
    """How a model's interest evolves along a history: the click probability it would predict for a
    few candidates if the history ended after each behaviour.

    For every prefix length ``t = 1..L`` of a row's history (the sequences cut after ``t``
    behaviours, the length set to ``t``, every other feature kept) and every candidate, the
    model's predicted p(click): DIEN's final interest (the evolving layer's output, which depends
    on the candidate through the attention) read through the whole network. A model of evolving
    interests should favour the candidates of the interest active at ``t``; a model of the bag
    of behaviours (DIN) favours whatever the prefix holds most of. With ``truth``, the background
    shows the hidden interest at each behaviour, in the colour of the candidate of that category.

    Parameters
    ----------
    models : model or dict of label -> model
        Models with a behaviour history (DIEN, DIN); each reads the features it knows from ``x``
        (``x`` may hold DIEN's negatives, which DIN does not take). One column of panels each.
    x : dict of ndarray
    rows : int or list of int, default (0,)
        One row of panels each.
    candidates : list of list of dict, optional
        Per row, the candidates ``{item: id, category: id}`` (at most 8). Default: the last
        ``max_candidates`` distinct interests of the row (with ``truth``, the hidden ones,
        the interest now included; else the history's categories), each with an item of that
        category seen in ``x`` but not in the row's history.
    truth : dict of ndarray, optional
        ``make_dien_data(return_truth=True)``'s, rows aligned with ``x``.
    item, category : str, default 'item_id', 'cate_id'
        The attended candidate features of the items and their categories.
    max_candidates : int, default 4
    caption : str, optional
    path : str or Path, optional
    dpi : float, default 100

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[i * len(models) + m].lines[j]``: the predicted p(click) of candidate ``j`` of
        ``rows[i]`` by model ``m``, for ``t = 1..L`` (its x data).
    """
    models = _models_by_label(models)
    first = next(iter(models.values()))
    n, _ = first.check_features({name: x[name] for name in first.feature_names if name in x})
    rows = _check_rows(rows, n)
    item_k, cat_k = _query_index(first, item, "item"), _query_index(first, category, "category")
    maxlen = first.history_columns[0].maxlen
    for label, model in models.items():
        if model.history_columns[0].maxlen != maxlen or [fc.name for fc in model.query_columns] != \
                [fc.name for fc in first.query_columns]:
            raise ValueError(f"models must share the history (maxlen and attended features); models[{label!r}] "
                             "differs from the first")
    truth = _check_truth(truth, n, maxlen)
    if isinstance(max_candidates, bool) or not isinstance(max_candidates, numbers.Integral) or \
            not 1 <= max_candidates <= len(CANDIDATE_COLOURS):
        raise ValueError(f"max_candidates must be an integer in [1, {len(CANDIDATE_COLOURS)}], got {max_candidates!r}")
    if candidates is not None and (isinstance(candidates, Mapping) or len(candidates) != len(rows)):
        raise ValueError(f"candidates must hold one list of candidate dicts per row ({len(rows)})")
    dpi = _check_dpi(dpi)
    hist_item, hist_cat = first.history_columns[item_k].name, first.history_columns[cat_k].name
    _, f = first.check_features({name: np.asarray(x[name])[rows] for name in first.feature_names})
    valid = first.history_mask(f)
    lengths = valid.sum(axis=1)
    if np.any(lengths == 0):
        raise ValueError(f"rows must have histories of at least one behaviour; row {rows[int(np.argmin(lengths))]} "
                         "has none")
    per_row = []
    for i, row in enumerate(rows):
        if candidates is not None:
            cands = list(candidates[i])
            if not 1 <= len(cands) <= len(CANDIDATE_COLOURS) or not all(isinstance(c, Mapping) and
                                                                          category in c for c in cands):
                raise ValueError(f"candidates[{i}] must be a list of 1 to {len(CANDIDATE_COLOURS)} dicts, each "
                                 f"setting {category!r} (and usually {item!r}), got {candidates[i]!r}")
        else:
            length = int(lengths[i])
            seq = list(truth["interest"][row][:length]) + [truth["current_interest"][row]] if truth is not None \
                else list(np.asarray(x[hist_cat])[row][valid[i]])
            order = [int(c) for c in dict.fromkeys(reversed(seq))][:max_candidates][::-1]   # last appearances
            cands = [{item: _an_item_of(x, item, hist_item, category, hist_cat, c, np.asarray(x[hist_item])[row]),
                      category: c} for c in order]
        per_row.append(cands)
    plt = require_matplotlib()
    with plt.rc_context(STYLE):
        fig = _figure((5.2 * len(models) + 2.6, 3.3 * len(rows) + 0.4 + (0.5 if caption else 0.0)), dpi)
        axes = fig.subplots(len(rows), len(models), squeeze=False, sharey=True)
        for i, (row, cands) in enumerate(zip(rows, per_row)):
            length = int(lengths[i])
            t = np.arange(1, length + 1)
            colour_of = {int(c[category]): CANDIDATE_COLOURS[j] for j, c in enumerate(cands)}
            for m, (label, model) in enumerate(models.items()):
                ax = axes[i, m]
                batch = _prefix_batch(model, x, row, length, cands)
                p = np.asarray(model.predict(batch, batch_size=len(next(iter(batch.values())))))[:, 0]
                p = p.reshape(length, len(cands))
                if truth is not None:
                    _draw_interests(ax, truth["interest"][row], length, int(truth["current_interest"][row]),
                                    lambda c: colour_of.get(int(c), PADDING_COLOUR), alpha=0.2)
                for j, cand in enumerate(cands):
                    text = f"{category} {cand[category]}" + (f" (item {cand[item]})" if item in cand else "")
                    ax.plot(t, p[:, j], color=CANDIDATE_COLOURS[j], marker="o", markersize=3, linewidth=1.8,
                            label=text)
                ax.set_xlim(0.5, length + (1.5 if truth is not None else 0.5))
                ax.set_ylim(0, 1.08)
                ax.set_title(f"{label}: row {row}", fontsize=11, loc="left")
                ax.grid(alpha=0.3)
                if m == 0:
                    ax.set_ylabel("p(click) if the history\nended after behaviour t")
                if m == len(models) - 1:
                    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0), title=f"candidate (row {row})",
                              title_fontsize=9, frameon=False)
                if i == len(rows) - 1:
                    ax.set_xlabel("behaviours seen, t")
        if caption:
            fig.supxlabel(caption, fontsize=10, wrap=True)
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


def _attention_model(models):
    """The first model of ``models`` (dict) with attention over a history."""
    for model in models.values():
        if getattr(model, "history_columns", None) and hasattr(model, "attention_scores"):
            return model
    raise ValueError("models must hold a model with attention over a behaviour history (DIEN, DIN)")


def dien_demo_figures(models, histories, x, truth, directory, category="cate_id", min_length=20, min_runs=3,
                      dpi=100, out=None):
    """The figures of ``python -m npctr demo --model dien --plot DIR``, written into ``directory``.

    ``models`` maps the demo's names to its models, DIEN first (the one whose attention is
    drawn); ``x`` and ``truth`` are the held-out rows and their hidden interests.

    * ``dien_learning_curves.png``: ``plot_history(histories)``;
    * ``dien_attention.png``: ``plot_attention_over_time`` of the first model on held-out rows
      chosen from the inputs and the truth only, before looking at any score: the first row
      with at least ``min_length`` behaviours and ``min_runs`` runs of the hidden interest
      whose candidate is the interest now, the first such whose candidate is an earlier
      interest (not now), and the second whose candidate is the interest now (failing
      that, the longest rows of each kind);
    * ``dien_interest.png``: ``plot_interest_evolution`` of every model with a history (DIEN
      and DIN) on the first two of those rows.

    The captions (and ``out``) give, over every held-out row, each model's mean predicted
    p(click) by what the candidate is to the hidden interests (``candidate_kinds``), next to the
    true click probability, and how much of DIEN's attention falls on the last run of the
    interest when the candidate is the interest now.

    Returns
    -------
    dict name -> path of the files written, ``'mean_p'`` ``{model name or 'true': {kind: mean}}``
    and ``'last_run_attention'``, ``'last_run_share'`` (the mean attention on the behaviours of
    the last run, and the mean share of the history they make up).
    """
    dien = _attention_model(models)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plt = require_matplotlib()
    written = {}

    title = ("Learning curves on make_dien_data (solid: training, dashed: held-out)\n"
             "DIEN's training loss includes alpha x its auxiliary loss; held-out losses do not")
    fig = plot_history(histories, title=title, path=directory / "dien_learning_curves.png", dpi=dpi)
    plt.close(fig)
    written["learning_curves"] = directory / "dien_learning_curves.png"

    n, f = dien.check_features(x)
    maxlen = dien.history_columns[0].maxlen
    truth = _check_truth(truth, n, maxlen)
    valid = dien.history_mask(f)
    length = valid.sum(axis=1)
    interest, now = truth["interest"], truth["current_interest"]
    kinds = candidate_kinds(f[category][:, 0], interest, valid, now)
    changes = np.sum(valid[:, 1:] & (interest[:, 1:] != interest[:, :-1]), axis=1)
    long = (length >= min_length) & (changes + 1 >= min_runs)
    by_length = np.argsort(-length, kind="stable")

    def first_rows(kind, k):
        """The first ``k`` long rows whose candidate is of ``kind`` (failing that, the longest others)."""
        rows = [int(i) for i in np.flatnonzero(long & (kinds == kind))]
        rows += [int(i) for i in by_length if not long[i] and kinds[i] == kind and length[i] > 0]
        return rows[:k]

    now_rows, earlier_rows = first_rows("now", 2), first_rows("earlier", 1)
    rows = now_rows[:1] + earlier_rows + now_rows[1:]
    if not rows:
        raise ValueError("x holds no row with a history whose candidate is one of its hidden interests")

    # every held-out row: mean predicted p by kind of candidate; DIEN's attention on the last run
    def by_kind(p):
        return {kind: float(p[kinds == kind].mean()) for kind in KIND_TEXT if np.any(kinds == kind)}

    mean_p = {name: by_kind(np.asarray(model.predict({k: x[k] for k in model.feature_names},
                                                     batch_size=4096))[:, 0]) for name, model in models.items()}
    # the scores from inference forwards (what predict records may depend on its serving path)
    weights = np.concatenate([_score_rows(dien, {k: np.asarray(v)[lo:lo + 4096] for k, v in x.items()})[1]
                              for lo in range(0, n, 4096)])
    if "click_probability" in truth:
        mean_p["true"] = by_kind(truth["click_probability"])
    steps = np.arange(maxlen)[None, :]
    last_value = interest[np.arange(n), np.maximum(length - 1, 0)]
    # the last run: the steps after the last change of interest
    differs = valid & (interest != last_value[:, None])
    run_start = np.where(differs.any(axis=1), maxlen - 1 - np.argmax(differs[:, ::-1], axis=1) + 1, 0)
    last_run = valid & (steps >= run_start[:, None])
    chosen = (kinds == "now") & (changes >= 1)
    last_run_attention = float(np.sum(weights * last_run, axis=1)[chosen].mean())
    last_run_share = float((last_run.sum(axis=1) / np.maximum(length, 1))[chosen].mean())

    table = "; ".join(f"{name} " + " / ".join(f"{means.get(k, float('nan')):.2f}" for k in KIND_TEXT)
                      for name, means in mean_p.items())
    summary = (f"Mean p(click) over the {n} held-out impressions whose candidate is the interest now / an earlier "
               f"interest / neither: {table}. When the candidate is the interest now and the history changed "
               f"interest at least once ({int(chosen.sum())} impressions), {100 * last_run_attention:.0f}% of DIEN's "
               f"attention is on the last run of the interest, which makes up {100 * last_run_share:.0f}% of "
               "the history.")
    caption = (f"Held-out rows chosen from the inputs and the hidden truth only, before looking at any score: the "
               f"first two with >= {min_length} behaviours and >= {min_runs} runs of interest whose candidate is "
               "the interest now, and the first whose candidate is an earlier interest"
               + ("" if all(long[rows]) else " (failing that, the longest)") + ". " + summary)
    fig = plot_attention_over_time(dien, x, rows, truth=truth, category=category,
                                   caption=caption, path=directory / "dien_attention.png", dpi=dpi)
    plt.close(fig)
    written["attention"] = directory / "dien_attention.png"

    with_history = {name: m for name, m in models.items() if getattr(m, "history_columns", None)}
    caption = ("The first two rows of the attention figure. Candidates: an item of each of the row's last "
               "interests (in the background's colours), not an item of its history; every other feature is the row's.")
    fig = plot_interest_evolution(with_history, x, rows[:2], truth=truth, category=category, caption=caption,
                                  path=directory / "dien_interest.png", dpi=dpi)
    plt.close(fig)
    written["interest"] = directory / "dien_interest.png"
    if out is not None:
        print(f"\nfigures written to {directory}: " + ", ".join(p.name for p in written.values()), file=out)
        print(summary, file=out)
    return {**written, "mean_p": mean_p, "last_run_attention": last_run_attention, "last_run_share": last_run_share}
