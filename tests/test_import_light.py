"""``import lrlab`` (and the spec parser) pull in NumPy only: frameworks load when a feature needs them."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "jax", "jaxlib", "keras", "tensorflow", "matplotlib", "typer", "click", "optuna", "rich", "yaml", "scipy", "pandas")


def _loaded_after(code: str) -> list[str]:
    probe = f"""
import json, sys
{code}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_lrlab_the_spec_parser_and_plot_module_stay_light():
    code = "import lrlab, lrlab.spec, lrlab.plot\ns = lrlab.parse('constant(0.1, steps=5) >> constant(0.01)')\nassert s(5) == 0.01"
    loaded = _loaded_after(code)
    assert "numpy" in loaded  # the probe works: numpy is the one dependency
    assert sorted(set(HEAVY) & set(loaded)) == []


def test_the_probe_sees_a_heavy_import():
    # guards the test above against a probe that can never fail
    assert "yaml" in _loaded_after("import lrlab.spec\nlrlab.spec.dumps(lrlab.spec.parse('constant(0.1)'), 'yaml')")
