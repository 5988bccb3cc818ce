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
