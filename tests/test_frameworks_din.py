"""Whole-DIN parity with the real frameworks (tests/data/frameworks/, recorded by tools/record_*.py).

For every ``din`` case of tf.keras 2, Keras 3 and DeepCTR-Torch: npctr's DIN with the
recording's conventions profile, loaded with the recorded weights, must reproduce the
inference and training outputs, the loss the framework minimises, every gradient and the
moving statistics after one training call: 1e-12 relative (normwise, max|a-b|/max|b|) in
float64, 1e-5 in float32. A gradient that is exactly zero mathematically (a DNN bias in
front of a BatchNormalization) is judged against its layer's gradient scale.
"""
import numpy as np
import pytest

from framework_util import (cases, load, build_din, set_recorded_weights, features, training_gradients,
                            mapping, to_npctr, rel_error, layer_of, layer_scales, tolerance)

DIN_CASES = cases("din")

#: a gradient below ZERO ulps of its layer's gradient scale is exactly zero up to round-off
ZERO = 1e3
@pytest.mark.parametrize("file", DIN_CASES)
def test_din_matches_framework(file):
    data, meta = load(file)
    tol = tolerance(meta["dtype"])
    model = build_din(meta)
    set_recorded_weights(model, data)
    x, y = features(data), data["y"]

    out = model.predict(x, batch_size=len(y))
    err = rel_error(out, data["out_infer"])
    assert err <= tol, f"out_infer: {err:.3g}"

    out_train, total, data_loss, reg, grads = training_gradients(model, x, y)
    err = rel_error(out_train, data["out_train"])
    assert err <= tol, f"out_train: {err:.3g}"
    if meta["dtype"] == "float64":
        err = rel_error(data_loss, data["data_loss"])
        assert err <= tol, f"data_loss {data_loss!r} vs {float(data['data_loss'])!r}: {err:.3g}"
    else:
        # float32: a sample saturated on the wrong side (final_kernel_scale) has 1 - p ~ 1e-7, a few
        # float32 ulps, so its log carries an O(1e-3) relative rounding: the loss is ill-conditioned in
        # p there. The loss formula is checked on the framework's own probabilities instead (and
        # the probabilities themselves above).
        loss = model._default_loss()
        framework_loss = loss.value(y.astype(np.float32).reshape(-1, 1), data["out_train"].astype(np.float32))
        err = rel_error(framework_loss, data["data_loss"])
        assert err <= tol, f"data_loss from the framework's p: {framework_loss!r} vs {float(data['data_loss'])!r}"
    # DeepCTR-Torch accumulates its regularisation in a float32 tensor (torch.zeros((1,))), so its
    # reg_loss and total loss are float32 even for a float64 model (meta["loss_dtypes"]): only their
    # value is rounded, the gradients are float64.
    if meta.get("loss_dtypes", {}).get("reg_loss") == "torch.float32":
        # a few float32 ulps (one rounding per accumulated parameter), compared outside rel_error
        # so tools/framework_agreement.py reports the arrays, not this reporting precision
        ulps = 4 * np.finfo(np.float32).eps
        assert abs(reg - float(data["reg_loss"])) <= ulps * abs(float(data["reg_loss"])), reg
        if meta["dtype"] == "float64":      # (float32: the data loss is ill-conditioned, see above)
            assert abs(total - float(data["loss"])) <= ulps * abs(float(data["loss"])), total
    else:
        assert rel_error(reg, data["reg_loss"]) <= tol, (reg, float(data["reg_loss"]))
        if meta["dtype"] == "float64":
            assert rel_error(total, data["loss"]) <= tol, (total, float(data["loss"]))

    params = model.params
    recorded = {}
    for name, path, transpose in mapping(data):
        if path in params:
            recorded[path] = to_npctr(data["grad/" + name], transpose, params[path].shape)
    assert sorted(recorded) == sorted(params)
    scales = layer_scales(recorded)
    for path, expected in recorded.items():
        zero = np.max(np.abs(expected)) <= ZERO * np.finfo(meta["dtype"]).eps * scales[layer_of(path)]
        err = rel_error(grads[path], expected, scale=scales[layer_of(path)] if zero else None)
        assert err <= tol, f"grad {path}: {err:.3g}"

    state = model.state
    for name, path, transpose in mapping(data):
        if path in state:
            err = rel_error(state[path], to_npctr(data["after_train/" + name], transpose, state[path].shape))
            assert err <= tol, f"after_train {path}: {err:.3g}"


def test_recordings_present():
    frameworks = {load(f)[1]["framework"] for f in DIN_CASES}
    assert frameworks == {"tf_keras", "keras3", "torch"}
