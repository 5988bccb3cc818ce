"""How well each kind of score predicts make_dien_data's clicks (the numbers in docs/datasets.md).

    python tools/measure_dien_data.py                 # 100,000 impressions, 4 models x 5 epochs (~5 min)
    python tools/measure_dien_data.py --no-train      # only the computed scores (seconds)

Draws ``make_dien_data(n, seed=2024, negatives=False, return_truth=True)``, holds out the last 20%,
and reports the validation AUC of:

- the oracle: ``click_probability``, which knows the interest active at the impression;
- scores computed from the inputs alone, no training: the candidate's category matched with the
  last 3 behaviours (the recent end of the history: order), and with the whole history (a bag: the
  fraction of behaviours in the candidate's category, and whether any is);
- DIN (attention over the bag of behaviours) and the mean-pooling DNN baseline, trained as
  ``python -m npctr demo`` trains them (Adam 0.003, batch 256, DNN (128, 64), attention (80, 40)
  with Dice, model seed 1024), without the user id as the demo (``--user`` to add it);
- the same two models given only the last 5 behaviours (the history cut to its recent end): an
  order-aware model made by hand, which shows how much the order is worth at this sample size.

Deterministic: the same command prints the same AUCs (times vary).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from npctr.datasets import make_dien_data  # noqa: E402
from npctr.feature_column import VarLenSparseFeat  # noqa: E402
from npctr.models import DIN, DNNModel  # noqa: E402
from npctr.training.metrics import roc_auc  # noqa: E402
from npctr.training.optimizers import Adam  # noqa: E402

MODEL = dict(dnn_hidden_units=(128, 64), l2_reg_embedding=1e-6, seed=1024)
DIN_ONLY = dict(att_hidden_size=(80, 40), att_activation="dice")


def computed_scores(x, truth, recent=3):
    """name -> score per impression, from the inputs alone (and the oracle from the truth)."""
    length = x["seq_length"][:, 0]
    match = x["hist_cate_id"] == x["cate_id"][:, None]           # padding (0) never matches a category
    steps = np.arange(match.shape[1])[None, :]
    return {
        "oracle (knows the interest active now)": truth["click_probability"],
        f"candidate's category in the last {recent} behaviours (count)":
            (match & (steps >= (length - recent)[:, None])).sum(axis=1).astype(float),
        "candidate's category in the history (fraction)": match.sum(axis=1) / length,
        "candidate's category in the history (any)": match.any(axis=1).astype(float),
    }


def last_behaviours(x, columns, k):
    """The inputs and columns with each history cut to its last ``k`` behaviours (left-aligned)."""
    length = x["seq_length"][:, 0]
    start = np.maximum(length - k, 0)
    steps = np.minimum(start[:, None] + np.arange(k), x["hist_cate_id"].shape[1] - 1)
    valid = np.arange(k)[None, :] < (length - start)[:, None]
    x = dict(x, seq_length=(length - start).reshape(-1, 1).astype(np.int32))
    for name in ("hist_item_id", "hist_cate_id"):
        x[name] = np.where(valid, np.take_along_axis(x[name], steps, axis=1), 0).astype(np.int32)
    columns = [VarLenSparseFeat(fc.sparsefeat, k, length_name=fc.length_name)
               if isinstance(fc, VarLenSparseFeat) else fc for fc in columns]
    return x, columns


def train(model, train_xy, valid_xy, epochs, batch_size, learning_rate):
    model.compile(Adam(learning_rate), "binary_crossentropy")
    start = time.perf_counter()
    model.fit(*train_xy, batch_size=batch_size, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    return roc_auc(valid_xy[1], model.predict(valid_xy[0], batch_size=4096)), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--recent", type=int, default=5, help="behaviours kept by the order-aware models")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=0.003)
    parser.add_argument("--seed", type=int, default=2024, help="data seed")
    parser.add_argument("--user", choices=("with", "without", "both"), default="without",
                        help="train with the user id as a feature, without it (default, as the demo), or both")
    parser.add_argument("--no-train", action="store_true", help="only the computed scores")
    args = parser.parse_args(argv)

    x, y, columns, history, truth = make_dien_data(args.samples, negatives=False, return_truth=True,
                                                   seed=args.seed)
    n_train = int(0.8 * args.samples)
    valid = slice(n_train, None)
    print(f"make_dien_data({args.samples}, seed={args.seed}): click rate {y.mean():.3f}; "
          f"validation AUC on the last {args.samples - n_train} impressions")
    for name, score in computed_scores(x, truth).items():
        print(f"  {name:58s} {roc_auc(y[valid], score[valid]):.4f}")
    if args.no_train:
        return 0
    for with_user in {"with": [True], "without": [False], "both": [True, False]}[args.user]:
        cols = [fc for fc in columns if with_user or fc.name != "user"]
        xs = {k: v for k, v in x.items() if with_user or k != "user"}
        x_recent, cols_recent = last_behaviours(xs, cols, args.recent)
        runs = (("DIN (attention over the bag)", DIN, xs, cols),
                ("DNN baseline (mean-pooled history)", DNNModel, xs, cols),
                (f"DIN on the last {args.recent} behaviours", DIN, x_recent, cols_recent),
                (f"DNN on the last {args.recent} behaviours", DNNModel, x_recent, cols_recent))
        for name, cls, inputs, fcs in runs:
            model = DIN(fcs, history, **MODEL, **DIN_ONLY) if cls is DIN else DNNModel(fcs, **MODEL)
            train_xy = ({k: v[:n_train] for k, v in inputs.items()}, y[:n_train])
            valid_xy = ({k: v[n_train:] for k, v in inputs.items()}, y[n_train:])
            auc, seconds = train(model, train_xy, valid_xy, args.epochs, args.batch_size, args.learning_rate)
            label = f"{name}, {'with' if with_user else 'without'} user id"
            print(f"  {label:58s} {auc:.4f}   ({seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
