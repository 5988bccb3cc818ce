"""Regenerate the figures embedded in docs/ (docs/figures/*.png), seeded, from the repository root.

    python tools/make_figures.py              # everything: trains both demos' models (a few minutes)
    python tools/make_figures.py --no-demo    # the gradient-check, Dice and graph figures (seconds)
    python tools/make_figures.py --demo dien  # those and only DIEN's demo figures
    python tools/make_figures.py --graphs     # only the computational-graph figures (tools/graph_figures.py)

The demo figures are ``python -m npctr demo --plot docs/figures`` with the demo's defaults (data
seed 2024, model seed 1024): ``learning_curves.png``, ``attention.png``, ``attention_contrast.png``;
and ``python -m npctr demo --model dien --plot docs/figures``, also on its defaults:
``dien_learning_curves.png``, ``dien_attention.png``, ``dien_interest.png``.
The others: ``gradient_check.png`` (a Dice layer in training mode on a seeded batch),
``dien_gradient_check.png`` (DIEN's recurrent layers: an AUGRU ``DynamicGRU`` with lengths 0..T and
its backpropagation through time) and ``dice.png``; the computational graphs of the derivations ``bn_graph.png``, ``lau_graph.png`` and
``din_tables.png`` (``tools/graph_figures.py``). Needs matplotlib (``pip install npctr[plot]``).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from npctr import Dice, DynamicGRU, demo  # noqa: E402
import graph_figures  # noqa: E402  (tools/ is on sys.path when this file runs as a script)
from npctr.plot import plot_dice, plot_gradient_check, require_matplotlib  # noqa: E402


def gradient_check_inputs(seed=0):
    """A (16, 4) batch whose columns have different means and spreads (variances far from 0)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((16, 4)) * np.array([1.0, 2.0, 0.5, 1.5]) + np.array([0.5, -1.0, 2.0, 0.0])


def dien_gradient_check_inputs(seed=0):
    """An AUGRU's inputs: ``(6, 5, 4)`` behaviours, lengths 0..5 (one row each), attention scores in (0, 1)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((6, 5, 4)), np.array([[0], [1], [2], [3], [4], [5]]),
            rng.uniform(0.05, 0.95, (6, 5, 1))]


def shrink(path):
    """Rewrite a PNG with a 256-colour palette: a third of the size, no visible change for line art."""
    from PIL import Image
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures"), help="directory (default docs/figures)")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo's figures (no training)")
    parser.add_argument("--demo", choices=("both", "din", "dien"), default="both",
                        help="which demo's figures (default both: python -m npctr demo, and with --model dien)")
    parser.add_argument("--graphs", action="store_true", help="only the computational-graph figures")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = int(time.time())                  # whole seconds: coarse file-system clocks too
    plt = require_matplotlib()
    written = graph_figures.write_all(plt, out)
    print("wrote " + ", ".join(str(p) for p in written))
    if args.graphs:
        for path in written:
            shrink(path)
        return 0
    fig = plot_gradient_check(Dice(), gradient_check_inputs(), training=True, path=out / "gradient_check.png")
    plt.close(fig)
    fig = plot_gradient_check(DynamicGRU(4, "AUGRU", return_sequence=True, seed=7), dien_gradient_check_inputs(),
                              training=True, title="DynamicGRU (AUGRU): backpropagation through time, "
                              "lengths 0..T", path=out / "dien_gradient_check.png")
    plt.close(fig)
    plt.close(plot_dice(path=out / "dice.png"))
    print(f"wrote {out / 'gradient_check.png'}, {out / 'dien_gradient_check.png'} and {out / 'dice.png'}")
    if not args.no_demo:
        if args.demo in ("both", "din"):
            demo.main(["--plot", str(out)])
        if args.demo in ("both", "dien"):
            demo.main(["--model", "dien", "--plot", str(out)])
    for path in sorted(out.glob("*.png")):
        if path.stat().st_mtime >= started:      # only this run's: shrinking a shrunk PNG changes its bytes
            shrink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
