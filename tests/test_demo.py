"""The main job: a small DIN learns the synthetic clicks, and the demo runs end to end."""
import io

import numpy as np

from npctr import demo
from npctr.models import DIN
from npctr.training.metrics import roc_auc
from npctr.training.optimizers import Adam


def test_small_din_loss_falls_and_auc_beats_chance():
    """A few hundred Adam steps on the demo's data: the loss falls and held-out AUC beats chance.

    (Seeded: data, initialisation and shuffling are fixed, so this is deterministic.)
    """
    (x, y), (xv, yv), columns, history = demo.load_data(12000, seed=7)
    model = DIN(columns, history, att_hidden_size=(16, 8), dnn_hidden_units=(32, 16), seed=3)
    model.compile(Adam(0.01), "binary_crossentropy", metrics=["auc"])
    h = model.fit(x, y, batch_size=256, epochs=5, verbose=0, validation_data=(xv, yv))
    loss = h.history["loss"]
    assert all(b < a for a, b in zip(loss, loss[1:])), loss
    assert loss[-1] < loss[0] - 0.05, loss
    assert roc_auc(yv, model.predict(xv)) > 0.62


def test_demo_runs_and_reports_both_models():
    out = io.StringIO()
    results = demo.run(n_samples=1500, epochs=1, verbose=0, out=out)
    assert set(results) == {"DIN (attention)", "DNN (mean-pooled history)"}
    for r in results.values():
        assert 0.0 <= r["auc"] <= 1.0 and np.isfinite(r["logloss"])
    text = out.getvalue()
    assert "validation results" in text and "DIN - baseline" in text


def test_demo_command_line_rejects_unknown_options(capsys):
    import pytest
    with pytest.raises(SystemExit):
        demo.main(["--no-such-option"])


def test_din_table_keeps_its_layout():
    """``python -m npctr demo`` (DIN) prints what the README shows, column for column."""
    out = io.StringIO()
    results = demo.run(n_samples=400, epochs=1, verbose=0, out=out)
    lines = out.getvalue().splitlines()
    header = lines.index("validation results (held-out impressions)")
    assert lines[header + 1] == "model                             AUC  log loss  train time"
    din = results["DIN (attention)"]
    assert lines[header + 2].startswith(f"{'DIN (attention)':28s} {din['auc']:8.4f} {din['logloss']:9.4f} ")
    assert lines[header + 4] == ""
    assert lines[header + 5].startswith("DIN - baseline: AUC ")


def test_demo_dien_runs_and_reports_three_models_and_the_oracle():
    out = io.StringIO()
    results = demo.run_dien(n_samples=400, epochs=1, verbose=0, out=out)
    assert list(results) == ["DIEN (AUGRU, auxiliary loss)", "DIN (attention)", "DNN (mean-pooled history)",
                             "oracle"]
    for r in results.values():
        assert 0.0 <= r["auc"] <= 1.0 and np.isfinite(r["logloss"])
    (_, _), (_, y_valid), _, _, truth = demo.load_dien_data(400, 2024)
    assert results["oracle"]["auc"] == roc_auc(y_valid, truth["click_probability"])
    text = out.getvalue()
    assert "DIEN (AUGRU, auxiliary loss)" in text and "DIEN - DIN: AUC" in text and "DIEN - baseline" in text


def test_demo_dien_models_read_the_same_behaviours():
    """DIEN takes the negative histories; DIN and the baseline the same columns without them."""
    (x, _), _, columns, history, _ = demo.load_dien_data(200, 1)
    models = demo.dien_models(columns, history, gru_type="AGRU")
    dien, din, base = models.values()
    assert dien.gru_type == "AGRU" and dien.use_negsampling
    assert set(dien.feature_names) == set(x)
    assert set(din.feature_names) == set(base.feature_names) == {k for k in x if not k.startswith("neg_")}
    assert "user" not in x


def test_demo_defaults_depend_on_the_model(monkeypatch):
    import pytest
    calls = []
    monkeypatch.setattr(demo, "run", lambda *a, **k: calls.append(("din", a, k)))
    monkeypatch.setattr(demo, "run_dien", lambda *a, **k: calls.append(("dien", a, k)))
    assert demo.main([]) == 0
    assert demo.main(["--model", "dien", "--gru-type", "GRU"]) == 0
    (din, din_args, _), (dien, dien_args, dien_kwargs) = calls
    assert din_args[:2] == (demo.DEFAULTS["din"]["n_samples"], demo.DEFAULTS["din"]["epochs"]) == (40000, 8)
    assert dien_args[:2] == (demo.DEFAULTS["dien"]["n_samples"], demo.DEFAULTS["dien"]["epochs"])
    assert dien_kwargs["gru_type"] == "GRU"
    with pytest.raises(SystemExit):
        demo.main(["--gru-type", "GRU"])             # a DIEN option without --model dien
    with pytest.raises(SystemExit):
        demo.main(["--model", "dien", "--samples", "10"])
