"""The Markdown of README.md and docs/ reads well on GitHub and on the site (no build needed).

GitHub's math renderer is stricter than the site's: inline `$...$` must not have a space after the
opening or before the closing `$`, must not be glued to a following letter or digit (`$\\to$BN`),
and must open and close on one line; `\\{`, `\\}` and `\\\\` inside `$...$` / `$$...$$` lose their
backslash to Markdown there (write `\\lbrace`, `\\rbrace`, and multi-line displays as ```math blocks).
Every page of the reading path links to the next one, and every relative link points at a file.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
READING_PATH = ["index.md", "dense.md", "activations.md", "batch_normalization.md", "dice.md", "dropout.md",
                "dnn.md", "gradient_checking.md", "embedding.md", "sequence_pooling.md", "local_activation_unit.md",
                "attention_sequence_pooling.md", "prediction_layer.md", "din.md", "training.md"]


def prose_lines(text):
    """(line number, line) outside fenced code blocks, with inline code spans blanked out."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        match = re.match(r"^\s*(```|~~~)", line)
        if fence:
            if match and match.group(1) == fence:
                fence = None
            continue
        if match:
            fence = match.group(1)
            continue
        yield number, re.sub(r"`[^`]*`", lambda m: "C" * len(m.group(0)), line)


def inline_math(line):
    """The `$...$` spans of a line (display `$$` removed first), as (start, end, body); None if unbalanced."""
    line = re.sub(r"\$\$.*?\$\$", lambda m: " " * len(m.group(0)), line)
    if "$$" in line:
        return []                      # a display that spans lines: checked as a block
    dollars = [m.start() for m in re.finditer(r"(?<!\\)\$", line)]
    if len(dollars) % 2:
        return None
    return [(a, b, line[a + 1:b]) for a, b in zip(dollars[::2], dollars[1::2])]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_math_renders_on_github(page):
    problems = []
    for number, line in prose_lines(page.read_text()):
        spans = inline_math(line)
        if spans is None:
            problems.append(f"{number}: an inline $...$ opens or closes on another line")
            continue
        for start, end, body in spans:
            if body != body.strip():
                problems.append(f"{number}: space inside the $ of ${body}$")
            if end + 1 < len(line) and re.match(r"[A-Za-z0-9]", line[end + 1]):
                problems.append(f"{number}: ${body}$ is glued to the following text")
        for math in re.findall(r"\$\$.*?\$\$|(?<!\\)\$[^$]+\$", line):
            if re.search(r"\\[{}]", math):
                problems.append(f"{number}: \\{{ or \\}} in {math[:40]!r}: write \\lbrace / \\rbrace")
            if re.search(r"\\\\", math):
                problems.append(f"{number}: \\\\ in {math[:40]!r}: use a ```math block")
    assert not problems, f"{page.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    text = "\n".join(line for _, line in prose_lines(page.read_text()))
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            bad.append(target)
    assert not bad, f"{page.relative_to(ROOT)} links to missing files: {bad}"


def test_reading_path_pages_link_to_the_next():
    for page, following in zip(READING_PATH, READING_PATH[1:]):
        text = (ROOT / "docs" / page).read_text()
        tail = text[text.rindex("\n---\n"):] if "\n---\n" in text else ""
        assert f"]({following})" in tail, f"docs/{page} does not end with a link to {following}"
