"""Every ```python block of README.md and docs/*.md runs, as written, as a script of its own.

A reader copies one block into a file and runs it, so each block is written to a fresh file in a
temporary directory and run by a new Python process (`python example.py`, the worktree first on
PYTHONPATH, the temporary directory as the working directory): a block that forgets an import, or
that needs `if __name__ == "__main__":` (Dask's worker processes re-import the script), fails
here as it would for the reader. Signature listings are ```text blocks, not ```python.

The only skips: a block that imports an optional package which is not installed (PyTorch, ONNX
Runtime, Dask, matplotlib through npctr.plot, TensorFlow/DeepCTR, ...).
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)


def python_blocks():
    """(id, code) for every ```python block, the id naming the file and the block's first line."""
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text[:match.start()].count("\n") + 1
            blocks.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return blocks


BLOCKS = python_blocks()

# optional packages a docs example may import; any other missing import is a failure, not a skip
OPTIONAL_PACKAGES = {"torch", "onnx", "onnxruntime", "dask", "distributed", "pyarrow", "pandas", "matplotlib",
                     "h5py", "tensorflow", "tf_keras", "keras", "deepctr", "deepctr_torch"}
# npctr modules that need an optional package
NPCTR_EXTRAS = {"npctr.plot": "matplotlib", "npctr.dask": "dask"}


def missing_optional_packages(block):
    """The optional packages the block imports (at the start of a line) that are not installed."""
    modules = set(re.findall(r"^\s*(?:import|from) ([\w.]+)", block, flags=re.M))
    packages = ({m.split(".")[0] for m in modules} & OPTIONAL_PACKAGES) | \
        {NPCTR_EXTRAS[m] for m in modules if m in NPCTR_EXTRAS}
    return sorted(p for p in packages if importlib.util.find_spec(p) is None)


def test_there_are_examples():
    names = {name.split(":")[0] for name, _ in BLOCKS}
    assert sum(name.startswith("README.md") for name, _ in BLOCKS) >= 3
    assert {"docs/training.md", "docs/gradient_checking.md", "docs/din.md", "docs/embedding.md",
            "docs/sequence_pooling.md", "docs/batch_normalization.md"} <= names


def test_no_python_block_is_a_bare_signature():
    """A block that only lists a signature (``Name(arg=default, ...)``) is ```text, not ```python."""
    for name, block in BLOCKS:
        code = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        assert not (code and re.match(r"^[A-Za-z_][\w.]*\(", code[0]) and not re.search(r"^(import|from) ", block, re.M)), \
            f"{name} looks like a signature listing: make it a ```text block"


@pytest.mark.parametrize("name,block", BLOCKS, ids=[name for name, _ in BLOCKS])
def test_example_runs_as_a_script(name, block, tmp_path):
    missing = missing_optional_packages(block)
    if missing:
        pytest.skip(f"{name} needs {missing}, not installed")
    script = tmp_path / "example.py"
    script.write_text(block)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"{name} failed as a script:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
