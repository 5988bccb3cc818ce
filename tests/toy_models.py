"""Tiny models for the trainer's tests (independent of DIN).

``ToyDNNModel``: dense features -> DNN -> Dense(1, no bias) -> PredictionLayer.
``ToyBagModel``: one embedding table, mean of the row embeddings of ``ids`` (B, T) ->
Dense(1) -> PredictionLayer; its table's gradient is a ``RowGrad``.
"""
import numpy as np

from npctr.layers import DNN, Dense, PredictionLayer
from npctr.layers.base import make_rng
from npctr.models.base import Model, register_model
from npctr.sparse import scatter_rows


@register_model
class ToyDNNModel(Model):
    def __init__(self, input_dims, hidden_units=(8,), task="binary", l2_reg=0.0, dropout_rate=0.0,
                 use_bn=False, seed=7, dtype="float64", name=None, trainable=True):
        super().__init__(name=name, dtype=dtype, trainable=trainable)
        self.input_dims = dict(input_dims)
        self.feature_names = list(self.input_dims)
        self.hidden_units = tuple(hidden_units)
        self.task = task
        self.l2_reg = l2_reg
        self.dropout_rate = dropout_rate
        self.use_bn = use_bn
        self.seed = seed
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        d = sum(self.input_dims.values())
        dnn = self.add_layer("dnn", DNN(self.hidden_units, l2_reg=self.l2_reg, dropout_rate=self.dropout_rate,
                                        use_bn=self.use_bn, seed=self.seed, dtype=self.dtype, name="dnn"))
        dnn._build_for(self.dtype, (None, d))
        out = self.hidden_units[-1] if self.hidden_units else d
        dense = self.add_layer("dense", Dense(1, use_bias=False, seed=self.seed, dtype=self.dtype,
                                              l2_reg=self.l2_reg, name="dense"))
        dense._build_for(self.dtype, (None, out))
        pred = self.add_layer("prediction", PredictionLayer(self.task, dtype=self.dtype, name="prediction"))
        pred._build_for(self.dtype, (None, 1))
        self.built = True

    def _concat(self, x):
        return np.concatenate([np.asarray(x[n], dtype=self.dtype).reshape(len(x[n]), -1)
                               for n in self.feature_names], axis=1)

    def _logit(self, x, training, backprop):
        h = self._layers["dnn"].forward(self._concat(x), training, backprop)
        return self._layers["dense"].forward(h, training, backprop)

    def forward(self, x, training=False, backprop=None):
        return self._layers["prediction"].forward(self._logit(x, training, backprop), training, backprop)

    def backward(self, d_output):
        d = self._layers["prediction"].backward(d_output)
        self._layers["dnn"].backward(self._layers["dense"].backward(d))

    def forward_logits(self, x, training=False, backprop=None):
        z = self._logit(x, training, backprop)
        self._z_shape = z.shape
        return z + self._layers["prediction"]._params["global_bias"]

    def backward_logits(self, d_logits):
        self._layers["prediction"]._grads["global_bias"] = d_logits.sum(axis=0)
        self._layers["dnn"].backward(self._layers["dense"].backward(d_logits))

    def get_config(self):
        return {**super().get_config(), "input_dims": self.input_dims, "hidden_units": list(self.hidden_units),
                "task": self.task, "l2_reg": self.l2_reg, "dropout_rate": self.dropout_rate,
                "use_bn": self.use_bn, "seed": self.seed}


@register_model
class ToyBagModel(Model):
    """Mean-pooled embedding bag; id 0 is padding (excluded from the mean)."""

    def __init__(self, vocabulary_size=20, embedding_dim=3, task="binary", seed=3, dtype="float64", name=None,
                 trainable=True):
        super().__init__(name=name, dtype=dtype, trainable=trainable)
        self.vocabulary_size, self.embedding_dim = vocabulary_size, embedding_dim
        self.task, self.seed = task, seed
        self.feature_names = ["ids"]
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        rng = make_rng(self.seed)
        self.add_weight("embeddings", rng.normal(0, 0.5, (self.vocabulary_size, self.embedding_dim)))
        dense = self.add_layer("dense", Dense(1, seed=self.seed, dtype=self.dtype, name="dense"))
        dense._build_for(self.dtype, (None, self.embedding_dim))
        self.built = True

    def forward_logits(self, x, training=False, backprop=None):
        ids = np.asarray(x["ids"])
        mask = (ids != 0).astype(self.dtype)
        count = mask.sum(axis=1, keepdims=True) + 1e-8
        pooled = (self._params["embeddings"][ids] * mask[..., None]).sum(axis=1) / count
        self._bag = (ids, mask, count) if self._keeps_cache(training, backprop) else None
        return self._layers["dense"].forward(pooled, training, backprop)

    def backward_logits(self, d_logits):
        ids, mask, count = self._bag
        d_pooled = self._layers["dense"].backward(d_logits)
        rows = (d_pooled / count)[:, None, :] * mask[..., None]
        self._grads["embeddings"] = scatter_rows(ids, rows, self._params["embeddings"].shape)

    def forward(self, x, training=False, backprop=None):
        z = self.forward_logits(x, training, backprop)
        p = 1.0 / (1.0 + np.exp(-z))
        self._p = p
        return p

    def backward(self, d_output):
        self.backward_logits(d_output * self._p * (1 - self._p))

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim, "task": self.task, "seed": self.seed}


def toy_data(n=200, dims=(("a", 3), ("b", 2)), seed=0):
    rng = np.random.default_rng(seed)
    x = {name: rng.normal(size=(n, d)) for name, d in dims}
    w = rng.normal(size=sum(d for _, d in dims))
    z = np.concatenate([x[name] for name, _ in dims], axis=1) @ w
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * z))).astype(float)
    return x, y


def bag_data(n=120, vocabulary_size=20, T=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocabulary_size, size=(n, T))
    ids[:, 0] = np.maximum(ids[:, 0], 1)
    y = (ids % 2 == 1).mean(axis=1) > 0.5
    return {"ids": ids}, y.astype(float)


def assert_param_gradients(model, grads, objective, h=1e-6, rel=1e-6, abs=1e-10):
    """Central differences of ``objective()`` for every entry of ``model.params`` against ``grads``.

    ``rel`` 1e-6 per entry (not normwise): an entry small next to the objective carries the central
    difference's ~1e-10 absolute round-off as a larger relative error; ``abs`` covers true zeros."""
    import pytest
    for key, w in model.params.items():
        for idx in np.ndindex(*w.shape):
            old = w[idx]
            w[idx] = old + h
            fp = objective()
            w[idx] = old - h
            fm = objective()
            w[idx] = old
            assert grads[key][idx] == pytest.approx((fp - fm) / (2 * h), rel=rel, abs=abs), key
