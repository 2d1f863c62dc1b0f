"""The C core's own test programs, built with the system C compiler against src_c/ alone (no Python, no
BLAS) and run: tests/c/test_core.c (the public API), tests/c/test_pool.c (the worker pool under
stress) and tests/c/test_cpu.c (the table decision, cache parsing and blocking, handed other CPUs). tools/sanitize.sh runs them under AddressSanitizer and UndefinedBehaviorSanitizer with leak
detection; here both also run under ThreadSanitizer.

Some cases of that program (signed overflow in size checks, NaN converted to an integer) are undefined
behaviour only a UBSan build reports, so the whole program also runs here built with UBSan at -O0."""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_SOURCES = sorted((ROOT / "src_c").glob("*.c"))
COMPILER = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

pytestmark = [
    pytest.mark.skipif(COMPILER is None, reason="no C compiler (cc) on this machine"),
    pytest.mark.skipif(sys.platform == "win32", reason="the test program uses pthreads"),
]


_CORE_OBJECTS: dict[tuple[str, ...], list[Path]] = {}


def _core_objects(flags: list[str], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """src_c/*.c compiled once per set of flags for the whole session, one compiler per core: the six
    programs below share three builds of the core instead of compiling it six times (the AVX-512 kernel
    files alone take tens of seconds under the sanitizers)."""
    key = tuple(flags)
    if key not in _CORE_OBJECTS:
        folder = tmp_path_factory.mktemp("core_objects")
        objects = [folder / (source.stem + ".o") for source in CORE_SOURCES]

        def compile_one(pair):
            source, obj = pair
            command = [COMPILER, "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", f"-I{ROOT / 'src_c'}", *flags,
                       "-c", str(source), "-o", str(obj)]
            return command, subprocess.run(command, capture_output=True, text=True, timeout=600)

        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for command, result in pool.map(compile_one, zip(CORE_SOURCES, objects)):
                _check_compiled(command, result, flags)
        _CORE_OBJECTS[key] = objects
    return _CORE_OBJECTS[key]


def _check_compiled(command: list[str], result: subprocess.CompletedProcess, flags: list[str]) -> None:
    if result.returncode != 0:
        if any("-fsanitize" in flag for flag in flags) and "sanitize" in result.stderr.lower() + result.stdout.lower():
            pytest.skip(f"the compiler cannot build with {flags}: {result.stderr[-500:]}")
        pytest.fail(f"building the C test program failed:\n{' '.join(command)}\n{result.stderr}")


def _build(tmp_path_factory: pytest.TempPathFactory, name: str, flags: list[str],
           program: str = "test_core.c") -> Path:
    binary = tmp_path_factory.mktemp(name) / name
    objects = _core_objects(flags, tmp_path_factory)
    command = [COMPILER, "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", f"-I{ROOT / 'src_c'}", *flags,
               str(ROOT / "tests" / "c" / program), *map(str, objects), "-o", str(binary), "-lm", "-pthread"]
    _check_compiled(command, subprocess.run(command, capture_output=True, text=True, timeout=300), flags)
    return binary


def _run(binary: Path, *arguments: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *arguments], capture_output=True, text=True, timeout=300, env=env)


def _summary(result: subprocess.CompletedProcess) -> tuple[int, int]:
    lines = result.stdout.strip().splitlines()
    match = re.fullmatch(r"(\d+) passed, (\d+) failed", lines[-1] if lines else "")
    assert match, f"no summary line (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return int(match.group(1)), int(match.group(2))


def test_c_core_program_passes(tmp_path_factory):
    binary = _build(tmp_path_factory, "test_core", ["-O2"])
    result = _run(binary)
    passed, failed = _summary(result)
    assert failed == 0 and result.returncode == 0, f"{failed} C checks failed:\n{result.stderr[-6000:]}"
    assert passed > 1000, f"only {passed} C checks ran"


def test_table_decision_and_cache_parsing_for_other_cpus(tmp_path_factory):
    """tests/c/test_cpu.c: Zen 3/4/5, Intel Skylake-SP to Granite Rapids and unknown CPUs, with and
    without calibration timings, get the table docs/kernels.md says; cpuid cache leaves (real ones
    and built ones) give their sizes."""
    binary = _build(tmp_path_factory, "test_cpu", ["-O2"], program="test_cpu.c")
    result = _run(binary)
    passed, failed = _summary(result)
    assert failed == 0 and result.returncode == 0, f"{failed} C checks failed:\n{result.stderr[-6000:]}"
    assert passed > 50, f"only {passed} C checks ran"


@pytest.fixture(scope="module")
def ubsan_binary(tmp_path_factory):
    return _build(tmp_path_factory, "test_core_ubsan",
                  # -O0: at -O1 gcc folds some of the overflowing arithmetic away before UBSan instruments it
                  ["-O0", "-g", "-fsanitize=undefined,float-cast-overflow", "-fno-sanitize-recover=all"])


def test_c_core_has_no_undefined_behaviour_under_ubsan(ubsan_binary):
    """Signed overflow in size checks, NaN converted to an integer: only UBSan sees these."""
    result = _run(ubsan_binary)
    assert "runtime error" not in result.stderr, result.stderr[-3000:]
    passed, failed = _summary(result)
    assert failed == 0 and result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def pool_binary(tmp_path_factory):
    return _build(tmp_path_factory, "test_pool", ["-O2"], program="test_pool.c")


def test_pool_runs_every_task_exactly_once_before_returning(pool_binary):
    """200000 runs of rising and falling task counts per pool of 2, 3 and 4 threads (test_pool.c). It
    failed on the pool as first written: a late worker could claim a task of a run being prepared.
    The fourth check is fg_pool_engage's choice between waking the workers and running alone."""
    result = _run(pool_binary)
    passed, failed = _summary(result)
    assert failed == 0 and result.returncode == 0, result.stdout[-3000:]
    assert passed == 4


def test_pool_keeps_working_in_a_forked_child(pool_binary):
    """A pool whose workers ran (and went to sleep) in the parent: in a forked child every task runs
    once, on new workers, and destroying the pool returns. Before the pool counted forks, the child
    hung in fg_pool_destroy (the parent's sleeping workers never leave the condition variable there)."""
    result = _run(pool_binary, "fork")
    passed, failed = _summary(result)
    assert failed == 0 and result.returncode == 0 and passed == 1, result.stdout[-3000:]


@pytest.mark.parametrize("program, arguments", [("test_pool.c", ["20000"]), ("test_core.c", ["--one-table"])])
def test_c_programs_have_no_data_race_under_tsan(tmp_path_factory, program, arguments):
    binary = _build(tmp_path_factory, program.replace(".c", "_tsan"), ["-O1", "-g", "-fsanitize=thread"],
                    program=program)
    result = _run(binary, *arguments)
    if "unexpected memory mapping" in result.stderr:  # TSan's runtime refuses some kernels' ASLR layouts
        pytest.skip(f"ThreadSanitizer cannot run here: {result.stderr.strip()[:300]}")
    assert "ThreadSanitizer" not in result.stderr, result.stderr[-4000:]
    passed, failed = _summary(result)
    assert failed == 0 and result.returncode == 0, result.stdout[-3000:]


def test_every_function_the_core_exports_between_its_files_is_declared_by_name():
    """templates.h declares each function a template instantiates under its full, pasted name (so that
    grep finds it); fastgru.h and internal.h declare the rest. -Wmissing-prototypes turns a
    non-static function defined without a prior declaration into an error."""
    for source in CORE_SOURCES:
        command = [COMPILER, "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-fsyntax-only", "-Werror=missing-prototypes",
                   f"-I{ROOT / 'src_c'}", str(source)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{source.name}:\n{result.stderr[-3000:]}"
