"""``python -m npctr COMMAND [...]``: the command-line entry point.

Each command lives in its own module, imported only when it is run (so ``python -m npctr demo``
never imports, say, pyarrow). A module listed here exposes ``main(argv) -> int``.

Every failure is one line on stderr and an exit status: 1 bad data (a damaged model file, a bad
row, a failed write), 2 bad usage (an unknown command or option, a missing file, a missing
optional dependency), 130 interrupted. Each command reports its own failures; an exception a
command did not expect is still one line here (``NPCTR_TRACEBACK=1`` shows the traceback).
``python -m npctr --version`` prints the version.
"""
import importlib
import os
import sys

from ._version import __version__

#: command name -> (module, one-line description)
COMMANDS = {
    "demo": ("npctr.demo", "train DIN (--model dien: DIEN, DIN) and a mean-pooling baseline on synthetic clicks"),
    "export-onnx": ("npctr.interop.onnx", "write a saved DIN/DNNModel as an ONNX graph (--check: run it in onnxruntime)"),
    "predict": ("npctr.serving.batch_predict", "score a .npz/.csv/.parquet file with a saved model, chunk by chunk"),
    "golden": ("npctr.interop.golden", "write reference numbers of a layer or model (.npz + JSON index)"),
    "compare": ("npctr.interop.compare", "normwise error of two golden files/folders; non-zero exit above --rtol"),
    "conformance": ("npctr.conformance.runner", "run a backend's adapter over drawn cases and judge its numbers"),
}


def usage():
    lines = ["usage: python -m npctr COMMAND [--help] [...]", "       python -m npctr --version", "", "commands:"]
    lines += [f"  {name:<12} {about}" for name, (_, about) in COMMANDS.items()]
    return "\n".join(lines)


def one_line(exc, limit=1000):
    """An exception as one line of at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    if argv[0] in ("-V", "--version"):
        print(f"npctr {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    command = argv[0]
    try:
        module = importlib.import_module(COMMANDS[command][0])
        return module.main(argv[1:])
    except KeyboardInterrupt:
        print(f"\nnpctr {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:          # what the command did not expect: still one line
        if os.environ.get("NPCTR_TRACEBACK"):
            raise
        print(f"npctr {command}: error: {type(exc).__name__}: {one_line(exc)} "
              "(NPCTR_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
