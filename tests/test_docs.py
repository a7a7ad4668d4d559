"""The documentation site (docs/, mkdocs.yml): its examples run, its build is offline and complete.

Each page's ```python blocks marked ``<!-- runnable -->`` run in order in one namespace (a page
is read top to bottom), in a temporary directory; its ``$ lrlab ...`` console examples that show
output must print exactly that. The block and console extraction is tests/test_readme.py's, so
the README and the site follow one rule. ``make docs`` builds the site strictly (``make test``
runs it); here a strict build into a temporary directory is checked for assets fetched from the
network and for the gallery. The griffe extension that renders lrlab's docstrings is tested too.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_readme = _load("lrlab_docs_readme_rules", ROOT / "tests" / "test_readme.py")
_griffe_ext = _load("lrlab_docs_griffe_ext", DOCS / "_ext" / "griffe_lrlab.py")

RUNNABLE = {p.name: _readme._runnable_blocks(p.read_text()) for p in PAGES}
SHOWN = [
    (p.name, cmd, out)
    for p in PAGES
    for cmd, out in _readme._console_examples(p.read_text())
    if out
]
# Pages that teach by example must have at least one example that runs.
MUST_RUN = {"index.md", "schedules.md", "torch.md", "keras.md", "optax.md", "study.md", "finder.md"}


def test_every_page_that_teaches_has_runnable_examples():
    assert set(RUNNABLE) >= MUST_RUN, f"missing pages: {MUST_RUN - set(RUNNABLE)}"
    assert all(RUNNABLE[name] for name in MUST_RUN), [n for n in MUST_RUN if not RUNNABLE[n]]


def test_runnable_marker_only_precedes_python_blocks():
    """A marker followed by anything but a ```python block would silently run nothing."""
    for page in PAGES:
        text = page.read_text()
        assert text.count("<!-- runnable -->") == len(RUNNABLE[page.name]), page.name


@pytest.mark.parametrize("page", [n for n, blocks in RUNNABLE.items() if blocks])
# Lightning 2.x with torch 2.13 warns through typing_extensions (its module filter cannot match).
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning")
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page[:-3]}"}
    for i, block in enumerate(RUNNABLE[page]):
        exec(compile(block, f"docs/{page} block {i}", "exec"), namespace)


@pytest.mark.parametrize("page,cmd,shown", SHOWN, ids=[f"{p}:{c[:40]}" for p, c, _ in SHOWN])
def test_console_example_prints_what_the_page_shows(page, cmd, shown, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _readme._check_console_example(cmd, shown, capsys)


def test_console_examples_with_output_are_checked():
    assert any(cmd.startswith("lrlab values") for _, cmd, _ in SHOWN)


# ---- the built site ---------------------------------------------------------------------------

_ASSET = re.compile(r"""<(?:script|img|link|source|iframe)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.I)
_CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)""")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_site_loads_nothing_from_the_network(site):
    remote = []
    for page in site.rglob("*.html"):
        for url in _ASSET.findall(page.read_text(encoding="utf-8")):
            if re.match(r"(https?:)?//", url) and "rel=\"canonical\"" not in url:
                remote.append((page.name, url))
    for css in site.rglob("*.css"):
        remote += [(css.name, u) for u in _CSS_URL.findall(css.read_text(encoding="utf-8"))
                   if re.match(r"(https?:)?//", u)]
    assert not remote, remote[:10]
    assert (site / "index.html").exists() and (site / "api" / "schedules.html").exists()


def test_gallery_page_shows_every_gallery_png(site):
    html = (site / "gallery.html").read_text(encoding="utf-8")
    shown = set(re.findall(r'src="gallery/([^"]+\.png)"', html))
    pngs = {p.name for p in (DOCS / "gallery").glob("*.png")}
    assert pngs and shown == pngs, sorted(pngs ^ shown)
    assert all((site / "gallery" / name).exists() for name in pngs)
    # each picture's caption links to the schedule's entry in the API reference
    linked = set(re.findall(r'href="api/schedules\.html#lrlab\.schedules\.(\w+)"', html))
    assert linked == {n[:-4] for n in pngs} - {"overview"}, sorted(linked ^ ({n[:-4] for n in pngs} - {"overview"}))


def test_api_reference_renders_signatures_and_parameter_tables(site):
    html = (site / "api" / "schedules.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", "", html)
    # a registered class's signature is its dataclass fields (properties such as duration are not)
    assert re.search(r"step_decay\(\s*peak: float = 0\.1,\s*factor: float = 0\.1", text)
    assert re.search(r"constant\(\s*value: float = 0\.0,\s*steps: int \| str \| None = None,?\s*\)", text)
    assert "Parameters:" in text and ":class:`" not in text and ".. math::" not in text


# ---- the griffe extension ---------------------------------------------------------------------


def test_roles_become_inline_code():
    assert _griffe_ext.rst_to_markdown("see :func:`lrlab.parse` and :class:`~x.Schedule`") == (
        "see `lrlab.parse` and `x.Schedule`"
    )


def test_math_directive_and_doctests_become_fenced_blocks():
    src = "Summary.\n\n    .. math:: \\eta(t) = t\n\n    >>> 1 + 1\n    2\n\n    Text."
    out = _griffe_ext.rst_to_markdown(src)
    assert "```tex\n    \\eta(t) = t\n    ```" in out
    assert "    ```pycon\n    >>> 1 + 1\n    2\n    ```" in out
    assert out.endswith("    Text.")


def test_literal_block_keeps_its_text():
    out = _griffe_ext.rst_to_markdown("Grammar::\n\n    a := b\n    c := d\n\nAfter.")
    assert out == "Grammar:\n\n```text\na := b\nc := d\n```\n\nAfter."


def test_simple_table_becomes_a_markdown_table():
    src = "====  =====\nfw    lrlab\n====  =====\na|b   ``x``\nc     y\n====  =====\n"
    assert _griffe_ext.rst_to_markdown(src).splitlines() == [
        "| fw | lrlab |", "|---|---|", "| a\\|b | ``x`` |", "| c | y |",
    ]


def test_shared_args_entry_is_split_per_name():
    src = "Args:\n    a, b: both sides,\n        in steps.\n    c: other.\nReturns:\n    x, y: not args."
    assert _griffe_ext.split_shared_args(src).splitlines() == [
        "Args:", "    a: both sides,", "        in steps.", "    b: both sides,", "        in steps.",
        "    c: other.", "Returns:", "    x, y: not args.",
    ]
