"""Record every framework reference in tests/data/frameworks: runs each recorder in its own process.

    /work/refenv/bin/python tools/record_frameworks.py --out tests/data/frameworks [--only din|train|layer|dien]

``--only dien`` runs the DIEN recorders (tools/record_dien_tf.py with tf.keras 2, tools/record_dien_torch.py)
into ``<out>/dien``; ``all`` (the default) does not include them.

tf.keras 2 and Keras 3 need separate processes (TF_USE_LEGACY_KERAS is read when TensorFlow is imported).
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--only", choices=["din", "train", "layer", "dien", "all"], default="all")
    p.add_argument("--optimizers", default=None, help="train cases of these optimizers only (comma-separated)")
    a = p.parse_args(argv)
    if a.only == "dien":
        out = os.path.join(a.out, "dien")
        subprocess.run([sys.executable, os.path.join(HERE, "record_dien_tf.py"), "--out", out],
                       env=dict(os.environ, TF_USE_LEGACY_KERAS="1"), check=True)
        subprocess.run([sys.executable, os.path.join(HERE, "record_dien_torch.py"), "--out", out], check=True)
        return
    runs = []
    if a.only != "layer":
        tf_only = a.only
        runs.append(({"TF_USE_LEGACY_KERAS": "1"}, "record_tf.py", tf_only))
        runs.append(({"TF_USE_LEGACY_KERAS": ""}, "record_tf.py", tf_only))
    runs.append(({}, "record_torch.py", a.only))
    for env, script, only in runs:
        e = dict(os.environ, **env)
        if env.get("TF_USE_LEGACY_KERAS") == "":
            e.pop("TF_USE_LEGACY_KERAS")
        extra = ["--optimizers", a.optimizers] if a.optimizers else []
        subprocess.run([sys.executable, os.path.join(HERE, script), "--out", a.out, "--only", only] + extra,
                       env=e, check=True)


if __name__ == "__main__":
    main()
