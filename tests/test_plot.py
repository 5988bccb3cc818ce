"""npctr.plot: every figure draws headless and writes a PNG of figsize * dpi pixels; the attention
figures plot exactly ``model.attention_scores``; bad arguments are clear errors; and neither
``import npctr`` nor ``load_model`` imports matplotlib (or npctr.plot)."""
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")          # headless, whatever the machine has
import matplotlib.pyplot as plt  # noqa: E402

from npctr import Dice, Dense  # noqa: E402
from npctr import plot as nplot  # noqa: E402
from npctr.datasets import make_din_data  # noqa: E402
from npctr.models import DIN, DNNModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def png_size(path):
    """(width, height) in pixels from a PNG's IHDR chunk."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def assert_png(fig, path, dpi=100):
    assert path.stat().st_size > 1000
    w, h = fig.get_size_inches()
    assert png_size(path) == (round(w * dpi), round(h * dpi))


@pytest.fixture(scope="module")
def din_data():
    x, y, columns, history = make_din_data(40, maxlen=8, n_items=30, n_cates=6, seed=5)
    model = DIN(columns, history, dnn_hidden_units=(8,), att_hidden_size=(6,), seed=2)
    return model, x, y, columns


def heights(ax):
    (bars,) = ax.containers
    return np.array([b.get_height() for b in bars])


# -- plot_history ----------------------------------------------------------------------------
def test_history_of_a_fit_writes_its_values(din_data, tmp_path):
    model, x, y, _ = din_data
    model.compile("adam", "binary_crossentropy", metrics=["auc"])
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_split=0.25)
    path = tmp_path / "h.png"
    fig = nplot.plot_history(history, path=path, dpi=50)
    assert_png(fig, path, dpi=50)
    assert [ax.get_title() for ax in fig.axes] == ["loss (L2 included)", "AUC"]
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].lines}
    assert np.array_equal(lines["train"], history.history["loss"])
    assert np.array_equal(lines["validation"], history.history["val_loss"])


def test_history_dicts_by_label_share_panels(tmp_path):
    runs = {"DIN": {"loss": [0.7, 0.6, 0.5], "val_loss": [0.72, 0.65, 0.6]},
            "DNN": {"loss": [0.7, 0.65, 0.62]}}
    fig = nplot.plot_history(runs, path=tmp_path / "h.png")
    assert_png(fig, tmp_path / "h.png")
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == ["DIN train", "DIN validation", "DNN train"]
    assert list(ax.lines[2].get_xdata()) == [1, 2, 3]


@pytest.mark.parametrize("history,error,match", [
    ({}, ValueError, "no epochs"),
    ({"loss": [1.0, 0.5], "val_loss": [1.0]}, ValueError, "lengths differ"),
    ({"loss": []}, ValueError, "non-empty"),
    ([0.5, 0.4], TypeError, "History"),
    ({"loss": ["a"]}, TypeError, "numbers"),
])
def test_history_errors(history, error, match):
    with pytest.raises(error, match=match):
        nplot.plot_history(history)


def test_history_unknown_metric():
    with pytest.raises(ValueError, match="metrics must name"):
        nplot.plot_history({"loss": [1.0]}, metrics=["auc"])


# -- plot_attention ----------------------------------------------------------------------------
def test_attention_bars_are_the_attention_scores(din_data, tmp_path):
    model, x, _, _ = din_data
    rows = [3, 0, 17]
    path = tmp_path / "a.png"
    fig = nplot.plot_attention(model, x, rows, caption="rows 3, 0, 17", path=path)
    assert_png(fig, path)
    model.forward({k: v[rows] for k, v in x.items()})
    subset = model.attention_scores[:, 0, :]
    model.forward(x)
    full = model.attention_scores[rows, 0, :]
    for i, ax in enumerate(fig.axes[:len(rows)]):
        assert np.array_equal(heights(ax), subset[i])
        np.testing.assert_allclose(heights(ax), full[i], rtol=1e-12, atol=1e-15)   # batch-independent
        # padding is drawn as padding: zero bars, tick labels only on valid behaviours
        valid = x["hist_item_id"][rows[i]] != 0
        assert np.all(heights(ax)[~valid] == 0)
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == [f"{a} / {b}" for a, b in zip(x["hist_item_id"][rows[i]][valid],
                                                        x["hist_cate_id"][rows[i]][valid])]


def test_attention_contrast_scores_the_same_history_per_candidate(din_data, tmp_path):
    model, x, _, _ = din_data
    cands = [{"item_id": 3, "cate_id": 2}, {"item_id": 7, "cate_id": 5}]
    path = tmp_path / "c.png"
    fig = nplot.plot_attention_contrast(model, x, 4, cands, caption="two candidates", path=path)
    assert_png(fig, path)
    for ax, cand in zip(fig.axes, cands):
        one = {k: v[[4]].copy() for k, v in x.items()}
        for k, v in cand.items():
            one[k][:] = v
        model.forward(one)
        assert np.array_equal(heights(ax), model.attention_scores[0, 0])
    assert not np.array_equal(heights(fig.axes[0]), heights(fig.axes[1]))


@pytest.mark.parametrize("rows,error,match", [
    ([40], ValueError, r"rows must be in \[0, 40\)"),
    ([-1], ValueError, r"rows must be in \[0, 40\)"),
    ([], ValueError, "at least one row"),
    ([True], TypeError, "integer row"),
    ([1.0], TypeError, "integer row"),
])
def test_attention_rows_checked(din_data, rows, error, match):
    model, x, _, _ = din_data
    with pytest.raises(error, match=match):
        nplot.plot_attention(model, x, rows)


def test_attention_needs_a_model_with_attention(din_data):
    _, x, _, columns = din_data
    with pytest.raises(ValueError, match="no attention"):
        nplot.plot_attention(DNNModel(columns, dnn_hidden_units=(4,)), x, [0])
    with pytest.raises(ValueError, match="no attention"):
        nplot.plot_attention_contrast(Dense(2), x, 0, [{"item_id": 1}, {"item_id": 2}])


@pytest.mark.parametrize("candidates,error,match", [
    ([{"item_id": 1}], ValueError, "at least two"),
    ([{"item_id": 1}, {"price": 2}], ValueError, "not candidate features"),
    ([{"item_id": 1}, {"gender": 1}], ValueError, "at least one attended feature"),
    ([{"item_id": 1}, {"item_id": 1.5}], TypeError, "integer id"),
    ([{"item_id": 1}, {"item_id": 99}], ValueError, "item_id"),
])
def test_attention_contrast_candidates_checked(din_data, candidates, error, match):
    model, x, _, _ = din_data
    with pytest.raises(error, match=match):
        nplot.plot_attention_contrast(model, x, 0, candidates)


def test_attention_missing_feature_is_the_models_error(din_data):
    model, x, _, _ = din_data
    with pytest.raises(ValueError, match="missing"):
        nplot.plot_attention(model, {k: v for k, v in x.items() if k != "pay_score"}, [0])


# -- plot_gradient_check -------------------------------------------------------------------------
def test_gradient_check_plots_the_checkers_errors(tmp_path):
    x = np.random.default_rng(0).standard_normal((6, 2)) * [1.0, 2.0] + [0.5, -1.0]
    steps = [1e-9, 1e-6, 1e-3, 1e-1]
    path = tmp_path / "g.png"
    layer = Dice()
    fig = nplot.plot_gradient_check(layer, x, steps=steps, training=True, path=path)
    assert_png(fig, path)
    f64, f32 = fig.axes
    for ax, dtype in ((f64, "float64"), (f32, "float32")):
        lines = {line.get_label(): line for line in ax.lines}
        assert {"two-point (order=2)", "five-point (order=4)"} <= set(lines)
        marked = sorted(line.get_xdata()[0] for line in ax.lines if line.get_label().startswith(("check", "DIN")))
        assert marked == [1e-6, 1e-4]             # the checker's default step, the DIN model checks' step
        for order, label in ((2, "two-point (order=2)"), (4, "five-point (order=4)")):
            expected = nplot.gradient_check_errors(layer, x, steps, order, dtype, training=True)
            assert np.array_equal(lines[label].get_ydata(), np.maximum(expected, 1e-17))
    # the V in float64: round-off on the left, truncation on the right, the minimum in between
    two_point = nplot.gradient_check_errors(layer, x, steps, 2, "float64", training=True)
    # an upper bound on the two-point error at its best step (~1e-10 in float64), not a comparison tolerance
    assert two_point[1] < 1e-8 and two_point[1] < two_point[0] and two_point[1] < two_point[3]
    assert layer.dtype == np.float64          # the float32 panel used a copy


def test_gradient_check_of_a_model_and_one_array(din_data):
    model, x, _, _ = din_data
    small = {k: v[:4] for k, v in x.items()}
    errors = nplot.gradient_check_errors(model, small, [1e-4], 4, "float64", name="dense/kernel",
                                         params=["dense/kernel"], check_inputs=False)
    assert errors[0] < 1e-8          # the five-point stencil's error at h 1e-4: a bound, not a tolerance
    assert model.dtype == np.float64
    with pytest.raises(ValueError, match="name must be one of"):
        nplot.gradient_check_errors(model, small, [1e-4], name="nope", params=["dense/kernel"])


@pytest.mark.parametrize("kwargs,error,match", [
    ({"steps": [1e-3]}, ValueError, "at least two"),
    ({"steps": [1e-3, -1.0]}, ValueError, "positive"),
    ({"eps": 1e-3}, TypeError, "unexpected keyword"),
    ({"dpi": 0}, ValueError, "dpi"),
])
def test_gradient_check_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        nplot.plot_gradient_check(Dice(), np.ones((3, 2)), **kwargs)


def test_gradient_check_needs_a_layer():
    with pytest.raises(TypeError, match="npctr Layer or Model"):
        nplot.plot_gradient_check(np.tanh, np.ones(3))


# -- plot_dice ---------------------------------------------------------------------------------------
def test_dice_gates_switch_at_the_batch_mean(tmp_path):
    path = tmp_path / "d.png"
    stats = ((0.0, 1.0), (2.0, 0.5))
    fig = nplot.plot_dice(stats, alpha=0.25, path=path)
    assert_png(fig, path)
    gate_ax, act_ax = fig.axes
    dice_gates = [line for line in gate_ax.lines if line.get_label().startswith("Dice")]
    for line, (mean, std) in zip(dice_gates, stats):
        x, p = line.get_xdata(), line.get_ydata()
        # read off the plotted curve by linear interpolation between its sample points: 1e-2
        assert np.interp(mean, x, p) == pytest.approx(0.5, abs=0.01)
        assert np.interp(mean + std, x, p) == pytest.approx(1 / (1 + np.exp(-1)), abs=0.01)
    prelu = act_ax.lines[0]
    x = prelu.get_xdata()
    np.testing.assert_allclose(prelu.get_ydata(), np.where(x > 0, x, 0.25 * x), rtol=1e-15, atol=0)


@pytest.mark.parametrize("kwargs,match", [
    ({"stats": [(0.0, 0.0)]}, "std > 0"),
    ({"stats": [(0.0,)]}, "pairs"),
    ({"stats": []}, "at least one"),
    ({"alpha": float("nan")}, "alpha"),
    ({"x_range": (1, 1)}, "x_range"),
])
def test_dice_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nplot.plot_dice(**kwargs)


# -- the demo ------------------------------------------------------------------------------------------
def test_demo_command_writes_its_figures(tmp_path):
    from npctr.__main__ import main
    assert main(["demo", "--samples", "1500", "--epochs", "1", "--verbose", "0",
                 "--plot", str(tmp_path / "figs")]) == 0
    for name in ("learning_curves.png", "attention.png", "attention_contrast.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 1000


def test_demo_figures_rows_and_rates(din_data, tmp_path):
    import io
    model, x, _, _ = din_data
    out = io.StringIO()
    result = nplot.demo_figures(model, {"DIN": {"loss": [0.7, 0.6]}}, x, tmp_path, min_length=4, n_rows=2,
                                out=out)
    # the rates, recomputed: largest |weight| among valid behaviours vs a random behaviour
    model.forward(x)
    w = model.attention_scores[:, 0, :]
    valid = x["hist_item_id"] != 0
    match = valid & (x["hist_cate_id"] == x["cate_id"][:, None])
    has = match.any(axis=1)
    top = np.argmax(np.where(valid, np.abs(w), -np.inf), axis=1)
    assert result["top_match_rate"] == pytest.approx(match[np.arange(len(x["cate_id"])), top][has].mean(), rel=1e-12)
    assert result["chance_rate"] == pytest.approx((match.sum(1) / valid.sum(1))[has].mean(), rel=1e-12)
    assert "largest |weight|" in out.getvalue()
    assert {p.name for p in tmp_path.iterdir()} == {"learning_curves.png", "attention.png",
                                                    "attention_contrast.png"}


# -- matplotlib stays optional ----------------------------------------------------------------------------
def run_python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    environ.update(env, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                            cwd=str(ROOT))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_npctr_and_load_model_never_import_matplotlib(din_data, tmp_path):
    model, x, _, _ = din_data
    model.save(tmp_path / "m.npz")
    out = run_python("import sys, numpy as np, npctr\n"
                     f"m = npctr.load_model({str(tmp_path / 'm.npz')!r})\n"
                     "print(sorted(k for k in sys.modules if k.startswith(('matplotlib', 'npctr.plot'))))")
    assert out == "[]"


def test_without_matplotlib_the_error_says_how_to_install():
    out = run_python("import sys; sys.modules['matplotlib'] = None\n"
                     "import npctr.plot\n"
                     "try:\n    npctr.plot.plot_dice()\n"
                     "except ImportError as e:\n    print(e)")
    assert "pip install 'npctr[plot]'" in out
    # the demo asks for matplotlib before it trains anything
    out = run_python("import sys; sys.modules['matplotlib'] = None\n"
                     "from npctr import demo\n"
                     "demo.load_data = None\n"
                     "try:\n    demo.run(plot_dir='figs')\n"
                     "except ImportError as e:\n    print(e)")
    assert "pip install 'npctr[plot]'" in out


def test_agg_when_headless_and_the_users_backend_kept():
    assert run_python("import matplotlib, npctr.plot\nnpctr.plot.require_matplotlib()\n"
                      "print(matplotlib.get_backend().lower())") == "agg"
    assert run_python("import matplotlib, npctr.plot\nnpctr.plot.require_matplotlib()\n"
                      "print(matplotlib.get_backend().lower())", MPLBACKEND="svg") == "svg"
    assert run_python("import matplotlib; matplotlib.use('pdf')\nimport npctr.plot\n"
                      "npctr.plot.plot_dice()\nprint(matplotlib.get_backend().lower())") == "pdf"
