"""The README's Ray and Dask examples run as written (each as a script in a fresh interpreter, confined
to the loopback interface like tests/test_ray.py and tests/test_dask.py) and give one state per sequence."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Run before the example: the loopback-only namespace where possible, and Ray's settings for a local
# cluster (127.0.0.1, no usage statistics, the authentication token in the environment).
PRELUDE = f"""
import os, sys
sys.path.insert(0, {str(ROOT / "tools")!r})
from loopback import confine
if __name__ == "__main__":  # not again in the processes that the example spawns: they join this namespace
    confine()
os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token",
                  RAY_AUTH_TOKEN={secrets.token_hex(16)!r})
"""


def _examples() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Scoring many sequences"):]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return {("ray" if "fastgru.ray" in block else "dask"): block for block in blocks}


def test_the_readme_has_one_example_per_engine():
    assert sorted(_examples()) == ["dask", "ray"]


@pytest.mark.parametrize("engine", ["ray", "dask"])
def test_readme_example_runs(engine, tmp_path):
    pytest.importorskip(engine if engine == "ray" else "distributed")
    check = ("\nassert len(states) == 1000 and all(s.shape == (1, 256) for s in states.values())\n" if engine == "ray"
             else "\n    assert len(states) == 1000 and all(s.shape == (1, 256) for s in states)\n")
    script = tmp_path / f"{engine}_example.py"
    script.write_text(PRELUDE + _examples()[engine] + check)
    with tempfile.TemporaryDirectory(prefix="fgray") as temp:  # short: Ray's socket paths must fit in 107 bytes
        env = {**os.environ, "RAY_TMPDIR": temp}  # Ray's session files go there, not to /tmp/ray
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                                cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
