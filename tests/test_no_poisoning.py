"""Issue 17, points 2-5: no entry point poisons a model.

2. a training-mode forward on 0 rows is refused and leaves the moving statistics as they were;
3. ``fit`` checks every id of ``x`` and of the validation data before the first step, naming the
   feature and the row;
4. an optimizer that raises leaves the model exactly as before the step;
5. the Predictor a server holds refuses NaN / inf features as ``model.predict`` does.
"""
import numpy as np
import pytest

from npctr.layers import BatchNormalization, Dice, DNN
from npctr.training import Adam

from test_reliability import small_din, everything, assert_same, compiled_din


# -- 2. a training forward on an empty batch ----------------------------------------------------------
def _trained(layer, x):
    layer.forward(x, training=True)           # the moving statistics move away from 0 / 1
    return {k: v.copy() for k, v in layer.state.items()}


@pytest.mark.parametrize("make,shape", [
    (lambda: BatchNormalization(), (6, 4)),
    (lambda: BatchNormalization(conventions="torch"), (6, 4)),
    (lambda: Dice(), (6, 3)),
    (lambda: Dice(), (6, 5, 3)),
    (lambda: DNN((5, 3), use_bn=True, activation="dice"), (6, 4)),
])
def test_training_forward_on_zero_rows_is_refused_and_changes_nothing(make, shape):
    layer = make()
    x = np.random.default_rng(0).normal(size=shape)
    before = _trained(layer, x)
    empty = x[:0]
    with pytest.raises(ValueError, match=r"training needs at least one value per feature.*shape \(0,"):
        layer.forward(empty, training=True)
    for k, v in layer.state.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert layer.forward(empty, training=False).shape[0] == 0        # inference on 0 rows is fine
    assert np.isfinite(layer.forward(x, training=False)).all()


def test_model_training_forward_on_zero_rows_leaves_predictions_finite():
    model, x, y = compiled_din()
    before = everything(model)
    clean = model.predict(x)
    with pytest.raises(ValueError, match="training needs at least one value per feature"):
        model.forward({k: v[:0] for k, v in x.items()}, training=True)
    assert_same(everything(model), before)
    np.testing.assert_array_equal(model.predict(x), clean)
    with pytest.raises(ValueError, match="x holds no samples"):
        model.train_on_batch({k: v[:0] for k, v in x.items()}, y[:0])


# -- 3. ids checked before the first step --------------------------------------------------------------
def test_fit_refuses_an_out_of_vocabulary_id_in_the_last_row_before_any_step():
    model, x, y = compiled_din()
    before = everything(model)
    iterations = model.optimizer.iterations
    bad = {k: v.copy() for k, v in x.items()}
    bad["item_id"][-1] = 10 ** 6
    steps = []
    model.train_on_batch = lambda *a, **k: steps.append(1)          # not used by fit, but never called
    with pytest.raises(ValueError, match=r"item_id must lie in \[0, 31\) .*got id 1000000 at row 63"):
        model.fit(bad, y, batch_size=4, epochs=1, verbose=0)
    assert model.optimizer.iterations == iterations and not steps
    assert_same(everything(model), before)
    # a history id, and the validation data, are checked as early
    bad = {k: v.copy() for k, v in x.items()}
    bad["hist_cate_id"][40, 2] = -3
    with pytest.raises(ValueError, match=r"hist_cate_id must lie in \[0, 7\) .*got id -3 at row 40"):
        model.fit(bad, y, batch_size=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"validation_data\[0\]\['hist_cate_id'\] must lie .*got id -3 at row 40"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(bad, y))
    assert model.optimizer.iterations == iterations
    assert_same(everything(model), before)


# -- 4. an optimizer that raises ------------------------------------------------------------------------
class RefusingAdam(Adam):
    """A user's optimizer that refuses an update after checking it (before writing anything)."""

    def apply_gradients(self, params, grads):
        raise RuntimeError("this update is refused")


class OutOfMemoryAdam(Adam):
    """Adam that runs out of memory while updating its ``fail_at``-th parameter (0-based)."""

    fail_at = 0

    def _dense_keras(self, key, param, grad):
        self._count = getattr(self, "_count", 0) + 1
        if self._count > self.fail_at:
            raise MemoryError("out of memory")
        super()._dense_keras(key, param, grad)


@pytest.mark.parametrize("optimizer", [RefusingAdam, OutOfMemoryAdam])
def test_an_optimizer_that_raises_before_writing_leaves_the_model_as_before(optimizer):
    model, x, y = compiled_din()
    trained = model.optimizer
    model.optimizer = optimizer(0.01)
    model.optimizer.slots, model.optimizer.iterations = trained.slots, trained.iterations   # same state
    before = everything(model)
    clean = model.predict(x)
    with pytest.raises((RuntimeError, MemoryError)):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert_same(everything(model), before)          # the forward's new moving statistics are undone
    np.testing.assert_array_equal(model.predict(x), clean)


def test_an_optimizer_failing_half_way_says_how_far_it_got():
    model, x, y = compiled_din()
    trained = model.optimizer
    model.optimizer = OutOfMemoryAdam(0.01)
    model.optimizer.fail_at = 2
    model.optimizer.slots, model.optimizer.iterations = trained.slots, trained.iterations
    moving = {k: v.copy() for k, v in model.state.items()}
    with pytest.raises(MemoryError) as info:
        model.train_on_batch({k: v[:16] for k, v in x.items()}, y[:16])
    note = " ".join(getattr(info.value, "__notes__", []))
    assert "after updating 2 of" in note and "cannot be undone" in note
    for k, v in model.state.items():            # the forward's changes are undone even so
        np.testing.assert_array_equal(v, moving[k], err_msg=k)
    assert model.optimizer.iterations == trained.iterations


def test_apply_gradients_checks_every_gradient_before_writing():
    opt = Adam(0.1)
    params = {"a": np.zeros(3), "b": np.zeros(2)}
    with pytest.raises(ValueError, match=r"gradient for 'b' has shape \(3,\), parameter has shape \(2,\)"):
        opt.apply_gradients(params, {"a": np.ones(3), "b": np.ones(3)})
    assert not params["a"].any() and opt.iterations == 0 and not opt.slots["m"]


# -- 5. the Predictor refuses NaN features as model.predict does -----------------------------------------
@pytest.mark.parametrize("rows", [1, 16, 64])          # the small-batch path (<= 16 rows) and the full one
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_predictor_refuses_non_finite_dense_features(rows, value):
    model, x, _ = small_din()
    x = {k: v[:rows].copy() for k, v in x.items()}
    x["pay_score"] = x["pay_score"].astype(np.float64)
    x["pay_score"][rows - 1] = value
    predictor = model.inference()
    for predict in (predictor.predict, predictor, model.predict):
        with pytest.raises(ValueError, match=rf"x\['pay_score'\] holds NaN or infinite values.*row {rows - 1}"):
            predict(x)
    assert np.isnan(predictor.predict(x, check_finite=False)[rows - 1, 0])    # the documented escape
