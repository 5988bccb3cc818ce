#!/usr/bin/env python
"""Record tf.keras 2 (tf_keras) optimizer trajectories for tests/test_optimizers_extra.py.

Run with the reference environment (TF_USE_LEGACY_KERAS=1 /work/refenv/bin/python
tools/record_optimizers.py), with floatx float64 (as tools/record_tf.py). For each case: a float64 variable (3, 4) and 4 seeded gradients,
dense or IndexedSlices (rows 0 and 2), applied one step at a time; the weights after every step
are written to tests/data/optimizers/tf_keras.npz (keys ``<case>/w0``, ``<case>/g``,
``<case>/rows``, ``<case>/w``).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import numpy as np
import tensorflow as tf
import tf_keras

CASES = {
    "rmsprop": lambda: tf_keras.optimizers.RMSprop(0.01),
    "rmsprop_centered_momentum": lambda: tf_keras.optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, centered=True),
    "ftrl": lambda: tf_keras.optimizers.Ftrl(0.05),
    "ftrl_regularized": lambda: tf_keras.optimizers.Ftrl(0.05, learning_rate_power=-0.7, l1_regularization_strength=0.01,
                                                         l2_regularization_strength=0.02, beta=0.3,
                                                         l2_shrinkage_regularization_strength=0.01),
    "adamw": lambda: tf_keras.optimizers.AdamW(0.01, weight_decay=0.1),
    "adam_clipnorm": lambda: tf_keras.optimizers.Adam(0.01, clipnorm=0.5),
    "sgd_clipvalue": lambda: tf_keras.optimizers.SGD(0.1, clipvalue=0.3),
    # appended (issue 19): the legacy optimizer_v2 RMSprop, whose update without momentum is
    # lr g / (sqrt(ms) + eps) (with momentum, the fused kernel's lr g / sqrt(ms + eps)); new cases go
    # last so that the seeded draws of the cases above stay the same
    "rmsprop_legacy": lambda: tf_keras.optimizers.legacy.RMSprop(0.01),
    "rmsprop_legacy_momentum": lambda: tf_keras.optimizers.legacy.RMSprop(0.01, momentum=0.5),
    "rmsprop_legacy_centered": lambda: tf_keras.optimizers.legacy.RMSprop(0.01, rho=0.8, centered=True),
    "rmsprop_legacy_centered_momentum": lambda: tf_keras.optimizers.legacy.RMSprop(0.01, rho=0.8, momentum=0.5,
                                                                                   centered=True),
}


def main():
    tf_keras.backend.set_floatx("float64")     # float64 training, as tools/record_tf.py records it
    rng = np.random.default_rng(7)
    out = {}
    for name, make in CASES.items():
        for sparse in (False, True):
            key = f"{name}{'_sparse' if sparse else ''}"
            w0 = rng.normal(size=(3, 4))
            grads = rng.normal(size=(4, 3, 4))
            rows = np.array([0, 2])
            var = tf.Variable(w0, dtype=tf.float64)
            opt = make()
            traj = []
            for g in grads:
                if sparse:
                    grad = tf.IndexedSlices(tf.constant(g[rows]), tf.constant(rows), tf.constant([3, 4]))
                else:
                    grad = tf.constant(g)
                opt.apply_gradients([(grad, var)])
                traj.append(var.numpy().copy())
            out.update({f"{key}/w0": w0, f"{key}/g": grads, f"{key}/rows": rows if sparse else np.zeros(0, int),
                        f"{key}/w": np.array(traj)})
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "optimizers", "tf_keras.npz")
    np.savez(path, **out)
    print("wrote", path, f"tf {tf.__version__}, tf_keras {tf_keras.__version__}")


if __name__ == "__main__":
    main()
