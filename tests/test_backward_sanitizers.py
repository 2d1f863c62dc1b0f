"""The C core's forward and backward under AddressSanitizer and UndefinedBehaviorSanitizer, with no Python
in between: tests/c/backward_sanitize.c gives every array its own exact-size allocation, so reading or
writing past one, leaking or freeing twice fails the run (and the two kernel sets must agree)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["-O1", "-g", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]


def test_core_backward_is_clean_under_sanitizers(tmp_path):
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    program = tmp_path / "backward_sanitize"
    sources = [str(ROOT / "tests" / "c" / "backward_sanitize.c")] + sorted(str(p) for p in (ROOT / "src_c").glob("*.c"))
    build = subprocess.run([compiler, *FLAGS, "-I", str(ROOT / "src_c"), *sources, "-o", str(program), "-lm", "-pthread"],
                           capture_output=True, text=True)
    if build.returncode != 0:
        if "sanitize" in build.stderr or "asan" in build.stderr:
            pytest.skip(f"the compiler cannot build with sanitizers: {build.stderr[-300:]}")
        pytest.fail(f"build failed:\n{build.stderr}")
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr
