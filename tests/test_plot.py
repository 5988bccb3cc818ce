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
from npctr.datasets import make_din_data, make_dien_data  # noqa: E402
from npctr.models import DIEN, DIN, DNNModel  # noqa: E402

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


# -- DIEN: the attention over time, the evolving interest ---------------------------------------------
@pytest.fixture(scope="module")
def dien_data():
    """A small untrained DIEN and DIN on make_dien_data with its hidden truth (drift 0.3: several runs)."""
    x, y, columns, history, truth = make_dien_data(80, n_users=20, n_items=40, n_cates=8, maxlen=8, drift=0.3,
                                                   return_truth=True, seed=3)
    dien = DIEN(columns, history, gru_type="AUGRU", use_negsampling=True, dnn_hidden_units=(8,),
                att_hidden_units=(6,), seed=2)
    bag = [fc for fc in columns if not fc.name.startswith("neg_")]
    din = DIN(bag, history, dnn_hidden_units=(8,), att_hidden_size=(6,), seed=2)
    return dien, din, x, truth


def without_negatives(x):
    return {k: v for k, v in x.items() if not k.startswith("neg_")}


def test_candidate_kinds_by_hand():
    interest = np.array([[3, 3, 5, 0], [3, 5, 5, 5], [2, 2, 2, 2]])
    valid = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=bool)
    # row 0: 3 was active earlier (5 now); row 1: 5 is the interest now; row 2: 7 never was
    kinds = nplot.candidate_kinds([3, 5, 7], interest, valid, [5, 5, 2])
    assert list(kinds) == ["earlier", "now", "other"]
    # a category present only past the length is not in the history
    assert list(nplot.candidate_kinds([2], [[1, 1, 2]], [[True, True, False]], [1])) == ["other"]


def test_attention_over_time_bars_are_the_scores_and_the_truth_is_marked(dien_data, tmp_path):
    dien, _, x, truth = dien_data
    rows = [2, 0, 11]
    path = tmp_path / "t.png"
    fig = nplot.plot_attention_over_time(dien, x, rows, truth=truth, caption="three rows", path=path)
    assert_png(fig, path)
    dien.forward({k: v[rows] for k, v in x.items()})
    for i, (ax, row) in enumerate(zip(fig.axes, rows)):
        assert np.array_equal(heights(ax), dien.attention_scores[i, 0])
        length = int(x["seq_length"][row, 0])
        assert np.all(heights(ax)[length:] == 0)                       # padding: weight 0
        hist = x["hist_cate_id"][row]
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(c) for c in hist[:length]]
        # browsing behaviours (outside the active interest) are hatched, and only they
        hatched = [bar.get_hatch() == "///" for bar in ax.containers[0]][:length]
        assert hatched == list(hist[:length] != truth["interest"][row, :length])
        # the candidate's category is orange
        colours = [matplotlib.colors.to_hex(bar.get_facecolor()) for bar in ax.containers[0]][:length]
        assert colours == [nplot.TIME_BAR_COLOURS[int(c == x["cate_id"][row])] for c in hist[:length]]
        kind = nplot.candidate_kinds(x["cate_id"][[row]], truth["interest"][[row]],
                                     np.arange(8)[None] < length, truth["current_interest"][[row]])[0]
        assert nplot.KIND_TEXT[kind] in ax.get_title(loc="left")
        # the band after the last behaviour is the interest at the impression
        texts = [t.get_text() for t in ax.texts]
        assert "now" in texts and str(truth["current_interest"][row]) in texts


def test_attention_over_time_of_a_din_without_truth(dien_data):
    _, din, x, _ = dien_data
    fig = nplot.plot_attention_over_time(din, without_negatives(x), [4])
    din.forward({k: v[[4]] for k, v in without_negatives(x).items()})
    assert np.array_equal(heights(fig.axes[0]), din.attention_scores[0, 0])
    assert "now" not in [t.get_text() for t in fig.axes[0].texts]


@pytest.mark.parametrize("kwargs,error,match", [
    ({"rows": [80]}, ValueError, r"rows must be in \[0, 80\)"),
    ({"category": "gender"}, ValueError, "category must name one of"),
    ({"truth": {"interest": np.zeros((80, 7))}}, ValueError, "truth must be the dict"),
    ({"truth": {"interest": np.zeros((80, 7)), "current_interest": np.zeros(80)}}, ValueError, r"\(80, 8\)"),
    ({"titles": ["a", "b"]}, ValueError, "one title per row"),
])
def test_attention_over_time_arguments(dien_data, kwargs, error, match):
    dien, _, x, _ = dien_data
    with pytest.raises(error, match=match):
        nplot.plot_attention_over_time(dien, x, **kwargs)


def test_attention_over_time_needs_attention(dien_data):
    _, _, x, _ = dien_data
    columns = make_dien_data(10, n_users=20, n_items=40, n_cates=8, maxlen=8, negatives=False, seed=3)[2]
    with pytest.raises(ValueError, match="no attention"):
        nplot.plot_attention_over_time(DNNModel(columns, dnn_hidden_units=(4,)), without_negatives(x))


def cut(x, row, t, candidate):
    """Row ``row`` of ``x`` with its sequences cut after ``t`` behaviours and its candidate replaced."""
    one = {k: np.array(v[[row]]) for k, v in x.items()}
    for k in one:
        if k.startswith(("hist_", "neg_hist_")):
            one[k][:, t:] = 0
    one["seq_length"][:] = t
    for k, v in candidate.items():
        one[k][:] = v
    return one


def test_interest_evolution_lines_are_the_predictions_of_cut_histories(dien_data, tmp_path):
    dien, din, x, truth = dien_data
    rows = [2, 5]
    candidates = [[{"item_id": 3, "cate_id": 2}, {"item_id": 9, "cate_id": 5}], [{"item_id": 7, "cate_id": 1}]]
    path = tmp_path / "e.png"
    fig = nplot.plot_interest_evolution({"DIEN": dien, "DIN": din}, x, rows, candidates=candidates, truth=truth,
                                        path=path)
    assert_png(fig, path)
    for i, row in enumerate(rows):
        length = int(x["seq_length"][row, 0])
        for m, model in enumerate((dien, din)):
            ax = fig.axes[i * 2 + m]
            assert len(ax.lines) == len(candidates[i])
            for line, cand in zip(ax.lines, candidates[i]):
                assert list(line.get_xdata()) == list(range(1, length + 1))
                expected = [model.predict({k: v for k, v in cut(x, row, t, cand).items()
                                           if k in model.feature_names})[0, 0] for t in range(1, length + 1)]
                # the same rows predicted in one batch or one at a time: inference is row-independent
                np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12, atol=1e-15)


def test_interest_evolution_default_candidates_are_the_last_interests(dien_data):
    dien, _, x, truth = dien_data
    row = next(r for r in range(80) if len(set(truth["interest"][r, :x["seq_length"][r, 0]])) >= 3)
    fig = nplot.plot_interest_evolution(dien, x, row, truth=truth, max_candidates=2)
    length = int(x["seq_length"][row, 0])
    seq = list(truth["interest"][row, :length]) + [truth["current_interest"][row]]
    last_two = [int(c) for c in dict.fromkeys(reversed(seq))][:2][::-1]
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert [int(label.split()[1]) for label in labels] == last_two
    pairs = dict(zip(np.concatenate([x["hist_item_id"].ravel(), x["item_id"]]),
                     np.concatenate([x["hist_cate_id"].ravel(), x["cate_id"]])))
    for label, cate in zip(labels, last_two):
        item = int(label.split("item ")[1].rstrip(")"))
        assert pairs[item] == cate and item not in x["hist_item_id"][row]     # an item of that category, new


@pytest.mark.parametrize("kwargs,error,match", [
    ({"candidates": [[{"cate_id": 2}]]}, ValueError, "one list of candidate dicts per row"),
    ({"rows": [0], "candidates": [[{"item_id": 2}]]}, ValueError, "setting 'cate_id'"),
    ({"max_candidates": 0}, ValueError, "max_candidates"),
    ({"item": "cate_id", "category": "nope"}, ValueError, "category must name one of"),
    ({"rows": [-1]}, ValueError, "rows must be in"),
])
def test_interest_evolution_arguments(dien_data, kwargs, error, match):
    dien, _, x, _ = dien_data
    kwargs = {"rows": [0, 1], **kwargs}
    with pytest.raises(error, match=match):
        nplot.plot_interest_evolution(dien, x, **kwargs)


def test_interest_evolution_needs_models_with_a_history(dien_data):
    _, _, x, _ = dien_data
    columns = make_dien_data(10, n_users=20, n_items=40, n_cates=8, maxlen=8, negatives=False, seed=3)[2]
    with pytest.raises(ValueError, match="behaviour history"):
        nplot.plot_interest_evolution({"DNN": DNNModel(columns, dnn_hidden_units=(4,))}, x)


def test_dien_demo_figures_rows_and_numbers(dien_data, tmp_path):
    import io
    dien, din, x, truth = dien_data
    out = io.StringIO()
    result = nplot.dien_demo_figures({"DIEN": dien, "DIN": din}, {"DIEN": {"loss": [0.7, 0.6]}}, x, truth,
                                     tmp_path, min_length=6, min_runs=2, out=out)
    assert {p.name for p in tmp_path.iterdir()} == {"dien_learning_curves.png", "dien_attention.png",
                                                    "dien_interest.png"}
    # the means by kind of candidate, recomputed
    length = x["seq_length"][:, 0]
    valid = np.arange(8)[None] < length[:, None]
    kinds = nplot.candidate_kinds(x["cate_id"], truth["interest"], valid, truth["current_interest"])
    p = din.predict(without_negatives(x))[:, 0]
    for kind in ("now", "earlier", "other"):
        assert result["mean_p"]["DIN"][kind] == pytest.approx(p[kinds == kind].mean(), rel=1e-12)
        assert result["mean_p"]["true"][kind] == pytest.approx(truth["click_probability"][kinds == kind].mean(),
                                                               rel=1e-12)
    # the attention on the last run of the interest, recomputed with a loop
    dien.forward(x)
    w = dien.attention_scores[:, 0]
    on_last, shares = [], []
    for r in range(80):
        z, n = truth["interest"][r], length[r]
        if kinds[r] != "now":
            continue
        start = n - 1
        while start > 0 and z[start - 1] == z[n - 1]:
            start -= 1
        if start == 0:              # one interest all along: no last run to speak of
            continue
        on_last.append(w[r, start:n].sum())
        shares.append((n - start) / n)
    assert result["last_run_attention"] == pytest.approx(np.mean(on_last), rel=1e-12)
    assert result["last_run_share"] == pytest.approx(np.mean(shares), rel=1e-12)
    assert "attention is on the last run" in out.getvalue()


def test_demo_dien_command_writes_its_figures(tmp_path):
    from npctr.__main__ import main
    assert main(["demo", "--model", "dien", "--samples", "400", "--epochs", "1", "--verbose", "0",
                 "--plot", str(tmp_path / "figs")]) == 0
    for name in ("dien_learning_curves.png", "dien_attention.png", "dien_interest.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 1000


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
