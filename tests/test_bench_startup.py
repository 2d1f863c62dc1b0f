"""bench/startup.py: the cold-start children load every module from bytecode, as an installed package does."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH_DIR))

import startup  # noqa: E402


def test_children_write_bytecode_even_where_the_environment_forbids_it(monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    env = startup.child_env(Path("/nowhere"))
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["PYTHONPYCACHEPREFIX"] == "/nowhere"


def test_a_warmed_up_child_imports_a_source_module_from_the_bytecode_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    (tmp_path / "pkg_for_startup.py").write_text("VALUE = 1\n")
    env = startup.child_env(tmp_path / "pycache")
    env["PYTHONPATH"] = str(tmp_path)
    code = "import json, pkg_for_startup\nprint(json.dumps({'value': pkg_for_startup.VALUE}))"
    assert startup.run_child(code, env)["value"] == 1
    cached = list((tmp_path / "pycache").rglob("pkg_for_startup*.pyc"))
    assert len(cached) == 1  # written by the warm-up run, under the prefix, not next to the source
    assert not (tmp_path / "__pycache__").exists()
    written = cached[0].stat().st_mtime_ns
    assert startup.run_child(code, env)["value"] == 1
    assert cached[0].stat().st_mtime_ns == written  # the next run found it valid: nothing recompiled
