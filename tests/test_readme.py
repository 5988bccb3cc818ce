"""The README's Python examples run as written (so they cannot drift from the code)."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)            # examples may write files (model.save)
    namespace = {}
    for previous in BLOCKS[:index]:        # later blocks may use names from earlier ones
        exec(compile(previous, f"README block {BLOCKS.index(previous)}", "exec"), namespace)
    exec(compile(BLOCKS[index], f"README block {index}", "exec"), namespace)
