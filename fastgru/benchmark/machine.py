"""The machine a figure comes from: the CPU (model, family, flags, caches, usable CPUs) and fastgru's own
description of its configuration (the kernel table it runs). Every benchmark report names both."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def cpu_info() -> dict:
    """The CPU this process runs on: model name, family and model numbers, the SIMD flags fastgru's kernels
    care about, CPU 0's cache sizes (sysfs), and the logical and usable CPUs."""
    info: dict = {"model": platform.processor() or "unknown", "flags": [], "caches": {}}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and info["model"] in ("unknown", "x86_64", ""):
                info["model"] = value.strip()
            elif key == "flags" and not info["flags"]:
                wanted = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")
                present = set(value.split())
                info["flags"] = [f for f in wanted if f in present]
            elif key == "cpu family":
                info["family"] = value.strip()
            elif key == "model" and "model_number" not in info:
                info["model_number"] = value.strip()
    except OSError:
        pass
    cache_dir = Path("/sys/devices/system/cpu/cpu0/cache")
    if cache_dir.is_dir():
        for index in sorted(cache_dir.glob("index*")):
            try:
                level = (index / "level").read_text().strip()
                kind = (index / "type").read_text().strip()
                size = (index / "size").read_text().strip()
            except OSError:
                continue
            name = f"L{level}" + ("d" if kind == "Data" else "i" if kind == "Instruction" else "")
            info["caches"][name] = size
    info["logical_cpus"] = os.cpu_count()
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["usable_cpus"] = os.cpu_count()
    return info


def fastgru_config() -> dict:
    """fastgru's own description of its configuration: ``fastgru.show_config(mode="dicts")`` where
    that function exists, else what ``fastgru._core.best_isa()`` and ``cpu_info()`` say. Returns
    {"source": how it was obtained, "config": the dict (JSON-safe)}."""
    import fastgru

    show_config = getattr(fastgru, "show_config", None)
    reason = "fastgru.show_config does not exist in this version"
    if callable(show_config):
        try:
            config = show_config(mode="dicts")
            return {"source": 'fastgru.show_config(mode="dicts")', "config": _json_safe(config)}
        except Exception as exc:  # noqa: BLE001 - a broken show_config is reported, not fatal
            reason = f'fastgru.show_config(mode="dicts") failed: {type(exc).__name__}: {exc}'.splitlines()[0][:200]
    config: dict = {"fastgru": str(getattr(fastgru, "__version__", "unknown"))}
    try:
        from fastgru import _core

        config["kernel table"] = _core.best_isa()
        config["kernel tables this CPU runs"] = list(_core.supported_isas())
    except (ImportError, AttributeError) as exc:
        config["kernel table"] = f"unknown ({type(exc).__name__}: {exc})"
    cpu = cpu_info()
    config["cpu"] = {k: cpu.get(k) for k in ("model", "family", "model_number", "flags", "caches",
                                             "logical_cpus", "usable_cpus")}
    return {"source": f"fallback ({reason}): fastgru._core.best_isa() and cpu_info()",
            "config": config}


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


def kernel_table() -> str:
    """The kernel table fastgru picks on this CPU (``fastgru._core.best_isa()``: "avx512vnni", "avx2" or
    "generic"); `fastgru_config` has the whole configuration."""
    try:
        from fastgru import _core

        return str(_core.best_isa())
    except (ImportError, AttributeError) as error:
        return f"unknown ({type(error).__name__}: {error})"
