"""The benchmark's arithmetic and plumbing (bench/): shares of the machine's limits, where a buffer
lives in the caches, the environment of a worker, the configuration at the top of the report.
Nothing here is timed; the measuring loops are only built and asked how much work they did."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH_DIR))

import common  # noqa: E402
import compiled  # noqa: E402
import engines  # noqa: E402
import limits  # noqa: E402
import report  # noqa: E402
import roofline  # noqa: E402
from fastgru.benchmark import timing  # noqa: E402

KIB, MIB = 1 << 10, 1 << 20
# A Zen 5 core's data caches as sysfs gives them (48 KB L1d, 1 MB L2 per core, 32 MB L3).
ZEN5_CACHES = {"L1d": 48 * KIB, "L2": 1 * MIB, "L3": 32 * MIB}


def case(T, B, H, I=None):
    I = H if I is None else I
    return {"shape": f"T{T}-B{B}-H{H}", "group": "test", "T": T, "B": B, "H": H, "I": I,
            "flops": 2 * T * B * 3 * H * (I + H), "weight_hh_bytes": 3 * H * H * 4, "rows": {}}


# ------------------------------------------------------------------------------- share and roofline


@pytest.mark.parametrize("value, limit, expected", [(50.0, 200.0, 25.0), (300.0, 150.0, 200.0),
                                                    (None, 100.0, None), (10.0, None, None), (10.0, 0.0, None)])
def test_share_is_a_percentage_of_the_limit_or_none(value, limit, expected):
    assert roofline.share(value, limit) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("nbytes, threads, expected", [
    (24 * KIB, 1, "L1"),
    (768 * KIB, 1, "L2"),  # W_hh at H=256, float32: 0.75 MiB, in one core's 1 MiB L2
    (3 * MIB, 1, "L3"),  # H=512
    (3 * MIB, 4, "L2"),  # split over 4 cores: 0.75 MiB each
    (12 * MIB, 2, "L3"),  # H=1024: 6 MiB per core, the whole in the 32 MiB L3
    (64 * MIB, 1, "DRAM"),
])
def test_cache_level_compares_each_threads_slice_with_a_cores_cache(nbytes, threads, expected):
    assert roofline.cache_level(nbytes, threads, ZEN5_CACHES) == expected


def test_cache_level_is_unknown_without_cache_sizes():
    assert roofline.cache_level(MIB, 1, {"source": "unknown"}) == "unknown"


@pytest.mark.parametrize("T, H, I, b, expected", [
    (100, 512, 512, 4, 3 * 512 * 512 * 4),  # a sequence: the projection is one GEMM, a step reads W_hh
    (1, 256, 256, 4, 2 * 3 * 256 * 256 * 4),  # streaming: each step reads W_ih and W_hh
    (1, 256, 64, 1, 3 * 256 * (256 + 64)),  # int8, I != H
])
def test_working_set_is_what_every_step_reads_again(T, H, I, b, expected):
    assert roofline.working_set_bytes(T, H, I, b) == expected


def test_streaming_working_set_moves_to_l3_when_w_ih_joins_w_hh():
    # W_hh alone (0.75 MiB) fits the L2; with W_ih (another 0.75 MiB) the step's weights do not.
    kwargs = dict(precision="float32", caches=ZEN5_CACHES, fma_gflops=280.0,
                  level_gbs={"L1": 550.0, "L2": 250.0, "L3": 105.0})
    assert roofline.roof(case(1, 1, 256), 1e-5, threads=1, **kwargs)["level"] == "L3"
    assert roofline.roof(case(1, 1, 256), 1e-5, threads=2, **kwargs)["level"] == "L2"
    assert roofline.roof(case(100, 1, 256), 1e-3, threads=1, **kwargs)["level"] == "L2"


def test_batched_row_is_rated_against_the_fma_peak():
    c = case(100, 64, 512)
    peak = 280.0
    median = c["flops"] / (0.5 * peak * 1e9)  # half the peak
    r = roofline.roof(c, median, "float32", threads=1, caches=ZEN5_CACHES, fma_gflops=peak,
                      level_gbs={"L3": 105.0}, sgemm_gflops=140.0)
    assert r["gflops"] == pytest.approx(140.0)
    assert r["pct_fma"] == pytest.approx(50.0)
    assert r["pct_sgemm"] == pytest.approx(100.0)
    assert r["bounds"] == {"input projection": "FMA peak", "recurrence": "FMA peak"}
    assert r["pct_roof"] == pytest.approx(50.0)  # every part compute-bound: the roof is FLOPs / peak
    assert r["roof_text"] == "all at FMA peak"


def test_batch_one_sequence_roof_is_projection_at_fma_peak_plus_w_hh_from_the_l2_it_fits_and_the_l3():
    T, H = 100, 512
    c = case(T, 1, H)
    peak, l2, l3 = 280.0, 250.0, 105.0
    step = 3 * H * H * 4  # 3 MiB: one MiB of it can stay in the Zen 5's L2 from one step to the next
    projection_s = 2 * T * 3 * H * H / (peak * 1e9)
    recurrence_s = step / (l3 * 1e9) + (T - 1) * (MIB / (l2 * 1e9) + (step - MIB) / (l3 * 1e9))
    median = 2 * (projection_s + recurrence_s)
    r = roofline.roof(c, median, "float32", threads=1, caches=ZEN5_CACHES, fma_gflops=peak,
                      level_gbs={"L2": l2, "L3": l3})
    assert r["level"] == "L3"
    assert r["bounds"] == {"input projection": "FMA peak", "recurrence": "L2 + L3 read"}
    assert r["roof_s"] == pytest.approx(projection_s + recurrence_s)
    assert r["pct_roof"] == pytest.approx(50.0)
    weights = (T * 3 * H * H + 3 * H * H) * 4
    assert r["weights_gbs"] == pytest.approx(weights / median / 1e9)
    assert r["pct_read"] == pytest.approx(100 * weights / median / 1e9 / l3)
    assert r["roof_text"] == "input projection at FMA peak + recurrence at L2 + L3 read"


def test_one_step_roof_reads_an_l2_of_w_ih_and_w_hh_together_from_the_l2_and_the_rest_from_the_l3():
    # stream H=512: 6 MiB of float32 W_ih + W_hh; consecutive calls keep one MiB (the Zen 5's L2) of it
    H = 512
    c = case(1, 1, H)
    l2, l3 = 250.0, 105.0
    each = 3 * H * H * 4
    part_s = each / 6 / (l2 * 1e9) + each * 5 / 6 / (l3 * 1e9)  # each part: its sixth from the L2
    median = 4 * part_s
    r = roofline.roof(c, median, "float32", threads=1, caches=ZEN5_CACHES, fma_gflops=280.0,
                      level_gbs={"L2": l2, "L3": l3})
    assert r["level"] == "L3"
    assert r["bounds"] == {"input projection": "L2 + L3 read", "recurrence": "L2 + L3 read"}
    assert r["roof_s"] == pytest.approx(2 * part_s)
    assert r["pct_roof"] == pytest.approx(50.0)
    assert r["roof_text"] == "all at L2 + L3 read"
    # two threads: 2 MiB of the 6 stay in the two L2s
    r2 = roofline.roof(c, median, "float32", threads=2, caches=ZEN5_CACHES, fma_gflops=280.0,
                       level_gbs={"L2": l2, "L3": l3})
    assert r2["roof_s"] == pytest.approx(2 * (each / 3 / (l2 * 1e9) + each * 2 / 3 / (l3 * 1e9)))


def test_a_w_hh_within_the_l2s_reads_all_of_it_at_the_l2s_bandwidth():
    T, H = 100, 512
    r = roofline.roof(case(T, 1, H), 1e-3, "float32", threads=2, caches={**ZEN5_CACHES, "L2": 2 * MIB},
                      fma_gflops=280.0, level_gbs={"L2": 250.0, "L3": 105.0})
    assert r["level"] == "L2" and r["bounds"]["recurrence"] == "L2 read"


def test_int8_rows_are_rated_against_one_byte_weights_and_the_int8_peak():
    T, H = 100, 512
    c = case(T, 1, H)
    median = 1e-3
    r = roofline.roof(c, median, "int8", threads=1, caches=ZEN5_CACHES, fma_gflops=280.0,
                      level_gbs={"L2": 250.0, "L3": 105.0}, int8_gops=1000.0)
    assert r["level"] == "L2"  # 3H*H bytes = 0.75 MiB: int8 W_hh fits where float32 does not
    weights = (T + 1) * 3 * H * H
    assert r["weights_gbs"] == pytest.approx(weights / median / 1e9)
    assert r["pct_read"] == pytest.approx(100 * r["weights_gbs"] / 250.0)
    assert r["pct_fma"] == pytest.approx(100 * c["flops"] / median / 1e9 / 1000.0)  # the int8 peak, not 280
    # the input projection's 3H*I products at 1000 GOP/s; the recurrence's T reads of W_hh from L2
    projection_s = max(2.0 * T * 3 * H * H / 1000e9, 3 * H * H / 250e9)
    recurrence_s = max(2.0 * T * 3 * H * H / 1000e9, T * 3 * H * H / 250e9)
    assert r["roof_s"] == pytest.approx(projection_s + recurrence_s)
    assert r["roof_text"] == "input projection at int8 peak + recurrence at L2 read"


def test_int8_rows_without_a_measured_int8_peak_get_no_roof():
    r = roofline.roof(case(100, 16, 512), 1e-3, "int8", threads=1, caches=ZEN5_CACHES, fma_gflops=280.0,
                      level_gbs={"L2": 250.0, "L3": 105.0})
    assert r["pct_fma"] is None and r["pct_roof"] is None
    assert "int8 peak" in r["roof_text"] and "not measured" in r["roof_text"]


def test_roof_says_what_was_not_measured_and_uses_the_fallback_read():
    c = case(100, 1, 512)
    r = roofline.roof(c, 1e-3, "float32", threads=1, caches=ZEN5_CACHES, fma_gflops=None, level_gbs={},
                      fallback_gbs=80.0)
    assert r["pct_roof"] is None and r["pct_fma"] is None
    assert r["level_gbs"] == 80.0 and "W_hh-sized" in r["level_what"]
    assert "FMA peak" in r["roof_text"] and "not measured" in r["roof_text"]


@pytest.mark.parametrize("threads", [1, 2])
def test_level_probe_sizes_sit_inside_their_level(threads):
    sizes = roofline.level_probe_bytes(ZEN5_CACHES, threads)
    for level, total in sizes.items():
        if level == "DRAM":
            assert total > ZEN5_CACHES["L3"]
            continue
        assert roofline.cache_level(total, threads, ZEN5_CACHES) == level
    assert sizes["L3"] == 4 * threads * MIB  # 4 MiB per thread, well outside the L2s, under half the L3


def test_level_probe_sizes_say_why_a_level_cannot_be_measured():
    sizes = roofline.level_probe_bytes({"L1d": 32 * KIB, "L2": 512 * KIB, "L3": 2 * MIB}, 4)
    assert isinstance(sizes["L3"], str) and "too small" in sizes["L3"]
    assert isinstance(roofline.level_probe_bytes({}, 1)["L2"], str)


# ------------------------------------------------------------------------------- the CPU


@pytest.mark.parametrize("text, expected", [("48K", 48 * KIB), ("1024K\n", MIB), ("32M", 32 * MIB),
                                            ("1048576", MIB), ("0", None), ("", None), ("n/a", None)])
def test_parse_cache_size(text, expected):
    assert common.parse_cache_size(text) == expected


def _fake_sysfs(root: Path, entries):
    for i, (level, kind, size) in enumerate(entries):
        index = root / f"index{i}"
        index.mkdir(parents=True)
        (index / "level").write_text(f"{level}\n")
        (index / "type").write_text(f"{kind}\n")
        (index / "size").write_text(f"{size}\n")


def test_cache_sizes_from_sysfs_skip_instruction_caches(tmp_path):
    _fake_sysfs(tmp_path, [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"),
                           (3, "Unified", "32768K")])
    sizes = common.cache_sizes(tmp_path, getconf="/nonexistent/getconf")
    assert {k: v for k, v in sizes.items() if k != "source"} == ZEN5_CACHES


def test_cache_sizes_fall_back_to_getconf(tmp_path):
    getconf = tmp_path / "getconf"
    getconf.write_text('#!/bin/sh\ncase "$1" in\n LEVEL1_DCACHE_SIZE) echo 32768;;\n'
                       ' LEVEL2_CACHE_SIZE) echo 524288;;\n LEVEL3_CACHE_SIZE) echo 0;;\nesac\n')
    getconf.chmod(0o755)
    sizes = common.cache_sizes(tmp_path / "no-sysfs", getconf=str(getconf))
    assert sizes == {"L1d": 32 * KIB, "L2": 512 * KIB, "source": "getconf"}
    assert common.cache_sizes(tmp_path / "no-sysfs", getconf="/nonexistent/getconf")["source"].startswith("unknown")


def test_cpus_one_per_core_puts_smt_siblings_last():
    core_of = {0: "a", 1: "b", 2: "a", 3: "b"}  # CPUs 0 and 2 share a core, as do 1 and 3
    assert common.cpus_one_per_core([0, 1, 2, 3], core_of) == [0, 1, 2, 3]
    core_of = {0: "a", 1: "a", 2: "b", 3: "b"}
    assert common.cpus_one_per_core([0, 1, 2, 3], core_of) == [0, 2, 1, 3]
    assert common.cpus_one_per_core([5, 7], {}) == [5, 7]


# ------------------------------------------------------------------------------- worker environment


@pytest.fixture
def pinned_blas_env(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "512")


def test_worker_env_drops_the_blas_pins_while_this_process_keeps_them(pinned_blas_env):
    env = common.thread_env(2)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert all(env[name] == "2" for name in common.THREAD_ENV_VARS)
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell" and os.environ["OPENBLAS_L2_SIZE"] == "512"


def test_worker_env_keeps_the_blas_pins_when_asked(pinned_blas_env):
    env = common.thread_env(1, unpin_blas=False)
    assert env["OPENBLAS_CORETYPE"] == "Haswell" and env["OPENBLAS_L2_SIZE"] == "512"


@pytest.mark.parametrize("unpin", [True, False])
def test_run_worker_starts_the_worker_with_that_environment(pinned_blas_env, monkeypatch, unpin):
    seen = {}

    def fake_run(cmd, env):
        seen["env"] = env
        Path(cmd[cmd.index("--json") + 1]).write_text(json.dumps({"ok": True}))
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(common.subprocess, "run", fake_run)
    assert common.run_worker("run.py", [], 2, unpin_blas=unpin) == {"ok": True}
    assert ("OPENBLAS_CORETYPE" in seen["env"]) is not unpin
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"


def test_blas_warning_names_haswell_kernels_on_an_avx512_cpu():
    haswell = {"pin_vars": {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": None},
               "libraries": [{"internal_api": "openblas", "architecture": "Haswell", "file": "libopenblas.so",
                              "version": "0.3.30"}]}
    text = common.blas_warning(haswell, ["avx2", "avx512f"])
    assert "Haswell" in text and "OPENBLAS_CORETYPE=Haswell" in text
    # On an AVX2-only CPU Haswell kernels are the right ones, but a set pin is still reported.
    assert "pinned" in common.blas_warning(haswell, ["avx2"])
    skylake = {"pin_vars": {"OPENBLAS_CORETYPE": None},
               "libraries": [{"internal_api": "openblas", "architecture": "SkylakeX", "file": "x", "version": "1"}]}
    assert common.blas_warning(skylake, ["avx512f"]) is None


def test_blas_info_says_when_threadpoolctl_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import raises ImportError
    info = common.blas_info()
    assert info["libraries"] is None and "threadpoolctl" in info["missing"]


def test_blas_info_lists_the_loaded_blas_with_its_kernel():
    pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401 - loads scipy's OpenBLAS

    info = common.blas_info()
    blas = [lib for lib in info["libraries"] if lib["user_api"] == "blas"]
    assert blas and all({"internal_api", "architecture", "version", "num_threads", "file"} <= set(lib)
                        for lib in blas)


# ------------------------------------------------------------------------------- configuration


@pytest.fixture
def fastgru_module():
    return pytest.importorskip("fastgru")


def test_config_comes_from_show_config_where_it_exists(fastgru_module, monkeypatch):
    calls = []

    def show_config(mode="stdout"):
        calls.append(mode)
        return {"kernels": {"table": "avx512", "why": "avx512f"}, "threads": 2}

    monkeypatch.setattr(fastgru_module, "show_config", show_config, raising=False)
    entry = common.fastgru_config()
    assert calls == ["dicts"]
    assert entry["source"] == 'fastgru.show_config(mode="dicts")'
    assert entry["config"] == {"kernels": {"table": "avx512", "why": "avx512f"}, "threads": 2}


def test_config_falls_back_to_best_isa_without_show_config(fastgru_module, monkeypatch):
    from fastgru import _core

    monkeypatch.delattr(fastgru_module, "show_config", raising=False)
    entry = common.fastgru_config()
    assert entry["source"].startswith("fallback")
    assert entry["config"]["kernel table"] == _core.best_isa()
    assert entry["config"]["cpu"]["model"]


def test_config_falls_back_when_show_config_fails(fastgru_module, monkeypatch):
    def broken(mode="stdout"):
        raise RuntimeError("no cpuid here")

    monkeypatch.setattr(fastgru_module, "show_config", broken, raising=False)
    entry = common.fastgru_config()
    assert "no cpuid here" in entry["source"] and "kernel table" in entry["config"]


# ------------------------------------------------------------------------------- report rendering


def synthetic_limits(threads=1):
    t = str(threads)
    by = lambda value: {"1": value, t: value * threads}  # noqa: E731
    return {
        "threads": threads, "caches": dict(ZEN5_CACHES, source="test"), "cpus": [0], "cores": 1,
        "pinning": "threads pinned to CPUs [0]",
        "fma": {"widths": {str(w): {"by_threads": {k: {"best_gflops": v, "median_gflops": v}
                                                   for k, v in by(g).items()}}
                           for w, g in ((128, 70.0), (256, 140.0), (512, 280.0))},
                "widest": 512, "peak_gflops": 280.0 * threads, "peak_what": "512-bit FMA loop",
                "ratio_512_256": {"1": 2.0, t: 2.0}},
        "levels": {"L1": {"not_measured": "test"},
                   "L2": {"bytes_per_thread": 600 * KIB, "limit_gbs": 250.0 * threads, "limit_what": "test",
                          "widths": {"512": {"by_threads": {k: {"best_gbs": v, "median_gbs": v}
                                                            for k, v in by(250.0).items()}}}},
                   "L3": {"bytes_per_thread": 4 * MIB, "limit_gbs": 100.0, "limit_what": "test",
                          "widths": {"512": {"by_threads": {"1": {"best_gbs": 100.0, "median_gbs": 100.0},
                                                            t: {"best_gbs": 100.0, "median_gbs": 100.0}}}}},
                   "DRAM": {"not_measured": "no working set of this run is larger than the L3"}},
        "read": {"512": {"hidden": 512, "bytes": 3 * 512 * 512 * 4, "levels": {"1": "L3"}, "fits_l2": {"1": False},
                         "methods": {"sgemv": {"best_gbs": 90.0, "median_gbs": 80.0, "threads": 1}},
                         "best_gbs": 90.0, "best_method": "sgemv"}},
        "sgemm": {"what": "sgemm", "size": 2048, "best_gflops": 200.0, "median_gflops": 190.0, "threads": threads},
    }


def synthetic_run(config):
    c = case(100, 64, 512)
    fastgru_s = c["flops"] / (140.0e9)  # 140 GFLOP/s: 50% of the 280 GFLOP/s FMA peak
    c["rows"] = {"fastgru": {"median_s": fastgru_s, "p90_s": fastgru_s, "min_s": fastgru_s, "samples": 5,
                             "calls_per_sample": 1, "max_abs_diff": 1e-7, "notes": []},
                 "onnxruntime": {"median_s": 2 * fastgru_s, "p90_s": 2 * fastgru_s, "min_s": fastgru_s,
                                 "samples": 5, "calls_per_sample": 1, "max_abs_diff": 1e-7}}
    worker = {"threads": 1, "config": config, "versions": {"numpy": "2"}, "not_applicable": {},
              "engines": {"fastgru": {"available": True, "version": "0.1", "peer": False, "precision": "float32"},
                          "onnxruntime": {"available": True, "version": "1", "peer": True, "precision": "float32"}},
              "cases": [c], "env": {}, "loadavg_start": [0.1, 0.1, 0.1], "loadavg_end": [0.1, 0.1, 0.1],
              "limits": synthetic_limits(),
              "blas": {"pin_vars": {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None},
                       "libraries": [{"user_api": "blas", "internal_api": "openblas", "version": "0.3.30",
                                      "architecture": "SkylakeX", "num_threads": 1, "file": "libopenblas.so"}]}}
    meta = {"command": "python bench/run.py", "date": "today", "git": "abc", "quick": False, "elapsed_s": 1.0,
            "machine": {"cpu": {"model": "Test CPU", "flags": ["avx2", "avx512f"], "caches": {"L2": "1024K"},
                                "usable_cpus": 1, "logical_cpus": 1},
                        "python": "3", "platform": "test"},
            "blas_pins": {"unset_in_workers": True, "parent": {"OPENBLAS_CORETYPE": "Haswell"}, "why_kept": None}}
    return meta, [worker]


SHOW_CONFIG = {"source": 'fastgru.show_config(mode="dicts")',
               "config": {"cpu": {"model": "Test CPU", "flags": ["avx2", "avx512f"]}, "kernel table": "avx512",
                          "why": "avx512f at full width", "threads": {"default": 1},
                          "blas": [{"name": "openblas", "kernel": "SkylakeX"}]}}
FALLBACK = {"source": "fallback (fastgru.show_config does not exist in this version): fastgru._core.best_isa()",
            "config": {"kernel table": "avx512vnni", "kernel tables this CPU runs": ["generic", "avx2"]}}


@pytest.mark.parametrize("config, expected", [
    (SHOW_CONFIG, ["- kernel table: avx512", "- why: avx512f at full width", "  - model: Test CPU",
                   "  - flags: avx2, avx512f", "  - name: openblas; kernel: SkylakeX"]),
    (FALLBACK, ["- kernel table: avx512vnni", "- kernel tables this CPU runs: generic, avx2"]),
])
def test_report_starts_with_the_configuration(config, expected):
    text = report.markdown(*synthetic_run(config))
    lines = text.splitlines()
    assert lines[0] == "# fastgru benchmark"
    first_section = next(line for line in lines if line.startswith("## "))
    assert first_section == "## Configuration"
    config_part = text[text.index("## Configuration"):text.index("## Run")]
    assert config["source"] in config_part
    for line in expected:
        assert line in config_part.splitlines()


def test_report_rates_rows_against_the_fma_peak_and_keeps_sgemm_as_reference():
    text = report.markdown(*synthetic_run(SHOW_CONFIG))
    row = next(line for line in text.splitlines() if line.startswith("| T100-B64-H512 | fastgru |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    header = next(line for line in text.splitlines() if line.startswith("| shape | engine |"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    values = dict(zip(columns, cells))
    assert values["GFLOP/s"] == "140.0"
    assert values["% FMA peak"] == "50%"
    assert values["% sgemm (ref)"] == "70%"
    assert values["% roof"] == "50%"
    assert "sgemm peak" not in text
    assert "**compute limit 280.0 GFLOP/s**" in text
    assert "kernel **SkylakeX**" in text
    assert "unset in every worker" in text


def summary_values(text, shape):
    """The summary table's cells of `shape`'s row, by column name."""
    header = next(line for line in text.splitlines() if line.startswith("| shape | T | B | H | fastgru engine |"))
    row = next(line for line in text.splitlines() if line.startswith(f"| {shape} | 100 |"))
    return dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))


def test_round_by_round_ratio_cancels_a_drift_that_slows_whole_rounds():
    # the peer always takes 1.2x fastgru's time in the same round, but the machine was three times
    # slower in the rounds where most of the peer's samples fell
    fastgru_rounds, peer_rounds = [1.0, 1.0, 1.0, 3.0, 3.0], [1.2, 1.2, 3.6, 3.6, 3.6]
    fastgru_stats, peer_stats = timing.summarize(fastgru_rounds, 1), timing.summarize(peer_rounds, 1)
    assert peer_stats["median_s"] / fastgru_stats["median_s"] == pytest.approx(3.6)
    assert timing.paired_ratio(peer_stats, fastgru_stats) == pytest.approx(1.2)
    assert timing.paired_ratio(fastgru_stats, peer_stats) == pytest.approx(1 / 1.2)


def test_round_by_round_ratio_is_none_without_per_round_samples():
    stats = timing.summarize([1.0, 2.0], 1)
    assert timing.paired_ratio(stats, {"median_s": 1.0}) is None
    assert timing.paired_ratio({"rounds_s": []}, stats) is None


def test_interleaving_keeps_one_sample_per_round_for_every_engine():
    def idle(n):
        pass

    stats = timing.interleaved({"a": idle, "b": idle}, budget_s=0.0, sample_s=1e-4, min_rounds=4, max_rounds=4)
    assert [len(stats[n]["rounds_s"]) for n in "ab"] == [4, 4]
    assert stats["a"]["samples"] == 4 and timing.paired_ratio(stats["a"], stats["b"]) > 0


def test_training_step_report_gives_the_round_by_round_ratio_beside_the_ratio_of_medians():
    import train_step

    row = {"p90_s": 1.0, "max_abs_diff": 1e-6, "max_rel_diff": 1e-7, "worst": "weight_hh_l0"}
    torch_row = {**row, "median_s": 3.0, "rounds_s": [3.0, 3.0, 9.0]}
    fastgru_row = {**row, "median_s": 1.0, "rounds_s": [1.0, 3.0, 3.0]}
    worker = {"threads": 1, "versions": {"torch": "2"}, "loadavg_start": [0.5], "loadavg_end": [0.5], "blas": {},
              "cases": [{"shape": "b16", "T": 100, "B": 16, "H": 512, "flops": 1e9,
                         "rows": {"torch": torch_row, "fastgru": fastgru_row}}]}
    line = next(line for line in train_step.markdown([worker]).splitlines() if "| fastgru |" in line)
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[-2:] == ["3.00x", "3.00x"]  # medians 3 / 1; rounds 3/1, 3/3, 9/3
    fastgru_row["rounds_s"] = [1.0, 3.0, 9.0]  # a slow spell in the last rounds: the rounds say 3/1, 3/3, 9/9
    line = next(line for line in train_step.markdown([worker]).splitlines() if "| fastgru |" in line)
    assert [cell.strip() for cell in line.strip("|").split("|")][-2:] == ["3.00x", "1.00x"]
    del fastgru_row["rounds_s"]  # results written before per-round samples were kept
    line = next(line for line in train_step.markdown([worker]).splitlines() if "| fastgru |" in line)
    assert [cell.strip() for cell in line.strip("|").split("|")][-2:] == ["3.00x", "-"]
    torch_line = next(line for line in train_step.markdown([worker]).splitlines() if "| torch |" in line)
    assert [cell.strip() for cell in torch_line.strip("|").split("|")][-2:] == ["", ""]


def test_interleaving_puts_each_engine_behind_different_neighbours_and_records_which():
    """Each round's order is drawn afresh, so no engine keeps the same predecessor (whose after-effect
    would then land on it in every round), and every sample names the engine timed just before it."""
    timed: list[str] = []

    def runner(name):
        def run(n):
            timed.append(name)
        return run

    names = [f"e{i}" for i in range(6)]
    stats = timing.interleaved({n: runner(n) for n in names}, budget_s=0.0, sample_s=1e-9, min_rounds=30,
                               max_rounds=30, warmup_calls=1)
    samples = timed[-30 * len(names):]  # after calibration: one call per sample (inner = 1)
    assert all(stats[n]["calls_per_sample"] == 1 for n in names)
    rounds = [samples[r * len(names):(r + 1) * len(names)] for r in range(30)]
    assert all(sorted(order) == names for order in rounds)
    for name in names:
        predecessors = [samples[i - 1] if i else None for i, s in enumerate(samples) if s == name]
        assert stats[name]["after"] == predecessors
        assert len(set(predecessors) - {None}) >= 4, (name, predecessors)
    assert len({tuple(order) for order in rounds}) > 20
    # the same orders in every run: figures of two runs compare sample for sample
    timed.clear()
    again = timing.interleaved({n: runner(n) for n in names}, budget_s=0.0, sample_s=1e-9, min_rounds=30,
                               max_rounds=30, warmup_calls=1)
    assert all(again[n]["after"] == stats[n]["after"] for n in names)


def test_report_gives_the_round_by_round_ratio_beside_the_ratio_of_medians():
    meta, workers = synthetic_run(SHOW_CONFIG)
    text = report.markdown(meta, workers)
    assert summary_values(text, "T100-B64-H512")["round by round"] == "-"  # a result without rounds_s
    rows = workers[0]["cases"][0]["rows"]
    seconds = rows["fastgru"]["median_s"]
    rows["fastgru"]["rounds_s"] = [seconds, seconds, 3 * seconds]
    rows["onnxruntime"]["rounds_s"] = [1.5 * seconds, 6 * seconds, 6 * seconds]
    values = summary_values(report.markdown(meta, workers), "T100-B64-H512")
    assert values["speedup"] == "**2.00x**" and values["round by round"] == "2.00x"
    rows["onnxruntime"]["rounds_s"] = [1.5 * seconds, 1.5 * seconds, 4.5 * seconds]
    assert summary_values(report.markdown(meta, workers), "T100-B64-H512")["round by round"] == "1.50x"


def test_shares_go_into_the_json_rows_as_in_the_tables():
    meta, workers = synthetic_run(SHOW_CONFIG)
    report.annotate_shares(workers)
    row = workers[0]["cases"][0]["rows"]["fastgru"]["vs_limits"]
    assert row["pct_fma"] == pytest.approx(50.0) and row["pct_roof"] == pytest.approx(50.0)
    assert row["level"] == "L3" and row["bounds"] == {"input projection": "FMA peak", "recurrence": "FMA peak"}
    json.dumps(workers)  # JSON-safe as written to bench.json


@pytest.mark.parametrize("after, expected, share", [
    ({"gflops": 210.0, "width": 512, "of_before": 0.75},
     "measured again after the cases: 210.0 GFLOP/s best, 75% of the figure before them; the machine ran slower",
     "50%"),
    ({"gflops": 279.0, "width": 512, "of_before": 279.0 / 280.0, "median_gflops": 270.0, "median_of_before": 0.99},
     "measured again after the cases: 279.0 GFLOP/s best, 100% of the figure before them (median 270.0, 99% of "
     "the median before); the machine kept its speed", "50%"),
    ({"gflops": 279.0, "width": 512, "of_before": 279.0 / 280.0, "median_gflops": 200.0, "median_of_before": 0.72},
     "(median 200.0, 72% of the median before); the machine ran slower", "50%"),
    # faster after the cases: the shares are against the faster figure (140 GFLOP/s of 350, not of 280)
    ({"gflops": 350.0, "width": 512, "of_before": 1.25, "median_gflops": 340.0, "median_of_before": 1.2},
     "125% of the figure before them (median 340.0, 120% of the median before); the machine kept its speed. The "
     "shares of the FMA peak are against the higher of the two best samples (350.0 GFLOP/s).", "40%"),
    ({"not_measured": "no FMA peak was measured before the cases"},
     "FMA loop after the cases: not measured: no FMA peak was measured before the cases", "50%"),
])
def test_report_says_how_far_the_fma_peak_drifted_and_rates_against_the_higher_figure(after, expected, share):
    meta, workers = synthetic_run(SHOW_CONFIG)
    workers[0]["fma_after"] = after
    text = report.markdown(meta, workers)
    assert expected in text
    row = next(line for line in text.splitlines() if line.startswith("| T100-B64-H512 | fastgru |"))
    assert f"| {share} |" in row
    report.annotate_shares(workers)
    assert workers[0]["cases"][0]["rows"]["fastgru"]["vs_limits"]["pct_fma"] == pytest.approx(float(share[:-1]))


def test_fma_after_needs_a_peak_from_before_the_cases():
    assert limits.fma_after({"fma": {"not_measured": "no C compiler (cc: not found)", "peak_gflops": None}},
                            quick=True) == {"not_measured": "no C compiler (cc: not found)"}


def test_report_on_a_cpu_without_avx512_and_without_threadpoolctl():
    meta, workers = synthetic_run(FALLBACK)
    fma = workers[0]["limits"]["fma"]
    fma["widths"]["512"] = {"not_measured": "this CPU lacks avx512f"}
    fma.pop("ratio_512_256")
    fma.update(widest=256, peak_gflops=140.0, peak_what="256-bit FMA loop")
    workers[0]["blas"] = {"pin_vars": {}, "libraries": None, "missing": "threadpoolctl is not installed"}
    text = report.markdown(meta, workers)
    assert "| FMA 512-bit | - | not measured: this CPU lacks avx512f |" in text
    assert "not measured: no 512-bit FMA on this CPU" in text
    assert "**compute limit 140.0 GFLOP/s**" in text
    assert "BLAS libraries: not known: threadpoolctl is not installed" in text
    row = next(line for line in text.splitlines() if line.startswith("| T100-B64-H512 | fastgru |"))
    assert "| 100% |" in row  # 140 GFLOP/s against the 256-bit peak


def test_report_limits_say_not_measured_and_why():
    meta, workers = synthetic_run(FALLBACK)
    workers[0]["limits"]["fma"] = {"not_measured": "no C compiler (cc: not found)", "peak_gflops": None}
    text = report.markdown(meta, workers)
    assert "not measured: no C compiler (cc: not found)" in text
    assert "not measured: no working set of this run is larger than the L3" in text
    row = next(line for line in text.splitlines() if line.startswith("| T100-B64-H512 | fastgru |"))
    assert "| - |" in row  # no % FMA peak without an FMA peak


# ------------------------------------------------------------------------------- engines


@pytest.mark.parametrize("tables, applies", [(["generic", "avx2", "avx512vl_vnni", "avx512_vnni"], True),
                                             (["generic", "avx2"], False), (["generic"], False)])
def test_avx2_engines_appear_only_where_a_wider_table_exists(monkeypatch, tables, applies):
    monkeypatch.setattr(engines, "kernel_tables", lambda: tables)
    for name in ("fastgru-avx2", "fastgru-avx2-stream", "fastgru-int8-avx2"):
        assert (engines.ENGINES[name].not_applicable() is None) is applies
    assert engines.ENGINES["fastgru"].not_applicable() is None


def test_the_largest_int8_row_is_rated_against_a_read_of_a_buffer_its_size():
    """H=2816's int8 W_hh (23.8 MB) nearly fills a 32 MiB L3: the report rates its stream against the
    read loop over a buffer of that size (limits' read_int8), not the L3 level's 4 MiB probe."""
    meta, workers = synthetic_run(SHOW_CONFIG)
    worker = workers[0]
    large = case(1500, 1, 2816, I=1)
    large["shape"] = "deepbench-server-2816-recurrent"
    median = 3 * 2816 * 2816 * 1500 / 80e9  # its int8 W_hh at 80 GB/s a step
    large["rows"] = {"fastgru-int8": {"median_s": median, "p90_s": median, "min_s": median, "samples": 5,
                                      "calls_per_sample": 1, "max_abs_diff": 1e-3, "notes": []}}
    worker["cases"].append(large)
    worker["engines"]["fastgru-int8"] = {"available": True, "version": "0.1", "peer": False, "precision": "int8"}
    nbytes = 3 * 2816 * 2816
    worker["limits"]["read_int8"] = {"2816": {
        "hidden": 2816, "bytes": nbytes, "bytes_per_weight": 1, "levels": {"1": "L3"}, "fits_l2": {"1": False},
        "methods": {"c-read 256-bit x1": {"threads": 1, "best_gbs": 90.0, "median_gbs": 88.0},
                    "c-read 512-bit x1": {"threads": 1, "best_gbs": 100.0, "median_gbs": 95.0},
                    "numpy-sum": {"threads": 1, "best_gbs": 20.0, "median_gbs": 19.0}},
        "best_gbs": 100.0, "best_method": "c-read 512-bit x1"}}
    text = report.markdown(meta, workers)
    assert ("Its W_hh streams at 80 GB/s, 80% of the read loop over a buffer its size (100 GB/s, "
            "c-read 512-bit x1, best sample).") in text
    assert "- W_hh H=2816 (22.69 MiB int8)" in text
    del worker["limits"]["read_int8"]  # a run from before it was measured: no claim
    assert "Its W_hh streams" not in report.markdown(meta, workers)


def test_whh_read_measures_a_buffer_of_the_weights_bytes():
    caches = dict(ZEN5_CACHES, source="test")
    cpus = [sorted(os.sched_getaffinity(0))[0]] if hasattr(os, "sched_getaffinity") else [0]
    float32 = limits.whh_read(64, 1, cpus, caches, samples=1, target_s=1e-3, min_sample_s=1e-4)
    int8 = limits.whh_read(64, 1, cpus, caches, samples=1, target_s=1e-3, min_sample_s=1e-4, bytes_per_weight=1)
    assert (float32["bytes"], int8["bytes"]) == (3 * 64 * 64 * 4, 3 * 64 * 64)
    assert "sgemv" in float32["methods"] and "sgemv" not in int8["methods"]  # sgemv reads float32 only
    assert int8["best_gbs"] > 0 and int8["methods"]["numpy-sum"]["best_gbs"] > 0


def test_the_largest_deepbench_shape_runs_on_int8_engines_only():
    import shapes

    large = next(s for s in shapes.INT8_EXTRA if s.hidden == 2816)
    assert (large.seq_len, large.batch, large.input_size) == (1500, 1, 1)
    for name, engine in engines.ENGINES.items():
        assert engine.supports(large) == (engine.precision == "int8" and not name.endswith("-stream")), name
    assert all(engine.supports(shapes.INT8_EXTRA[0]) for name, engine in engines.ENGINES.items()
               if not name.endswith("-stream"))


def test_forced_kernel_table_restores_the_default_even_on_error(fastgru_module, monkeypatch):
    from fastgru import _core

    calls = []
    monkeypatch.setattr(_core, "set_backend", lambda **kwargs: calls.append(kwargs), raising=False)
    with pytest.raises(ValueError):
        with engines.forced_kernel_table("avx2"):
            assert calls == [{"isa": "avx2"}]
            raise ValueError("engine failed")
    assert calls == [{"isa": "avx2"}, {}]


# ------------------------------------------------------------------------------- the measuring loops


def test_limits_say_not_measured_without_a_compiler(monkeypatch):
    monkeypatch.setattr(compiled, "_loaded", {})
    monkeypatch.setenv("CC", "/nonexistent/cc")
    reason = compiled.load("fma_peak", {})
    assert isinstance(reason, str) and "no C compiler" in reason
    assert limits.fma_peaks(1, [0], 1, samples=1, target_s=1e-3) == {"not_measured": reason, "peak_gflops": None}
    assert limits.int8_peaks(1, [0], 1, samples=1, target_s=1e-3) == {"not_measured": reason, "peak_gflops": None}
    levels = limits.level_bandwidths(1, [0], 1, ZEN5_CACHES, False, samples=1, target_s=1e-3)
    assert all("not_measured" in entry for entry in levels.values())
    assert not any("limit_gbs" in entry for entry in levels.values())


class _LoopsNoneSupported:
    """A compiled fma_peak stand-in on a CPU that runs none of a loop's widths (the vpdpbusd loops on
    an AVX2-only CPU such as a Zen 3)."""

    def __getattr__(self, name):
        if name.endswith("_supported"):
            return lambda width: 0
        raise AssertionError(f"{name} called although no width is supported")


def test_interleaving_nothing_measures_nothing():
    assert limits._interleaved({}, target_s=1e-3, samples=3) == {}


def test_a_loop_no_width_of_which_the_cpu_runs_is_not_measured_and_says_why(monkeypatch):
    monkeypatch.setattr(compiled, "load", lambda name, signatures: _LoopsNoneSupported())
    out = limits.fma_peaks(2, [0, 1], 2, samples=3, target_s=1e-3)
    assert out["not_measured"] == "this CPU has no FMA"
    assert out["peak_gflops"] is None
    assert out["widths"] == {str(w): {"not_measured": f"this CPU lacks {limits._WIDTH_FLAG[w]}"}
                             for w in limits.FMA_WIDTHS}


def test_int8_peak_without_vnni_or_avx2_says_neither_runs(monkeypatch):
    monkeypatch.setattr(compiled, "load", lambda name, signatures: _LoopsNoneSupported())
    out = limits.int8_peaks(2, [0, 1], 2, samples=3, target_s=1e-3)
    assert out["not_measured"] == "this CPU has neither AVX-512 VNNI nor AVX2"
    assert out["peak_gflops"] is None and out["loop"] == "vpmaddubsw"
    assert out["widths"] == {"256": {"not_measured": "this CPU lacks avx2"}}


needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc").split()[0]) is None, reason="no C compiler")


@needs_cc
def test_fma_loop_counts_the_flops_it_does(monkeypatch):
    monkeypatch.setattr(compiled, "_loaded", {})
    lib = compiled.load("fma_peak", limits._FMA_SIGNATURES)
    assert not isinstance(lib, str), lib
    flags = set(common.cpu_info()["flags"])
    assert bool(lib.bench_fma_supported(512)) == ("avx512f" in flags)
    assert not lib.bench_fma_supported(64)
    cpus = (ctypes.c_int * 2)(-1, -1)
    flops, seconds, sink = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
    for width, lanes, chains in ((128, 4, 12), (256, 8, 12), (512, 16, 16)):
        if not lib.bench_fma_supported(width):
            continue
        assert lib.bench_fma(width, 10, 2, cpus, ctypes.byref(flops), ctypes.byref(seconds), ctypes.byref(sink)) == 0
        assert flops.value == 2 * 10 * chains * lanes * 2
        assert np.isfinite(sink.value) and seconds.value >= 0
    assert lib.bench_fma(64, 10, 1, cpus, ctypes.byref(flops), ctypes.byref(seconds), ctypes.byref(sink)) == -1


@needs_cc
def test_fma_after_measures_the_widest_loop_again_against_the_figure_before():
    before = {"threads": 1, "cores": 1, "cpus": [-1],
              "fma": limits.fma_peaks(1, [-1], 1, samples=2, target_s=1e-3)}
    after = limits.fma_after(before, quick=True)
    assert after["width"] == before["fma"]["widest"]
    assert after["gflops"] > 0
    assert after["of_before"] == pytest.approx(after["gflops"] / before["fma"]["peak_gflops"])
    median_before = before["fma"]["widths"][str(after["width"])]["by_threads"]["1"]["median_gflops"]
    assert after["median_of_before"] == pytest.approx(after["median_gflops"] / median_before)


@needs_cc
def test_int8_loop_counts_the_operations_it_does_and_does_them(monkeypatch):
    """Each of 16 chains starts at its index and adds 4 products of 1 x 2 per lane and iteration, so the
    lanes' sum is exact: the loop ran every instruction it counts."""
    monkeypatch.setattr(compiled, "_loaded", {})
    lib = compiled.load("fma_peak", limits._FMA_SIGNATURES)
    assert not isinstance(lib, str), lib
    flags = set(common.cpu_info()["flags"])
    assert bool(lib.bench_dot_i8_supported(512)) == ("avx512_vnni" in flags and "avx512f" in flags)
    assert not lib.bench_dot_i8_supported(128)
    cpus = (ctypes.c_int * 2)(-1, -1)
    ops, seconds, sink = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
    reps = 10
    for width, lanes in ((256, 8), (512, 16)):
        if not lib.bench_dot_i8_supported(width):
            continue
        assert lib.bench_dot_i8(width, reps, 2, cpus, ctypes.byref(ops), ctypes.byref(seconds),
                                ctypes.byref(sink)) == 0
        assert ops.value == 2 * reps * 16 * lanes * 4 * 2
        assert sink.value == 2 * lanes * sum(k + 8 * reps for k in range(16))
    assert lib.bench_dot_i8(128, 10, 1, cpus, ctypes.byref(ops), ctypes.byref(seconds), ctypes.byref(sink)) == -1


@needs_cc
def test_int8_peak_comes_from_the_loop_of_the_instructions_this_cpu_runs():
    flags = set(common.cpu_info()["flags"])
    out = limits.int8_peaks(1, [-1], 1, samples=2, target_s=1e-3)
    vnni = "avx512_vnni" in flags and "avx512f" in flags
    assert out["loop"] == ("vpdpbusd" if vnni else "vpmaddubsw")
    assert out["peak_gflops"] > 0 and out["loop"].split()[0] in out["peak_what"]


@needs_cc
def test_avx2_int8_loop_counts_the_operations_it_does_and_does_them(monkeypatch):
    """Each of 12 chains starts at its index and adds, per int32 lane and iteration, two pairs of byte
    products 1 x 2 (vpmaddubsw) summed by vpmaddwd: 8. The lanes' sum is exact: the loop ran every
    product it counts."""
    monkeypatch.setattr(compiled, "_loaded", {})
    lib = compiled.load("fma_peak", limits._FMA_SIGNATURES)
    assert not isinstance(lib, str), lib
    assert bool(lib.bench_madd_i8_supported(256)) == ("avx2" in set(common.cpu_info()["flags"]))
    assert not lib.bench_madd_i8_supported(512)
    cpus = (ctypes.c_int * 2)(-1, -1)
    ops, seconds, sink = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
    reps = 10
    if lib.bench_madd_i8_supported(256):
        assert lib.bench_madd_i8(256, reps, 2, cpus, ctypes.byref(ops), ctypes.byref(seconds), ctypes.byref(sink)) == 0
        assert ops.value == 2 * reps * 12 * 32 * 2
        assert sink.value == 2 * 8 * sum(k + 8 * reps for k in range(12))
    assert lib.bench_madd_i8(512, 10, 1, cpus, ctypes.byref(ops), ctypes.byref(seconds), ctypes.byref(sink)) == -1


@needs_cc
def test_read_loop_reads_whole_blocks_of_each_threads_slice(monkeypatch):
    monkeypatch.setattr(compiled, "_loaded", {})
    lib = compiled.load("read_kernel", limits._READ_SIGNATURES)
    assert not isinstance(lib, str), lib
    buf = limits._aligned_floats(1000)
    assert buf.ctypes.data % 64 == 0 and np.all(buf == 1.0)
    cpus = (ctypes.c_int * 2)(-1, -1)
    nbytes, seconds, sink = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
    for width in (32, 256, 512):
        if not lib.bench_read_supported(width):
            continue
        assert lib.bench_read(width, buf.ctypes.data, buf.size, 3, 2, cpus, ctypes.byref(nbytes),
                              ctypes.byref(seconds), ctypes.byref(sink)) == 0
        slice_floats = 1000 // 2 // 128 * 128  # 384 floats per thread
        assert nbytes.value == 2 * 3 * slice_floats * 4
        assert sink.value == 2 * 3 * slice_floats  # a sum of ones: every float of the slices was read
    # a slice under one block is refused, not read short
    assert lib.bench_read(256, buf.ctypes.data, 100, 1, 1, cpus, ctypes.byref(nbytes), ctypes.byref(seconds),
                          ctypes.byref(sink)) == -1
