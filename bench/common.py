"""What every benchmark script shares: thread environment, machine description, versions, workers.

Thread counts are fixed per process: each thread count runs in its own fresh subprocess whose
environment pins every thread pool before any library is imported (OpenBLAS, OpenMP and MKL read
their variables once, at load time). ``threadpoolctl`` would do this at run time but is not a
dependency.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
# An installed fastgru wins; else the source tree's (e.g. after `setup.py build_ext --inplace`).
if str(REPO_DIR) not in sys.path:
    sys.path.append(str(REPO_DIR))

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(num_threads: int) -> dict[str, str]:
    """The environment of a worker that must use ``num_threads`` threads everywhere."""
    env = dict(os.environ)
    for name in THREAD_ENV_VARS:
        env[name] = str(num_threads)
    # Keras must not pick TensorFlow (not installed) and must not print its banner.
    env.setdefault("KERAS_BACKEND", "torch")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def run_worker(script: str, args: list[str], num_threads: int) -> dict:
    """Runs ``bench/<script> --worker ...`` in a fresh process pinned to ``num_threads``; returns its JSON.

    The worker's progress goes to our stdout as it comes; its result is the JSON file it writes.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, str(BENCH_DIR / script), "--worker", "--threads", str(num_threads),
               "--json", str(result_path), *args]
        proc = subprocess.run(cmd, env=thread_env(num_threads))
        if proc.returncode != 0 or not result_path.exists():
            raise SystemExit(f"worker for {num_threads} thread(s) failed with exit code {proc.returncode}")
        return json.loads(result_path.read_text())


def pin_torch_threads(num_threads: int) -> None:
    import torch

    torch.set_num_threads(num_threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already started
        pass


def cpu_info() -> dict:
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


def describe_machine() -> dict:
    return {
        "cpu": cpu_info(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def loadavg() -> list[float] | None:
    return _loadavg()


def versions(modules=("numpy", "scipy", "torch", "onnx", "onnxruntime", "keras", "fastgru")) -> dict:
    """Version of each module, or why it is unavailable. Call inside a worker (imports are not free)."""
    out = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
            out[name] = str(getattr(module, "__version__", "unknown"))
        except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
            out[name] = f"unavailable ({type(exc).__name__}: {exc})".splitlines()[0][:160]
    if "keras" in out and not out["keras"].startswith("unavailable"):
        out["keras"] += f" (backend {os.environ.get('KERAS_BACKEND', '?')})"
    try:
        import numpy

        config = numpy.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        out["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001
        pass
    try:
        import scipy

        config = scipy.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        out["scipy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001
        pass
    return out


def parse_threads(text: str) -> list[int]:
    counts = [int(t) for t in text.split(",") if t.strip()]
    if not counts or any(t < 1 for t in counts):
        raise SystemExit(f"--threads must be a comma-separated list of positive integers, got {text!r}")
    return counts


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"
