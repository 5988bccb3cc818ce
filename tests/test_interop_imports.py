"""``import npctr`` and the interop modules stay NumPy-only: h5py, torch, TensorFlow and Keras
are imported only inside the functions that read their files."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])

OPTIONAL = ["h5py", "torch", "tensorflow", "keras", "tf_keras", "onnx", "onnxruntime"]


def test_interop_imports_no_optional_extra():
    code = ("import sys, npctr, npctr.interop, npctr.interop.golden, npctr.interop.compare; "
            f"print([m for m in {OPTIONAL!r} if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
