"""Record tf.keras 2 ``save_weights("x.weights.h5")`` files of DeepCTR DINs for tests/test_interop_profiles.py.

    TF_USE_LEGACY_KERAS=1 /work/refenv/bin/python tools/record_keras_weights_files.py

tf.keras 2 writes a ``.weights.h5`` in the v3 layout and names a model's top-level groups by class
(``embedding``, ``embedding_1``, ...), not by layer name. Two DINs (float64, seeded weights):
``din_tables.weights.h5`` (tables of shapes (100, 4) and (5, 4): told apart by shape) and
``din_same_shapes.weights.h5`` (two (6, 4) tables: cannot be). ``din_tables.npz`` holds inputs ``x/<name>``
and the inference output ``out`` of the first.
"""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tf_keras as K  # noqa: E402
from deepctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat  # noqa: E402
from deepctr.models import DIN  # noqa: E402

import fw_common as C  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "keras_files")


def columns(item_vocab, cate_vocab):
    hist = [VarLenSparseFeat(SparseFeat(f"hist_{n}", v, 4, embedding_name=n), maxlen=5, length_name="seq_length")
            for n, v in (("item_id", item_vocab), ("cate_id", cate_vocab))]
    return [SparseFeat("item_id", item_vocab, 4), SparseFeat("cate_id", cate_vocab, 4),
            DenseFeat("pay_score", 1, dtype="float64")] + hist


def record(name, item_vocab, cate_vocab, seed):
    K.backend.clear_session()
    K.backend.set_floatx("float64")
    model = DIN(columns(item_vocab, cate_vocab), ["item_id", "cate_id"], dnn_hidden_units=(8, 4),
                att_hidden_size=(8, 4), att_activation="sigmoid", dnn_use_bn=True)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in v.name else 0.5 * rng.normal(size=w.shape)
                       for v, w in zip(model.weights, model.get_weights())])
    model.save_weights(os.path.join(OUT, f"{name}.weights.h5"))
    return model


def main():
    os.makedirs(OUT, exist_ok=True)
    model = record("din_tables", 100, 5, 0)
    x, _ = C.make_inputs(16, 0, "float64")
    x = {k: (v % 5 if k in ("cate_id", "hist_cate_id") else v) for k, v in x.items()}
    np.savez(os.path.join(OUT, "din_tables.npz"), out=model(x, training=False).numpy(),
             **{f"x/{k}": v for k, v in x.items()})
    record("din_same_shapes", 6, 6, 1)
    print("wrote", sorted(os.listdir(OUT)), "tf_keras", K.__version__)


if __name__ == "__main__":
    main()
