"""MkDocs hooks for npctr's documentation site (``hooks:`` in mkdocs.yml).

Equations are rendered **at build time** with KaTeX, so the built site shows them with no network
and no JavaScript: pymdownx.arithmatex marks every ``$...$`` / ``$$...$$`` of the pages (and
tools/griffe_rst.py turns the docstrings' ``:math:`` roles into the same), this hook sends each
page's formulas to one Node.js process running KaTeX (tools/katex_render.js) and puts KaTeX's HTML
in their place, and the site ships KaTeX's stylesheet and fonts under ``assets/katex/``.

KaTeX comes from the npm registry at build time: ``npm pack katex@KATEX_VERSION`` into a cache
directory (``$NPCTR_DOCS_CACHE``, default ``~/.cache/npctr-docs``), checked against the pinned
sha512 below before it is unpacked; later builds reuse the cache and need no network. Requires
Node.js and npm on the machine that builds the docs (not on the one that views them).

A formula KaTeX cannot parse is a build error naming the page and the formula.
"""
import base64
import hashlib
import html
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from mkdocs.exceptions import PluginError

KATEX_VERSION = "0.19.1"
KATEX_INTEGRITY = ("sha512-jG8uKntjSEcm2EpQOh0XturpPuuC9r3Sq5HLHdsFdWZT27E672SF19QEi+of0/YeOy15lDgRhKvr5614uRrEfA==")
TOOLS = Path(__file__).resolve().parent
log = logging.getLogger("mkdocs.hooks.npctr")

# what pymdownx.arithmatex (generic mode) leaves in the HTML
_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)

_state = {}


def cache_dir():
    return Path(os.environ.get("NPCTR_DOCS_CACHE") or Path.home() / ".cache" / "npctr-docs")


def ensure_katex():
    """The unpacked npm package of KaTeX (its ``package/`` directory), fetched once."""
    root = cache_dir() / f"katex-{KATEX_VERSION}"
    package = root / "package"
    if (package / "dist" / "katex.js").is_file():
        return package
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError("building the docs needs npm (Node.js) to install KaTeX from the npm registry "
                          f"once (katex@{KATEX_VERSION}); install Node.js and npm")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([npm, "pack", f"katex@{KATEX_VERSION}", "--pack-destination", tmp, "--silent"],
                              capture_output=True, text=True)
        tarballs = list(Path(tmp).glob("katex-*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            raise PluginError(f"npm pack katex@{KATEX_VERSION} failed: {done.stderr.strip() or done.stdout.strip()}")
        data = tarballs[0].read_bytes()
        digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        if digest != KATEX_INTEGRITY:
            raise PluginError(f"katex@{KATEX_VERSION} from npm has integrity {digest}, expected {KATEX_INTEGRITY}")
        cache_dir().mkdir(parents=True, exist_ok=True)
        unpack = Path(tempfile.mkdtemp(dir=cache_dir()))      # same file system: the rename below is atomic
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(unpack, filter="data")
        if root.exists():
            shutil.rmtree(root)
        unpack.rename(root)
    log.info("KaTeX %s unpacked into %s", KATEX_VERSION, root)
    return package


class Renderer:
    """One Node.js process running KaTeX for the whole build."""

    def __init__(self, package):
        node = shutil.which("node")
        if node is None:
            raise PluginError("building the docs needs Node.js (node) to render the equations with KaTeX")
        self.process = subprocess.Popen([node, str(TOOLS / "katex_render.js"), str(package / "dist" / "katex.js")],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8")

    def render(self, items):
        self.process.stdin.write(json.dumps(items) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise PluginError("the KaTeX process ended unexpectedly")
        return json.loads(line)

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


def on_config(config):
    package = ensure_katex()
    if "renderer" in _state:
        _state["renderer"].close()
    _state["package"] = package
    _state["renderer"] = Renderer(package)
    if "assets/katex/katex.min.css" not in config["extra_css"]:
        config["extra_css"].insert(0, "assets/katex/katex.min.css")
    return config


_FENCE = re.compile(r"^\s*(```|~~~)")


def separate_display_math(markdown):
    """Give every ``$$ ... $$`` display (one line or several) blank lines around it.

    GitHub renders a display equation that stands on its own lines inside a paragraph, and
    consecutive ``$$...$$`` lines as separate equations; arithmatex needs each display to be a
    block of its own. The page's source is unchanged (this runs on the text MkDocs reads).
    """
    lines, out, i, fence = markdown.split("\n"), [], 0, None
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        match = _FENCE.match(line)
        if fence is not None:
            out.append(line)
            if match and match.group(1) == fence:
                fence = None
            i += 1
            continue
        if match:
            fence = match.group(1)
            out.append(line)
            i += 1
            continue
        if stripped.startswith("$$"):
            group = [line]
            closed = len(stripped) > 2 and stripped.endswith("$$")
            while not closed and i + 1 < len(lines):
                i += 1
                group.append(lines[i])
                closed = lines[i].strip().endswith("$$")
            if out and out[-1].strip():
                out.append("")
            out += group
            out.append("")
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):
    return separate_display_math(markdown)


def on_post_page(output, page, config):
    found = [(m, False) for m in _INLINE.finditer(output)] + [(m, True) for m in _BLOCK.finditer(output)]
    if not found:
        return output
    found.sort(key=lambda item: item[0].start())
    results = _state["renderer"].render([[html.unescape(m.group(1)), display] for m, display in found])
    errors = [f"{html.unescape(m.group(1))!r}: {r['error']}" for (m, _), r in zip(found, results) if "error" in r]
    if errors:
        raise PluginError(f"KaTeX cannot render {len(errors)} formula(s) of {page.file.src_uri}:\n  " + "\n  ".join(errors))
    pieces, last = [], 0
    for (m, display), r in zip(found, results):
        pieces.append(output[last:m.start()])
        pieces.append(f'<div class="math-display">{r["html"]}</div>' if display else r["html"])
        last = m.end()
    pieces.append(output[last:])
    return "".join(pieces)


def on_post_build(config):
    package = _state["package"]
    target = Path(config["site_dir"]) / "assets" / "katex"
    if target.exists():
        shutil.rmtree(target)
    (target / "fonts").mkdir(parents=True)
    shutil.copy2(package / "dist" / "katex.min.css", target / "katex.min.css")
    shutil.copy2(package / "LICENSE", target / "LICENSE")
    for font in (package / "dist" / "fonts").iterdir():
        if font.suffix == ".woff2":            # every browser that runs the site reads woff2
            shutil.copy2(font, target / "fonts" / font.name)


def on_shutdown():
    if "renderer" in _state:
        _state["renderer"].close()
