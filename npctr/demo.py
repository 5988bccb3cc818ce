"""The README's main job: train DIN (or DIEN) on synthetic clicks and compare it with a mean-pooling DNN.

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

``python -m npctr demo --model dien`` draws users whose interest drifts
(``npctr.datasets.make_dien_data``): the click depends on the interest active
*now*, which only the order of the behaviours reveals. It trains ``DIEN``
(AUGRU, with the auxiliary loss on sampled negatives) beside DIN and the
baseline, which see the same behaviours as a bag.
"""
import argparse
import os
import sys
import time


from .datasets import make_din_data, make_dien_data
from .models import DIEN, DIN, DNNModel
from .training.metrics import roc_auc, log_loss
from .training.optimizers import Adam

# The data set: many users with few impressions each, so that a user id says little and the
# behaviour history is what carries the user's interests (the demo leaves the user id out: with
# ~2 impressions per user both models would only memorise it).
DATA = dict(n_users=20000, n_items=500, n_cates=100, maxlen=30, n_interests=(3, 8))
MODEL = dict(dnn_hidden_units=(128, 64), l2_reg_embedding=1e-6, seed=1024)
DIN_ONLY = dict(att_hidden_size=(80, 40), att_activation="dice")


# --model dien: make_dien_data's defaults (1,000 users with 3-8 interests that drift, 1,000 items in
# 100 categories, histories of 1-30 behaviours), without the user id as above (and as
# tools/measure_dien_data.py, whose DIN and baseline numbers docs/datasets.md shows). DIEN takes DeepCTR's
# defaults but for gru_type, use_negsampling and the output DNN (DIN's above, so that the three
# models differ only in how they read the history); tools/compare_dien_gru_types.py measured the
# choices (docs/dien.md, section 10).
DIEN_DATA = dict(maxlen=30)
DIEN_ONLY = dict(gru_type="AUGRU", use_negsampling=True, alpha=1.0, att_hidden_units=(64, 16),
                 att_activation="dice")
#: the defaults of --samples and --epochs, by --model
DEFAULTS = {"din": dict(n_samples=40000, epochs=8), "dien": dict(n_samples=50000, epochs=5)}
#: the models' names in the printed table (and the keys of run's and run_dien's results)
DIN_NAME, DNN_NAME = "DIN (attention)", "DNN (mean-pooled history)"
ORACLE_NAME = "oracle"


#: the smallest --samples: the last 20% are held out, and both splits need clicks and non-clicks
MIN_SAMPLES = 50


def _check_samples(n_samples):
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < MIN_SAMPLES:
        raise ValueError(f"n_samples (--samples) must be an integer >= {MIN_SAMPLES}: the last 20% are "
                         f"held out for validation, got {n_samples!r}")


def _split(x, y, n_samples, seed):
    """The first 80% for training, the last 20% held out; both must hold clicks and non-clicks."""
    n_train = int(0.8 * n_samples)
    train = ({k: v[:n_train] for k, v in x.items()}, y[:n_train])
    valid = ({k: v[n_train:] for k, v in x.items()}, y[n_train:])
    for name, (_, labels) in (("training", train), ("validation", valid)):
        if labels.min() == labels.max():
            raise ValueError(f"with n_samples (--samples) = {n_samples} and seed {seed}, the {name} split "
                             f"({len(labels)} impressions) has only {'clicks' if labels[0] else 'non-clicks'}; "
                             "use more samples")
    return train, valid


def _without(x, columns, keep):
    """The inputs and columns of the features whose name ``keep(name)`` accepts."""
    return ({k: v for k, v in x.items() if keep(k)}, [fc for fc in columns if keep(fc.name)])


def load_data(n_samples, seed):
    """Synthetic impressions without the user id; returns train and validation splits.

    Raises ``ValueError`` if ``n_samples`` is too small to give both splits clicks and
    non-clicks (validation AUC is undefined otherwise).
    """
    _check_samples(n_samples)
    x, y, columns, history = make_din_data(n_samples, seed=seed, **DATA)
    x, columns = _without(x, columns, lambda name: name != "user")
    train, valid = _split(x, y, n_samples, seed)
    return train, valid, columns, history


def load_dien_data(n_samples, seed):
    """``make_dien_data`` impressions without the user id, with the negative histories.

    Returns ``train, valid, columns, history, truth``: the splits as :func:`load_data`'s
    (the last 20% held out), DIEN's columns (``neg_hist_*`` included; :func:`bag_inputs`
    drops them for DIN and the baseline) and the hidden truth of the held-out rows
    (``make_dien_data(return_truth=True)``'s, rows aligned with ``valid``).
    """
    _check_samples(n_samples)
    x, y, columns, history, truth = make_dien_data(n_samples, seed=seed, return_truth=True, **DIEN_DATA)
    x, columns = _without(x, columns, lambda name: name != "user")
    train, valid = _split(x, y, n_samples, seed)
    n_train = len(train[1])
    return train, valid, columns, history, {k: v[n_train:] for k, v in truth.items()}


def bag_inputs(x, columns):
    """DIEN's inputs and columns without the negative histories, for DIN and the baseline
    (which would otherwise pool them as ordinary sequence features)."""
    return _without(x, columns, lambda name: not name.startswith("neg_"))


def _train(name, model, train, valid, epochs, batch_size, learning_rate, verbose, out):
    """Fit ``model`` with Adam, printing to ``out``; returns its held-out scores and its History."""
    print(f"\n== {name}", file=out)
    model.compile(Adam(learning_rate), "binary_crossentropy", metrics=["auc"])
    start = time.perf_counter()
    stdout, sys.stdout = sys.stdout, out       # the trainer prints to sys.stdout
    try:
        history = model.fit(*train, batch_size=batch_size, epochs=epochs, verbose=verbose, validation_data=valid)
    finally:
        sys.stdout = stdout
    seconds = time.perf_counter() - start
    x_valid, y_valid = valid
    p = model.predict(x_valid, batch_size=4096)
    return {"auc": roc_auc(y_valid, p), "logloss": log_loss(y_valid, p), "seconds": seconds}, history


def _print_table(results, out):
    width = max(28, *(len(name) for name in results))
    print("\nvalidation results (held-out impressions)", file=out)
    print(f"{'model':{width}s} {'AUC':>8s} {'log loss':>9s} {'train time':>11s}", file=out)
    for name, r in results.items():
        print(f"{name:{width}s} {r['auc']:8.4f} {r['logloss']:9.4f} {r['seconds']:10.1f}s", file=out)


def _difference(label, a, b, out):
    print(f"{label}: AUC {a['auc'] - b['auc']:+.4f}, log loss {a['logloss'] - b['logloss']:+.4f}", file=out)


def run(n_samples=40000, epochs=8, batch_size=256, learning_rate=0.003, seed=2024, verbose=2,
        out=sys.stdout, plot_dir=None):
    """Train both models; return ``{model name: {'auc', 'logloss', 'seconds'}}``.

    ``plot_dir``: also write the learning curves and attention figures there (``npctr.plot``).
    """
    if plot_dir is not None:
        from .plot import require_matplotlib, demo_figures
        require_matplotlib()                       # fail before training, not after
    train, valid, columns, history = load_data(n_samples, seed)
    print(f"npctr demo: {len(train[1])} training and {len(valid[1])} validation impressions, "
          f"click rate {train[1].mean():.3f}, histories of 1-{DATA['maxlen']} behaviours", file=out)
    models = {
        DIN_NAME: DIN(columns, history, **MODEL, **DIN_ONLY),
        DNN_NAME: DNNModel(columns, **MODEL),
    }
    results, histories = {}, {}
    for name, model in models.items():
        results[name], histories[name] = _train(name, model, train, valid, epochs, batch_size, learning_rate,
                                                verbose, out)
    _print_table(results, out)
    print(file=out)
    _difference("DIN - baseline", results[DIN_NAME], results[DNN_NAME], out)
    if plot_dir is not None:
        demo_figures(models[DIN_NAME], histories, valid[0], plot_dir, out=out)
    return results


def dien_name(gru_type, use_negsampling=True):
    """DIEN's row of the table, e.g. ``'DIEN (AUGRU, auxiliary loss)'``."""
    return f"DIEN ({gru_type}{', auxiliary loss' if use_negsampling else ''})"


def dien_models(columns, history, gru_type=DIEN_ONLY["gru_type"], use_negsampling=True):
    """The demo's three models, by table name: DIEN on ``columns`` (with the negative
    histories), DIN and the mean-pooling baseline on the same columns without them."""
    bag_columns = bag_inputs({}, columns)[1]
    dien = dict(DIEN_ONLY, gru_type=gru_type, use_negsampling=use_negsampling)
    return {dien_name(gru_type, use_negsampling): DIEN(columns, history, **MODEL, **dien),
            DIN_NAME: DIN(bag_columns, history, **MODEL, **DIN_ONLY),
            DNN_NAME: DNNModel(bag_columns, **MODEL)}


def run_dien(n_samples=DEFAULTS["dien"]["n_samples"], epochs=DEFAULTS["dien"]["epochs"], batch_size=256,
             learning_rate=0.003, seed=2024, verbose=2, out=sys.stdout, plot_dir=None,
             gru_type=DIEN_ONLY["gru_type"]):
    """``--model dien``: DIEN, DIN and the baseline on ``make_dien_data``; returns
    ``{model name: {'auc', 'logloss', 'seconds'}}`` and, under ``ORACLE_NAME``, the held-out
    ``{'auc', 'logloss'}`` of the true click probability.

    ``plot_dir``: also write the learning curves and DIEN's attention and interest figures there.
    """
    if plot_dir is not None:
        from .plot import require_matplotlib, dien_demo_figures
        require_matplotlib()                       # fail before training, not after
    train, valid, columns, history, truth = load_dien_data(n_samples, seed)
    print(f"npctr demo --model dien: {len(train[1])} training and {len(valid[1])} validation impressions "
          f"(make_dien_data: interests that drift), click rate {train[1].mean():.3f}, histories of "
          f"1-{DIEN_DATA['maxlen']} behaviours", file=out)
    models = dien_models(columns, history, gru_type)
    results, histories = {}, {}
    for name, model in models.items():
        data = (train, valid) if isinstance(model, DIEN) else \
            tuple((bag_inputs(x, columns)[0], y) for x, y in (train, valid))
        results[name], histories[name] = _train(name, model, *data, epochs, batch_size, learning_rate,
                                                verbose, out)
    _print_table(results, out)
    oracle = {"auc": roc_auc(valid[1], truth["click_probability"]),
              "logloss": log_loss(valid[1], truth["click_probability"])}
    print(f"(the true click probability, which knows the interest active now: AUC {oracle['auc']:.4f}, "
          f"log loss {oracle['logloss']:.4f})\n", file=out)
    dien, din, base = results.values()
    _difference("DIEN - DIN", dien, din, out)
    _difference("DIEN - baseline", dien, base, out)
    if plot_dir is not None:
        dien_demo_figures(models, histories, valid[0], truth, plot_dir, out=out)
    return {**results, ORACLE_NAME: oracle}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m npctr demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("din", "dien"), default="din",
                        help="din (default): DIN and the baseline on make_din_data; dien: DIEN, DIN and the "
                             "baseline on make_dien_data (interests that drift)")
    parser.add_argument("--samples", type=int, default=None,
                        help="impressions to generate (default 40000; 50000 with --model dien)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 8; 5 with --model dien)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=0.003, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=2024, help="data seed (models are seeded with 1024)")
    parser.add_argument("--gru-type", choices=("GRU", "AIGRU", "AGRU", "AUGRU"), default=None,
                        help=f"DIEN's interest evolving layer (--model dien; default {DIEN_ONLY['gru_type']})")
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2),
                        help="0 silent, 1 progress bar, 2 one line per epoch (default)")
    parser.add_argument("--plot", metavar="DIR", default=None,
                        help="also write learning curves and attention figures (PNG) into DIR (with --model "
                             "dien also the evolving interest; needs matplotlib)")
    args = parser.parse_args(argv)
    defaults = DEFAULTS[args.model]
    samples = defaults["n_samples"] if args.samples is None else args.samples
    epochs = defaults["epochs"] if args.epochs is None else args.epochs
    for flag, value in (("--epochs", epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be > 0, got {args.learning_rate}")
    if args.model == "din" and args.gru_type is not None:
        parser.error("--gru-type needs --model dien")
    try:                                        # refuse sizes too small before any training
        (load_data if args.model == "din" else load_dien_data)(samples, args.seed)
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
        if args.model == "din":
            run(samples, epochs, args.batch_size, args.learning_rate, args.seed, args.verbose, plot_dir=args.plot)
        else:
            run_dien(samples, epochs, args.batch_size, args.learning_rate, args.seed, args.verbose,
                     plot_dir=args.plot, gru_type=args.gru_type or DIEN_ONLY["gru_type"])
    except OSError as exc:                      # e.g. the figures' directory cannot be written
        print(f"npctr demo: error: {exc}", file=sys.stderr)
        return 1
    return 0
