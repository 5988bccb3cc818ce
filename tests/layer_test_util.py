"""``layer_test``: DeepCTR's ``tests/utils.py::layer_test`` carried over to npctr's API.

DeepCTR's helper builds a Keras model around the layer; npctr has no model
graph, so each step is done on the layer itself, with the same checks:

1. random input data, ``10 * uniform[0, 1)`` in ``input_dtype`` (default float32,
   Keras's ``floatx``), ``None`` dimensions replaced by a size in 1..3;
2. ``get_weights()`` / ``set_weights()`` round trip on the fresh (unbuilt) layer
   (``[]`` accepted, as Keras does);
3. ``compute_output_shape(input_shape)`` matches the actual output shape
   (``None`` entries skipped; unlike DeepCTR's ``zip`` the ranks must agree too);
4. the output dtype is the input dtype;
5. ``expected_output`` (if given) matches at ``rtol=1e-3``;
6. config round trip: ``layer_cls.from_config(layer.get_config())``, then
   ``set_weights(layer.get_weights())`` reproduces the output;
7. a training step runs: forward with ``training=True``, MSE against the
   inference output (DeepCTR: ``train_on_batch(input_data, actual_output)``),
   backward, a small SGD update of every parameter; the loss is finite and the
   parameters stay finite;
8. the config creates a fresh layer again after the training step.

Returns the inference output, for further checks by the caller.
"""
import numpy as np
from numpy.testing import assert_allclose


def _random_input(shape, dtype, rng):
    return (10 * rng.random(shape)).astype(dtype)


def layer_test(layer_cls, kwargs=None, input_shape=None, input_dtype=None, input_data=None,
               expected_output=None, expected_output_dtype=None, seed=0, learning_rate=1e-3):
    rng = np.random.default_rng(seed)
    kwargs = {} if kwargs is None else dict(kwargs)

    # 1. input data
    if input_data is None:
        if not input_shape:
            raise AssertionError("layer_test needs input_shape or input_data")
        input_dtype = np.dtype(input_dtype or "float32")
        if isinstance(input_shape, list):
            data_shapes = [tuple(int(rng.integers(1, 4)) if d is None else d for d in s) for s in input_shape]
            input_data = [_random_input(s, input_dtype, rng) for s in data_shapes]
        else:
            data_shape = tuple(int(rng.integers(1, 4)) if d is None else d for d in input_shape)
            input_data = _random_input(data_shape, input_dtype, rng)
    else:
        if input_shape is None:
            input_shape = ([np.shape(x) for x in input_data] if isinstance(input_data, list)
                           else np.shape(input_data))
        if input_dtype is None:
            first = input_data[0] if isinstance(input_data, list) else input_data
            input_dtype = np.asarray(first).dtype
    input_dtype = np.dtype(input_dtype)
    expected_output_dtype = np.dtype(expected_output_dtype or input_dtype)

    # 2. instantiation; weights round trip before build
    layer = layer_cls(**kwargs)
    weights = layer.get_weights()
    layer.set_weights(weights)

    # 3-5. output shape, dtype, values (inference, as model.predict)
    expected_output_shape = layer.compute_output_shape(input_shape)
    actual_output = layer.forward(input_data, training=False)
    assert actual_output.dtype == expected_output_dtype, (actual_output.dtype, expected_output_dtype)
    actual_output_shape = actual_output.shape
    if len(expected_output_shape) != len(actual_output_shape):
        raise AssertionError("expected_shape", expected_output_shape, "actual_shape", actual_output_shape)
    for expected_dim, actual_dim in zip(expected_output_shape, actual_output_shape):
        if expected_dim is not None and expected_dim != actual_dim:
            raise AssertionError("expected_shape", expected_output_shape, "actual_shape", actual_output_shape)
    if expected_output is not None:
        # Keras's layer_test tolerance, kept as DeepCTR's tests use it: its data is float32 and the
        # expectations are other formulas (tests pass far tighter: 7e-8 measured)
        assert_allclose(actual_output, expected_output, rtol=1e-3)

    # built layer: get_weights/set_weights round trip
    weights = layer.get_weights()
    layer.set_weights(weights)
    for w, w2 in zip(weights, layer.get_weights()):
        np.testing.assert_array_equal(w, w2)

    # 6. serialization and weight setting
    config = layer.get_config()
    recovered = layer_cls.from_config(config)
    if weights:
        recovered.forward(input_data, training=False)       # build
        recovered.set_weights(weights)
    _output = recovered.forward(input_data, training=False)
    np.testing.assert_array_equal(_output, actual_output)      # the same weights, the same code: bit for bit

    # 7. a training step: MSE against the inference output, plain SGD
    out = layer.forward(input_data, training=True)
    diff = out.astype(np.float64) - actual_output.astype(np.float64)
    loss = float(np.mean(diff ** 2)) + layer.regularization_loss()
    assert np.isfinite(loss), loss
    grads = layer.backward((2.0 * diff / diff.size).astype(out.dtype))
    for g in (grads if isinstance(grads, list) else [grads]):
        assert np.all(np.isfinite(g))
    layer.add_regularization_grads()
    params, param_grads = layer.params, layer.grads
    assert set(params) == set(param_grads)
    for key, p in params.items():
        assert param_grads[key].shape == p.shape, key
        p -= learning_rate * param_grads[key]                # in place: params stay the source of truth
        assert np.all(np.isfinite(p)), key
    after = layer.forward(input_data, training=False)
    assert after.shape == actual_output.shape and np.all(np.isfinite(after))

    # 8. instantiation from the layer config
    layer_cls.from_config(layer.get_config())
    return actual_output
