"""Which update formula, with which rounding of the hyperparameters, each framework's optimizer applies in float64.

    TF_USE_LEGACY_KERAS=1 /work/refenv/bin/python tools/probe_optimizers.py    # tf_keras (keras, keras_legacy)
    /work/refenv/bin/python tools/probe_optimizers.py                          # keras3
    /work/refenv/bin/python tools/probe_optimizers.py --torch                  # torch

Three steps on one float64 variable with fixed dense gradients; prints, per optimizer, the max relative
difference to candidate NumPy formulas with exact or float32-rounded hyperparameters (0 = bit-exact).
The findings are in tests/data/frameworks/README.md.
"""
import os
import sys

import numpy as np

f32 = lambda v: float(np.float32(v))  # noqa: E731
G = [np.array([0.3, -1.2, 2.5, 1e-3]), np.array([-0.7, 0.4, 1.1, -2e-3]), np.array([0.2, 0.9, -3.0, 5e-4])]
W0 = np.array([0.5, -0.25, 1.0, 2.0])


def sgd(lr, mom=0.0, rnd=lambda v: v, **_):
    w, m, out = W0.copy(), np.zeros(4), []
    for g in G:
        if mom:
            m = rnd(mom) * m - rnd(lr) * g
            w = w + m
        else:
            w = w - rnd(lr) * g
        out.append(w.copy())
    return out


def torch_sgd(lr, mom=0.0, **_):
    w, b, out = W0.copy(), None, []
    for g in G:
        if mom:
            b = g.copy() if b is None else mom * b + g
            w = w - lr * b
        else:
            w = w - lr * g
        out.append(w.copy())
    return out


def adagrad(lr, init=0.1, eps=1e-7, inside=True, rnd=lambda v: v, **_):
    w, a, out = W0.copy(), np.full(4, init), []
    for g in G:
        a = a + g * g
        w = w - rnd(lr) * g / (np.sqrt(a + eps) if inside else np.sqrt(a) + eps)
        out.append(w.copy())
    return out


def adam(lr, b1=0.9, b2=0.999, eps=1e-7, rnd_lr=lambda v: v, rnd_b=lambda v: v, rnd_bc=lambda v: v,
         torch_form=False, **_):
    w, m, v, out = W0.copy(), np.zeros(4), np.zeros(4), []
    for t, g in enumerate(G, 1):
        if torch_form:
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
            w = w - (lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + eps)
        else:
            m = m + (g - m) * (1 - rnd_b(b1))
            v = v + (g * g - v) * (1 - rnd_b(b2))
            alpha = rnd_lr(lr) * np.sqrt(1 - rnd_bc(b2) ** t) / (1 - rnd_bc(b1) ** t)
            w = w - alpha * m / (np.sqrt(v) + eps)
        out.append(w.copy())
    return out


def rel(a, b):
    return max(float(np.max(np.abs(x - y) / np.max(np.abs(y)))) for x, y in zip(a, b))


def run_keras(make, flavour):
    import tensorflow as tf
    res = {}
    for name, ctor, cands in [
        ("sgd", lambda: make("SGD", learning_rate=0.05),
         {"exact": sgd(0.05), "lr f32": sgd(0.05, rnd=f32)}),
        ("momentum", lambda: make("SGD", learning_rate=0.05, momentum=0.9),
         {"exact": sgd(0.05, 0.9), "momentum f32": sgd(0.05, 0.9, rnd=lambda v: f32(v) if v == 0.9 else v),
          "lr and momentum f32": sgd(0.05, 0.9, rnd=f32)}),
        ("adagrad", lambda: make("Adagrad", learning_rate=0.05),
         {"sqrt(a + eps)": adagrad(0.05), "sqrt(a) + eps": adagrad(0.05, inside=False),
          "sqrt(a) + eps, lr f32": adagrad(0.05, inside=False, rnd=f32),
          "sqrt(a + eps), lr f32": adagrad(0.05, rnd=f32),
          "sqrt(a + eps), initial accumulator f32": adagrad(0.05, init=f32(0.1)),
          "sqrt(a + eps), eps f32": adagrad(0.05, eps=f32(1e-7)),
          "sqrt(a + eps), init and eps f32": adagrad(0.05, init=f32(0.1), eps=f32(1e-7))}),
        ("adam", lambda: make("Adam", learning_rate=0.01),
         {"exact": adam(0.01), "betas f32 in bias correction": adam(0.01, rnd_bc=f32),
          "betas f32 everywhere": adam(0.01, rnd_b=f32, rnd_bc=f32),
          "lr and betas f32": adam(0.01, rnd_lr=f32, rnd_b=f32, rnd_bc=f32)}),
    ]:
        var = tf.Variable(W0.copy(), dtype=tf.float64)
        opt = ctor()
        got = []
        for g in G:
            opt.apply_gradients([(tf.constant(g), var)])
            got.append(var.numpy().copy())
        res[name] = {k: rel(got, v) for k, v in cands.items()}
    return {flavour: res}


def main():
    if "--torch" in sys.argv:
        import torch
        res = {}
        for name, ctor, cands in [
            ("sgd", lambda p: torch.optim.SGD(p, lr=0.05), {"exact": torch_sgd(0.05)}),
            ("momentum", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
             {"b = mom*b + g; w -= lr*b": torch_sgd(0.05, 0.9)}),
            ("adagrad", lambda p: torch.optim.Adagrad(p, lr=0.05),
             {"sqrt(a) + eps, init 0, eps 1e-10": adagrad(0.05, init=0.0, eps=1e-10, inside=False)}),
            ("adam", lambda p: torch.optim.Adam(p, lr=0.01),
             {"torch form, eps 1e-8": adam(0.01, eps=1e-8, torch_form=True)}),
        ]:
            w = torch.nn.Parameter(torch.tensor(W0.copy(), dtype=torch.float64))
            opt = ctor([w])
            got = []
            for g in G:
                opt.zero_grad()
                w.grad = torch.tensor(g)
                opt.step()
                got.append(w.detach().numpy().copy())
            res[name] = {k: rel(got, v) for k, v in cands.items()}
        out = {"torch": res}
    else:
        if os.environ.get("TF_USE_LEGACY_KERAS"):
            import tf_keras as K
            K.backend.set_floatx("float64")
            out = run_keras(lambda c, **kw: getattr(K.optimizers, c)(**kw), "tf_keras keras")
            out.update(run_keras(lambda c, **kw: getattr(K.optimizers.legacy, c)(**kw), "tf_keras keras_legacy"))
        else:
            import keras as K
            K.config.set_floatx("float64")
            out = run_keras(lambda c, **kw: getattr(K.optimizers, c)(**kw), "keras3 keras")
    for fl, res in out.items():
        for name, cands in res.items():
            print(f"{fl:24s} {name:9s} " + "; ".join(f"{k}: {v:.1e}" for k, v in cands.items()))


if __name__ == "__main__":
    main()
