"""The Python examples of the README and of docs/ run as written (so they cannot drift from the code).

Every README block runs on its own, in a fresh namespace (a reader copies one block).
In docs/, the complete examples (blocks that import what they use) run; the other blocks
there are signature listings and fragments, not programs. A docs example that imports an optional
package which is not installed (PyTorch in docs/verifying_backends.md, ONNX Runtime, Dask, matplotlib
through npctr.plot) is skipped.
"""
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
DOC_EXAMPLES = [(page.name, block)
                for page in sorted((ROOT / "docs").glob("*.md"))
                for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
                if re.search(r"^(import|from) \S+", block, flags=re.M)]


# optional packages a docs example may import; any other missing import is a failure, not a skip
OPTIONAL_PACKAGES = {"torch", "onnx", "onnxruntime", "dask", "distributed", "pyarrow", "matplotlib"}
# npctr modules that need an optional package
NPCTR_EXTRAS = {"npctr.plot": "matplotlib"}


def missing_optional_packages(block):
    """The optional packages the block imports (at the start of a line) that are not installed."""
    modules = set(re.findall(r"^(?:import|from) ([\w.]+)", block, flags=re.M))
    packages = ({m.split(".")[0] for m in modules} & OPTIONAL_PACKAGES) | \
        {NPCTR_EXTRAS[m] for m in modules if m in NPCTR_EXTRAS}
    return sorted(p for p in packages if importlib.util.find_spec(p) is None)


def test_there_are_examples():
    assert len(README_BLOCKS) >= 3
    assert {"training.md", "gradient_checking.md"} <= {name for name, _ in DOC_EXAMPLES}


@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)            # examples may write files (model.save)
    exec(compile(README_BLOCKS[index], f"README.md python block {index}", "exec"), {})


@pytest.mark.parametrize("name,block", DOC_EXAMPLES, ids=[n for n, _ in DOC_EXAMPLES])
def test_docs_example_runs(name, block, tmp_path, monkeypatch):
    missing = missing_optional_packages(block)
    if missing:
        pytest.skip(f"docs/{name} example needs {missing}, not installed")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, f"docs/{name} example", "exec"), {})
