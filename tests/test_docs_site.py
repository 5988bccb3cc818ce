"""The documentation site: `mkdocs build --strict` passes, and every page works in a real browser offline.

Skipped without the `docs` extra (`pip install -e '.[docs]'`: MkDocs, Material, mkdocstrings,
Selenium) or without Node.js/npm (KaTeX is installed from npm at build time, tools/docs_hooks.py);
the browser test also needs Chromium and ChromeDriver (Debian: `apt-get install chromium
chromium-driver`). The built site is opened from disk (`file://`) in headless Chromium with every
host name resolving to nothing, and each page is checked:

- its equations are rendered: KaTeX elements present where the Markdown has math, no KaTeX error,
  and no raw `$$`, `\\(` or `\\[` left in the visible text (code blocks aside);
- every image has loaded (complete, non-zero size);
- every link inside the site points at a page that exists, and at an anchor that exists on it;
- nothing was fetched from anywhere but the site's own files.

It saves a screenshot of the DIN page; `NPCTR_DOCS_SCREENSHOT=docs/figures/site_din.png` also
writes it there (the picture docs/README.md shows).
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


def _katex_cached():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import docs_hooks
        return (docs_hooks.cache_dir() / f"katex-{docs_hooks.KATEX_VERSION}" / "package").is_dir()
    except ImportError:
        return False
    finally:
        sys.path.remove(str(ROOT / "tools"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "pymdownx"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"the docs extra is not installed ({module}): pip install -e '.[docs]'")
    if shutil.which("node") is None or (shutil.which("npm") is None and not _katex_cached()):
        pytest.skip("building the docs needs Node.js and npm (KaTeX)")
    if not _katex_cached():
        sys.path.insert(0, str(ROOT / "tools"))
        try:
            import docs_hooks
            from mkdocs.exceptions import PluginError
            try:
                docs_hooks.ensure_katex()
            except PluginError as error:           # the npm registry out of reach; a bad hash still fails
                if str(error).startswith("npm pack"):
                    pytest.skip(f"KaTeX could not be installed from npm: {error}")
                raise
        finally:
            sys.path.remove(str(ROOT / "tools"))
    out = tmp_path_factory.mktemp("site") / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    return out


def test_site_builds_strict_with_every_page(site):
    pages = {p.relative_to(DOCS).with_suffix(".html") for p in DOCS.rglob("*.md") if p.name != "README.md"}
    built = {p.relative_to(site) for p in site.rglob("*.html")}
    assert pages <= built, f"pages missing from the site: {sorted(map(str, pages - built))}"
    assert (site / "assets" / "katex" / "katex.min.css").is_file()
    assert list((site / "assets" / "katex" / "fonts").glob("*.woff2"))
    for page in site.rglob("*.html"):
        html = page.read_text()
        assert 'class="arithmatex"' not in html, f"{page.name}: a formula was left unrendered"
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"(https?:)?//", html), \
            f"{page.name} loads something from the network"


def _has_math(md_page):
    text = re.sub(r"```.*?```", "", md_page.read_text(), flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    return "$" in text


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no Chromium / ChromeDriver installed (Debian: apt-get install chromium chromium-driver)")
    if importlib.util.find_spec("selenium") is None:
        pytest.skip("selenium is not installed: pip install -e '.[docs]'")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000", "--allow-file-access-from-files",
                 '--host-resolver-rules=MAP * ~NOTFOUND',
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


VISIBLE_TEXT = """
const body = document.querySelector('article') || document.body;
const copy = body.cloneNode(true);
copy.querySelectorAll('.katex-mathml, pre, code, script, style').forEach(e => e.remove());
return copy.textContent;
"""
PAGE_FACTS = """
return {
  katex: document.querySelectorAll('.katex').length,
  katexErrors: document.querySelectorAll('.katex-error').length,
  images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  resources: performance.getEntriesByType('resource').map(r => r.name),
};
"""


def test_every_page_renders_offline(site, browser, tmp_path):
    pages = sorted(p for p in site.rglob("*.html") if p.name != "404.html")
    facts = {}
    for page in pages:
        browser.get(page.as_uri())
        facts[page] = browser.execute_script(PAGE_FACTS)
        text = browser.execute_script(VISIBLE_TEXT)
        name = str(page.relative_to(site))
        md = DOCS / Path(name).with_suffix(".md")
        if md.exists() and _has_math(md):
            assert facts[page]["katex"] > 0, f"{name}: no rendered equation"
        assert facts[page]["katexErrors"] == 0, f"{name}: KaTeX errors"
        for raw in ("$$", "\\(", "\\[", "\\frac", "\\sum"):
            assert raw not in text, f"{name}: raw {raw!r} in the visible text"
        broken = [src for src, ok in facts[page]["images"] if not ok]
        assert not broken, f"{name}: images that did not load: {broken}"
        outside = [r for r in facts[page]["resources"] if not r.startswith("file://") and not r.startswith("data:")]
        assert not outside, f"{name} fetched from the network: {outside}"
        if name == "din.html":               # the forward pass: equations and the shared-tables figure
            browser.execute_script("const h = document.getElementById('4-forward'); if (h) h.scrollIntoView();")
            shot = tmp_path / "site_din.png"
            browser.save_screenshot(str(shot))
            if os.environ.get("NPCTR_DOCS_SCREENSHOT"):
                shutil.copy(shot, os.environ["NPCTR_DOCS_SCREENSHOT"])
    ids = {page: set(f["ids"]) for page, f in facts.items()}
    bad = []
    for page, f in facts.items():
        for link in f["links"]:
            url = urlparse(link)
            if url.scheme != "file":
                continue                       # no external link is followed (the network is off)
            target = Path(unquote(url.path))
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                bad.append(f"{page.name} -> {link}")
            elif url.fragment and target in ids and unquote(url.fragment) not in ids[target]:
                bad.append(f"{page.name} -> {link} (no such anchor)")
    assert not bad, "broken internal links:\n" + "\n".join(bad)
    assert (tmp_path / "site_din.png").stat().st_size > 10_000
