"""The README is the first thing a user runs: its examples are executed here as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lrlab.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```console\n(.*?)```", TEXT, re.S).group(1)
    assert first_block.splitlines()[0].startswith("make demo")
    assert first_block.splitlines()[1].startswith("make test")


def _runnable_blocks(text: str = TEXT) -> list[str]:
    """The ```python blocks marked ``<!-- runnable -->`` (tests/test_docs.py uses it for docs/)."""
    return re.findall(r"<!-- runnable -->\n```python\n(.*?)```", text, re.S)


def test_readme_has_runnable_blocks():
    assert _runnable_blocks(), "the quick start must stay runnable"


@pytest.mark.parametrize("index", range(len(_runnable_blocks())))
def test_runnable_python_block(index, capsys):
    exec(compile(_runnable_blocks()[index], f"README block {index}", "exec"), {})
    out = capsys.readouterr().out
    assert "0.0 0.1 1e-05 1e-05" in out  # the values the quick start's comment promises


def _console_examples(text: str = TEXT) -> list[tuple[str, list[str]]]:
    """(command, shown output lines) for each `$ lrlab ...` line of the console blocks."""
    examples = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ lrlab "):
                cmd = line[2:]
                while cmd.endswith("\\"):  # continued command
                    i += 1
                    cmd = cmd[:-1] + lines[i].strip()
                out = []
                while i + 1 < len(lines) and not lines[i + 1].startswith("$ "):
                    i += 1
                    out.append(lines[i])
                examples.append((cmd.split("  #")[0].strip(), out))
            i += 1
    return examples


SHOWN = [(c, o) for c, o in _console_examples() if o and " find " not in f" {c} "]


def test_readme_console_examples_found():
    assert any(c.startswith("lrlab values") for c, _ in SHOWN)
    assert any("lrlab: error" in "\n".join(o) for _, o in SHOWN)


@pytest.mark.parametrize("cmd,shown", SHOWN, ids=[c[:50] for c, _ in SHOWN])
def test_console_example_prints_what_the_readme_shows(cmd, shown, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _check_console_example(cmd, shown, capsys)


def _check_console_example(cmd: str, shown: list[str], capsys) -> None:
    """Run ``cmd`` (an ``lrlab ...`` line) in-process and compare its output with ``shown``."""
    argv = shlex.split(cmd)[1:]
    if "lrlab: error" in shown[0]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.splitlines()
        assert err[0] == shown[0]
    else:
        try:
            main(argv)
        except SystemExit as e:
            assert e.code in (0, None)
        out = capsys.readouterr().out.splitlines()
        assert out == shown
