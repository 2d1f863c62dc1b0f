"""fastgru.show_config() and FASTGRU_KERNELS: what the core read about the CPU and chose, in both
modes, and the variable that forces a kernel table (read once at import; a table the CPU cannot run,
or a name that is no table, raises at the first call, naming the variable, and show_config says why).
The variable is set in fresh interpreters: it is read at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastgru
from fastgru import _core


def test_show_config_dicts_describe_the_cpu_and_the_table_running():
    config = fastgru.show_config(mode="dicts")
    assert set(config) == {"fastgru", "cpu", "kernel table", "caches", "blocking", "memory", "threads", "blas"}
    cpu, table = config["cpu"], config["kernel table"]
    assert isinstance(cpu["family"], int) and isinstance(cpu["model"], int) and isinstance(cpu["stepping"], int)
    assert set(cpu["flags"]) <= set(cpu["flags fastgru looks at"])
    assert {"avx2", "fma", "avx512f", "avx512_vnni"} <= set(cpu["flags fastgru looks at"])
    assert table["running"] == _core.best_isa() == table["automatic choice"]
    assert table["running"] in table["tables this CPU runs"] == _core.supported_isas()
    assert table["all tables"] == _core.kernel_tables()
    assert table["why the automatic choice"]
    # the calibration ran exactly where cpuid could not tell the width, and then its figures decided
    if isinstance(table["calibration"], dict):
        assert table["why the automatic choice"].startswith("timed")
        wide = table["calibration"]["ratio"] >= table["calibration"]["threshold"]
        assert table["running"] in (("avx512", "avx512_vnni") if wide else ("avx512vl", "avx512vl_vnni"))
    else:
        assert not table["why the automatic choice"].startswith("timed")
    for level in ("L1d", "L2"):
        assert config["caches"][level].endswith(("KiB", "MiB", "bytes"))
    assert config["threads"]["default"] == fastgru.get_num_threads()
    assert config["threads"]["physical cores"] == fastgru.default_num_threads()
    assert config["blas"]["used by"].startswith("the backward pass")
    assert config["memory"]["huge pages"].startswith("models of 2 MiB and more")
    if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"):
        assert "[" in config["memory"]["transparent huge pages"]  # the kernel's setting, the chosen one bracketed
    json.dumps(config)  # plain data: the benchmark stores it in bench.json


def test_show_config_reports_a_table_forced_by_set_backend():
    forced = _core.supported_isas()[0]
    _core.set_backend(isa=forced)
    try:
        table = fastgru.show_config(mode="dicts")["kernel table"]
    finally:
        _core.set_backend()
    assert table["running"] == forced and "set_backend" in table["chosen by"]
    assert table["automatic choice"] == _core.best_isa()


def test_show_config_prints_every_section(capsys):
    assert fastgru.show_config() is None
    out = capsys.readouterr().out
    for heading in ("fastgru:", "cpu:", "kernel table:", "caches:", "blocking:", "threads:", "blas:"):
        assert f"\n{heading}" in "\n" + out
    assert f"running: {_core.best_isa()}" in out and "L2: " in out


def test_show_config_names_the_rule_of_the_thread_budget_that_applies(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    threads = fastgru.show_config(mode="dicts")["threads"]
    assert threads["default"] == 3 and threads["from"] == "OMP_NUM_THREADS='3'"
    fastgru.set_num_threads(2)
    try:
        threads = fastgru.show_config(mode="dicts")["threads"]
    finally:
        fastgru.set_num_threads(None)
    assert threads["default"] == 2 and threads["from"].startswith("fastgru.set_num_threads")
    monkeypatch.delenv("OMP_NUM_THREADS")
    threads = fastgru.show_config(mode="dicts")["threads"]
    assert threads["default"] == fastgru.default_num_threads() and "physical cores" in threads["from"]


@pytest.mark.parametrize("mode", ["dict", "", None, "STDOUT"])
def test_show_config_refuses_other_modes(mode):
    with pytest.raises(ValueError, match="mode must be one of"):
        fastgru.show_config(mode=mode)


def _fresh(code: str, kernels: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("FASTGRU_KERNELS", None)
    if kernels is not None:
        env["FASTGRU_KERNELS"] = kernels
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300)


FORWARD = """
    import numpy as np, fastgru
    from fastgru import _core
    gru = fastgru.GRU(5, 19, seed=1)
    x = np.linspace(-1, 1, 3 * 2 * 5, dtype=np.float32).reshape(3, 2, 5)
    print(repr(_core.kernel_table()))
    print(fastgru.show_config(mode="dicts")["kernel table"]["running"])
    try:
        output, _ = gru(x)
        print("ok", output.tobytes().hex())
    except Exception as exc:
        print("raised", type(exc).__name__, exc)
"""


@pytest.mark.parametrize("table", _core.supported_isas())
def test_fastgru_kernels_forces_a_table_this_cpu_runs(table):
    result = _fresh(FORWARD, table)
    assert result.returncode == 0, result.stderr
    chosen, running, outcome = result.stdout.splitlines()
    assert chosen == repr((table, f"FASTGRU_KERNELS={table!r}")) and running == table
    assert outcome.startswith("ok ")
    # the same bits as set_backend(isa=table) gives in this process
    gru = fastgru.GRU(5, 19, seed=1)
    x = np.linspace(-1, 1, 3 * 2 * 5, dtype=np.float32).reshape(3, 2, 5)
    _core.set_backend(isa=table)
    try:
        expected = gru(x)[0].tobytes().hex()
    finally:
        _core.set_backend()
    assert outcome == f"ok {expected}"


@pytest.mark.parametrize("value", ["auto", "", " AUTO "])
def test_fastgru_kernels_auto_is_the_cpus_choice(value):
    result = _fresh(FORWARD, value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == repr((_core.best_isa(), "chosen for this CPU"))


@pytest.mark.parametrize("value", ["avx9", "avx512vnni", "sse2", "generic,avx2"])
def test_fastgru_kernels_naming_no_table_fails_at_the_first_call(value):
    result = _fresh(FORWARD, value)
    assert result.returncode == 0, result.stderr  # the import succeeds: show_config can say why
    chosen, running, outcome = result.stdout.splitlines()
    assert "names no kernel table" in chosen and running.startswith("none: FASTGRU_KERNELS")
    assert outcome.startswith("raised ValueError FASTGRU_KERNELS=")
    assert all(name in outcome for name in _core.kernel_tables())


def test_fastgru_kernels_asking_for_a_missing_feature_names_it():
    """The message names the features the table needs and the CPU lacks: checked with a CPU described
    to the parser, and, where this CPU lacks a table, in a fresh interpreter."""
    value, error = _core._table_from_environment("avx512_vnni", missing=lambda table: ["avx512f", "avx512_vnni"],
                                                 supported=lambda: ["generic", "avx2"])
    assert value is None and isinstance(error, NotImplementedError)
    assert str(error) == ("FASTGRU_KERNELS='avx512_vnni': this CPU lacks avx512f, avx512_vnni, which the avx512_vnni "
                          "table needs (it runs generic, avx2)")
    lacking = [table for table in _core.kernel_tables() if table not in _core.supported_isas()]
    for table in lacking:
        result = _fresh(FORWARD, table)
        assert result.returncode == 0, result.stderr
        outcome = result.stdout.splitlines()[2]
        assert outcome.startswith(f"raised NotImplementedError FASTGRU_KERNELS={table!r}: this CPU lacks ")
        assert all(feature in outcome for feature in _core.missing_features(table))


def test_set_backend_restores_the_variables_table():
    result = _fresh("""
        from fastgru import _core
        _core.set_backend(isa="generic")
        print(_core.kernel_table()[0])
        _core.set_backend(isa="auto")
        print(_core.kernel_table()[0])
        _core.set_backend()
        print(_core.kernel_table()[0])
    """, "generic")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["generic", _core.best_isa(), "generic"]


def test_missing_features_and_table_names():
    assert _core.missing_features("generic") == []
    for table in _core.supported_isas():
        assert _core.missing_features(table) == []
    with pytest.raises(ValueError, match="unknown kernel table"):
        _core.missing_features("avx1024")
    with pytest.raises(ValueError, match="isa must be None, 'auto' or one of"):
        _core.set_backend(isa="avx512vnni")


@pytest.mark.parametrize("name", _core.supported_isas())
def test_show_config_names_the_int8_product_of_the_table_running(name):
    """Every table has its int8 product described; the narrow (sign-free) kernels are named exactly on
    the tables without VNNI that have a vector product."""
    from fastgru.config import _INT8_PRODUCTS
    assert set(_INT8_PRODUCTS) == set(_core.kernel_tables())
    _core.set_backend(isa=name)
    try:
        products = fastgru.show_config(mode="dicts")["kernel table"]["int8 products"]
    finally:
        _core.set_backend()
    assert ("no sign" in products) == (name in ("avx2", "avx512vl", "avx512"))
    assert ("vpdpbusd" in products) == name.endswith("vnni")
