"""``python -m npctr demo``: see ``npctr.demo``."""
import sys

from .demo import main

USAGE = "usage: python -m npctr demo [--help] [--samples N] [--epochs N] ..."

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "demo":
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[2:]))
