"""The interactive report and the comparison page: offline (plotly inlined, no network), built from
the study's data, and rendered by a real headless Chromium when one is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("plotly")
pytest.importorskip("jinja2")

from lrlab.cli import main
from lrlab.study import run_study
from lrlab.study.interactive import _zoom, compare_page

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:torch.*")
CFG = {"task_kwargs": {"subset": 100}, "epochs": 4, "seeds": 2, "workers": 0,
       "schedules": ["constant", "linear", "step"], "optimizers": {"adam": 0.01, "sgd": 0.1},
       "tune": {"grid": [0.5, 2], "seeds": [0]}}


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("interactive")
    a = run_study({**CFG, "out": str(root / "a")}, progress=False, quiet=True)
    b = run_study({**CFG, "schedules": ["constant", "linear"], "optimizers": {"adam": 0.003}, "tune": "none",
                   "out": str(root / "b")}, progress=False, quiet=True)
    return root, a, b


def _scripts(page: str) -> list[str]:
    return re.findall(r"<script[^>]*>", page)


def test_page_is_offline_and_holds_the_study(studies):
    _, a, _ = studies
    page = a.paths["interactive.html"].read_text()
    assert all("src=" not in s for s in _scripts(page)), "no external script"
    assert not re.search(r"<(link|img|iframe)[^>]*(href|src)=[\"']https?:", page)  # nothing fetched at view time
    assert "Plotly.newPlot" in page and len(page) > 3_000_000  # the inlined bundle
    for fig in ("multiples-adam-fig", "overlay-sgd-fig", "trials-fig", "lr-sensitivity-fig"):
        assert f'id="{fig}"' in page
    # the per-trial menu has one entry per cell, the results table one row per cell
    assert page.count('"label":"linear \\u002f adam"') + page.count('"label":"linear / adam"') == 1
    assert len(re.findall(r"<tr><td class=\"l\">(adam|sgd)</td>", page)) == 6
    # the data is the study's: constant/adam's first seed's val acc in %, as plotted
    rec = next(r for r in a.records if r.schedule_name == "constant" and r.optimizer == "adam")
    first = f"{rec.curves['val_acc'][0] * 100:.6g}"[:5]
    assert first in page
    assert "<h2>Provenance</h2>" in page and "training time (sum over trials)" in page


def test_zoom_is_from_the_data():
    import numpy as np

    assert _zoom([np.array([10.0, 50, 90, 91, 92, 93, 94, 95])]) == [89.0, 96.0]  # after the first quarter
    assert _zoom([np.array([99.5, 99.8, 100.0, 100.0])]) == [98.8, 100.0]
    assert _zoom([np.array([np.nan])]) is None


def test_compare_page_and_cli(studies, capsys):
    root, a, b = studies
    page = compare_page(root / "a", root / "b")
    assert "a vs b" in page and 'id="compare-adam-fig"' in page and 'id="compare-sgd-fig"' in page
    assert all("src=" not in s for s in _scripts(page))
    # the table: adam/linear in both, sgd only in A; B - A is B's mean minus A's
    import numpy as np

    def mean(res, s, o):
        return float(np.mean([r.final["test_acc"] * 100 for r in res.records
                              if r.schedule_name == s and r.optimizer == o]))

    diff = mean(b, "linear", "adam") - mean(a, "linear", "adam")
    row = re.search(r"<td class=\"l\">adam</td><td class=\"l\">linear</td>(.*?)</tr>", page, re.S).group(1)
    assert f"{diff:+.1f}" in row
    sgd = re.search(r"<td class=\"l\">sgd</td><td class=\"l\">linear</td>(.*?)</tr>", page, re.S).group(1)
    assert re.findall(r"<td>(.*?)</td>", sgd)[1:] == ["-", "-"]
    with pytest.raises(SystemExit) as e:
        main(["study", "compare", str(root / "a"), str(root / "b"), "--out", str(root / "c.html")])
    assert e.value.code == 0 and (root / "c.html").is_file()
    assert f"wrote {root / 'c.html'}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["study", "compare", str(root / "a"), str(root / "nope")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("lrlab: error: no study report in") and err.count("\n") == 1


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p),
                None)


def render(path: Path, screenshot: Path | None = None) -> tuple[str, str]:
    """The DOM after scripts ran and Chromium's log (console errors are logged as "Uncaught ...")."""
    exe = _chromium()
    assert exe is not None
    with tempfile.TemporaryDirectory() as profile:
        flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
                 "--window-size=1400,2600"]
        dom = subprocess.run([*flags, "--dump-dom", path.resolve().as_uri()], capture_output=True, text=True,
                             timeout=120)
        if screenshot is not None:
            subprocess.run([*flags, f"--screenshot={screenshot}", path.resolve().as_uri()], capture_output=True,
                           timeout=120, check=True)
    return dom.stdout, dom.stderr


@pytest.mark.slow
def test_headless_chromium_renders_every_figure(studies):
    if _chromium() is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium): the browser check did not run")
    root, a, _ = studies
    for path, n_figs in ((a.paths["interactive.html"], 6), (root / "c2.html", 2)):
        if path.name == "c2.html":
            path.write_text(compare_page(root / "a", root / "b"))
        dom, log = render(path)
        assert "Uncaught" not in log and "Error" not in "".join(ln for ln in log.splitlines() if "CONSOLE" in ln), log
        # plotly draws each figure into its div: one .main-svg pair per rendered figure
        rendered = re.findall(r'<div id="([\w-]+-fig)" class="plotly-graph-div js-plotly-plot"', dom)
        assert len(rendered) == n_figs, rendered
        assert dom.count('class="main-svg"') >= 2 * n_figs
        assert dom.count('class="scatterlayer') >= n_figs


@pytest.mark.skipif(not os.environ.get("LRLAB_SCREENSHOTS"), reason="writes docs/assets (make docs-screenshots)")
def test_write_screenshots(tmp_path):
    """docs/assets/study-interactive.png and study-compare.png from a small real study (MNIST-1D,
    4 schedules x SGD/Adam, 12 epochs, tuned on 3 lrs) and the same study with 2x the base lr."""
    if _chromium() is None:
        pytest.skip("no chromium on PATH")
    cfg = {"epochs": 12, "seeds": 2, "workers": 2, "schedules": ["constant", "linear", "warmup_cosine", "onecycle"],
           "tune": {"grid": [0.5, 1, 2], "seeds": [0]}}
    a = run_study({**cfg, "out": str(tmp_path / "tuned")}, progress=False, quiet=True)
    run_study({**cfg, "tune": "none", "optimizers": {"sgd": 0.2, "adam": 0.02}, "out": str(tmp_path / "fixed_2x")},
              progress=False, quiet=True)
    assets = Path(__file__).resolve().parents[2] / "docs" / "assets"
    render(a.paths["interactive.html"], assets / "study-interactive.png")
    (tmp_path / "compare.html").write_text(compare_page(tmp_path / "tuned", tmp_path / "fixed_2x"))
    render(tmp_path / "compare.html", assets / "study-compare.png")
    assert (assets / "study-interactive.png").stat().st_size > 10_000
    _dashboard_screenshots(tmp_path / "tuned" / "study.db", assets)


def _dashboard_screenshots(db: Path, assets: Path) -> None:
    """optuna-dashboard's history and analytics views of the study (served on 127.0.0.1, a free
    port, stopped afterwards)."""
    import socket
    import threading
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    optuna_dashboard = pytest.importorskip("optuna_dashboard")

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = make_server("127.0.0.1", port, optuna_dashboard.wsgi(f"sqlite:///{db}"), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{port}"
        sid = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=30))["study_summaries"][0]["study_id"]
        for name, path in (("dashboard-history", ""), ("dashboard-analytics", "/analytics")):
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                                f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--hide-scrollbars",
                                "--window-size=1400,1800", f"--screenshot={assets / (name + '.png')}",
                                f"{base}/dashboard/studies/{sid}{path}"], capture_output=True, timeout=120, check=True)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
