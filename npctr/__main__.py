"""``python -m npctr COMMAND [...]``: the command-line entry point.

Each command lives in its own module, imported only when it is run (so ``python -m npctr demo``
never imports, say, pyarrow). A module listed here exposes ``main(argv) -> int``.
"""
import importlib
import sys

#: command name -> (module, one-line description)
COMMANDS = {
    "demo": ("npctr.demo", "train DIN and a mean-pooling baseline on synthetic clicks"),
    "export-onnx": ("npctr.interop.onnx", "write a saved DIN/DNNModel as an ONNX graph (--check: run it in onnxruntime)"),
    "predict": ("npctr.serving.batch_predict", "score a .npz/.csv/.parquet file with a saved model, chunk by chunk"),
    "golden": ("npctr.interop.golden", "write reference numbers of a layer or model (.npz + JSON index)"),
    "compare": ("npctr.interop.compare", "normwise error of two golden files/folders; non-zero exit above --rtol"),
    "conformance": ("npctr.conformance.runner", "run a backend's adapter over drawn cases and judge its numbers"),
}


def usage():
    lines = ["usage: python -m npctr COMMAND [--help] [...]", "", "commands:"]
    lines += [f"  {name:<12} {about}" for name, (_, about) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    if argv[0] not in COMMANDS:
        print(f"unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
