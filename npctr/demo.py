"""The README's main job: train DIN on synthetic clicks and compare it with a mean-pooling DNN.

``python -m npctr demo`` draws a seeded click data set in DeepCTR's DIN input
format (``npctr.datasets.make_din_data``), trains ``DIN`` and the ``DNNModel``
baseline (the same graph with the behaviour history mean-pooled instead of
attended to) with the same optimizer, batch size and epochs, and prints the
validation AUC and log loss of both. Every update comes from the hand-written
backward passes.

The clicks depend on whether the candidate's category (or item) occurs
*somewhere* in the user's history. Attention can single out the matching
behaviour; a mean over 1 to 30 behaviours dilutes it, which is the gap DIN was
designed to close.
"""
import argparse
import os
import sys
import time


from .datasets import make_din_data
from .models import DIN, DNNModel
from .training.metrics import roc_auc, log_loss
from .training.optimizers import Adam

# The data set: many users with few impressions each, so that a user id says little and the
# behaviour history is what carries the user's interests (the demo leaves the user id out: with
# ~2 impressions per user both models would only memorise it).
DATA = dict(n_users=20000, n_items=500, n_cates=100, maxlen=30, n_interests=(3, 8))
MODEL = dict(dnn_hidden_units=(128, 64), l2_reg_embedding=1e-6, seed=1024)
DIN_ONLY = dict(att_hidden_size=(80, 40), att_activation="dice")


#: the smallest --samples: the last 20% are held out, and both splits need clicks and non-clicks
MIN_SAMPLES = 50


def load_data(n_samples, seed):
    """Synthetic impressions without the user id; returns train and validation splits.

    Raises ``ValueError`` if ``n_samples`` is too small to give both splits clicks and
    non-clicks (validation AUC is undefined otherwise).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < MIN_SAMPLES:
        raise ValueError(f"n_samples (--samples) must be an integer >= {MIN_SAMPLES}: the last 20% are "
                         f"held out for validation, got {n_samples!r}")
    x, y, columns, history = make_din_data(n_samples, seed=seed, **DATA)
    columns = [fc for fc in columns if fc.name != "user"]
    x = {k: v for k, v in x.items() if k != "user"}
    n_train = int(0.8 * n_samples)
    train = ({k: v[:n_train] for k, v in x.items()}, y[:n_train])
    valid = ({k: v[n_train:] for k, v in x.items()}, y[n_train:])
    for name, (_, labels) in (("training", train), ("validation", valid)):
        if labels.min() == labels.max():
            raise ValueError(f"with n_samples (--samples) = {n_samples} and seed {seed}, the {name} split "
                             f"({len(labels)} impressions) has only {'clicks' if labels[0] else 'non-clicks'}; "
                             "use more samples")
    return train, valid, columns, history


def run(n_samples=40000, epochs=8, batch_size=256, learning_rate=0.003, seed=2024, verbose=2,
        out=sys.stdout, plot_dir=None):
    """Train both models; return ``{model name: {'auc', 'logloss', 'seconds'}}``.

    ``plot_dir``: also write the learning curves and attention figures there (``npctr.plot``).
    """
    if plot_dir is not None:
        from .plot import require_matplotlib, demo_figures
        require_matplotlib()                       # fail before training, not after
    (x_train, y_train), (x_valid, y_valid), columns, history = load_data(n_samples, seed)
    print(f"npctr demo: {len(y_train)} training and {len(y_valid)} validation impressions, "
          f"click rate {y_train.mean():.3f}, histories of 1-{DATA['maxlen']} behaviours", file=out)
    models = {
        "DIN (attention)": DIN(columns, history, **MODEL, **DIN_ONLY),
        "DNN (mean-pooled history)": DNNModel(columns, **MODEL),
    }
    results, histories = {}, {}
    for name, model in models.items():
        print(f"\n== {name}", file=out)
        model.compile(Adam(learning_rate), "binary_crossentropy", metrics=["auc"])
        start = time.perf_counter()
        stdout, sys.stdout = sys.stdout, out       # the trainer prints to sys.stdout
        try:
            histories[name] = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs,
                                        verbose=verbose, validation_data=(x_valid, y_valid))
        finally:
            sys.stdout = stdout
        seconds = time.perf_counter() - start
        p = model.predict(x_valid, batch_size=4096)
        results[name] = {"auc": roc_auc(y_valid, p), "logloss": log_loss(y_valid, p), "seconds": seconds}
    print("\nvalidation results (held-out impressions)", file=out)
    print(f"{'model':28s} {'AUC':>8s} {'log loss':>9s} {'train time':>11s}", file=out)
    for name, r in results.items():
        print(f"{name:28s} {r['auc']:8.4f} {r['logloss']:9.4f} {r['seconds']:10.1f}s", file=out)
    din, base = results["DIN (attention)"], results["DNN (mean-pooled history)"]
    print(f"\nDIN - baseline: AUC {din['auc'] - base['auc']:+.4f}, "
          f"log loss {din['logloss'] - base['logloss']:+.4f}", file=out)
    if plot_dir is not None:
        demo_figures(models["DIN (attention)"], histories, x_valid, plot_dir, out=out)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m npctr demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40000, help="impressions to generate (default 40000)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=0.003, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=2024, help="data seed (models are seeded with 1024)")
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2),
                        help="0 silent, 1 progress bar, 2 one line per epoch (default)")
    parser.add_argument("--plot", metavar="DIR", default=None,
                        help="also write learning curves and attention figures (PNG) into DIR (needs matplotlib)")
    args = parser.parse_args(argv)
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be > 0, got {args.learning_rate}")
    try:
        load_data(args.samples, args.seed)      # refuse sizes too small before any training
    except ValueError as exc:
        parser.error(str(exc))
    if args.plot is not None:                   # fail before training, in one line
        from .plot import require_matplotlib
        try:
            require_matplotlib()
        except ImportError as exc:
            parser.error(f"--plot: {exc}")
        if os.path.exists(args.plot) and not os.path.isdir(args.plot):
            parser.error(f"--plot {args.plot!r} exists and is not a directory")
    try:
        run(args.samples, args.epochs, args.batch_size, args.learning_rate, args.seed, args.verbose,
            plot_dir=args.plot)
    except OSError as exc:                      # e.g. the figures' directory cannot be written
        print(f"npctr demo: error: {exc}", file=sys.stderr)
        return 1
    return 0
