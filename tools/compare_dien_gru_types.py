"""Choose ``python -m npctr demo --model dien``'s settings on a selection split: DIEN's four gru_types.

    python tools/compare_dien_gru_types.py                     # the demo's data, 8 epochs (~10 min on 2 cores)
    python tools/compare_dien_gru_types.py --seeds 2024 7 11   # also two other data draws (~30 min)
    python tools/compare_dien_gru_types.py --samples 100000 --epochs 6 --models AUGRU DIN DNN   # more data

Draws the demo's data exactly as the demo does (``npctr.demo.load_dien_data``: ``make_dien_data``
without the user id) and **never looks at the demo's held-out 20%**: of the demo's training
impressions, the first 75% train and the last 25% are the *selection* split on which every choice
(gru_type, epochs, data size) is made. The demo then reports its own held-out split once.

Trained, each with the demo's optimizer (Adam 0.003, batch 256), output DNN (128, 64) and model seed:

- DIEN with ``gru_type`` GRU, AIGRU, AGRU and AUGRU, each with ``use_negsampling=True`` (the
  auxiliary loss, ``alpha=1``), and AUGRU without it (what the auxiliary loss adds);
- DIN (attention (80, 40) with Dice) and the mean-pooling ``DNNModel``, without the negative histories.

Prints, per model and data seed, the selection AUC after every epoch (``fit``'s ``val_auc``),
the best epoch, the log loss after the last epoch and the training time; then the mean over the
seeds after each epoch. Deterministic: the same command prints the same AUCs (times vary).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from npctr import demo  # noqa: E402
from npctr.models import DIEN  # noqa: E402
from npctr.training.metrics import log_loss  # noqa: E402
from npctr.training.optimizers import Adam  # noqa: E402

#: (gru_type, use_negsampling) of the DIENs compared
DIENS = (("GRU", True), ("AIGRU", True), ("AGRU", True), ("AUGRU", True), ("AUGRU", False))


def selection_split(train, fraction=0.75):
    """The demo's training split cut in two: (fit on, select on)."""
    x, y = train
    n = int(fraction * len(y))
    return ({k: v[:n] for k, v in x.items()}, y[:n]), ({k: v[n:] for k, v in x.items()}, y[n:])


def models_to_compare(columns, history, only=None):
    """name -> (model, uses the negative histories)."""
    out = {}
    for gru_type, negatives in DIENS:
        name = demo.dien_name(gru_type, negatives)
        if only is None or name in only or gru_type in only:
            cols = columns if negatives else demo.bag_inputs({}, columns)[1]
            dien = dict(demo.DIEN_ONLY, gru_type=gru_type, use_negsampling=negatives)
            out[name] = (DIEN(cols, history, **demo.MODEL, **dien), negatives)
    bag = demo.dien_models(columns, history)
    for name in (demo.DIN_NAME, demo.DNN_NAME):
        if only is None or name in only or name.split()[0] in only:
            out[name] = (bag[name], False)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=demo.DEFAULTS["dien"]["n_samples"],
                        help="the demo's --samples (its training 80%% is split 75/25)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2024], help="data seeds (the demo's: 2024)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="only these (gru_types, DIN, DNN or full names); default: all")
    args = parser.parse_args(argv)

    curves = {}
    for seed in args.seeds:
        train, _, columns, history, _ = demo.load_dien_data(args.samples, seed)    # the held-out 20%: unused
        fit_on, select_on = selection_split(train)
        print(f"\ndata seed {seed}: {len(fit_on[1])} impressions to fit, {len(select_on[1])} to select on "
              f"(the demo's held-out {args.samples - len(train[1])} are not used)", flush=True)
        print(f"{'model':34s} " + " ".join(f"{'ep' + str(e + 1):>6s}" for e in range(args.epochs))
              + f" {'best':>5s} {'logloss':>8s} {'time':>6s}")
        for name, (model, negatives) in models_to_compare(columns, history, args.models).items():
            data = [(x if negatives else demo.bag_inputs(x, columns)[0], y) for x, y in (fit_on, select_on)]
            model.compile(Adam(0.003), "binary_crossentropy", metrics=["auc"])
            start = time.perf_counter()
            h = model.fit(*data[0], batch_size=256, epochs=args.epochs, verbose=0, validation_data=data[1])
            seconds = time.perf_counter() - start
            auc = np.array(h.history["val_auc"])
            loss = log_loss(data[1][1], model.predict(data[1][0], batch_size=4096))
            curves.setdefault(name, []).append(auc)
            print(f"{name:34s} " + " ".join(f"{a:6.4f}" for a in auc)
                  + f" {int(np.argmax(auc)) + 1:5d} {loss:8.4f} {seconds:5.0f}s", flush=True)
    if len(args.seeds) > 1:
        print(f"\nmean selection AUC over data seeds {args.seeds}")
        for name, runs in curves.items():
            mean = np.mean(runs, axis=0)
            print(f"{name:34s} " + " ".join(f"{a:6.4f}" for a in mean) + f" {int(np.argmax(mean)) + 1:5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
