"""What every benchmark script shares: thread environment, machine description, versions, workers.

Thread counts are fixed per process: each thread count runs in its own fresh subprocess whose
environment pins every thread pool before any library is imported (OpenBLAS, OpenMP and MKL read
their variables once, at load time).

The same environment drops OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE where they are set: they pin
OpenBLAS (scipy's and numpy's) to one CPU's kernels (e.g. Haswell, AVX2 only), which makes every BLAS
figure, and every engine that calls BLAS, slower than on the same machine without them, which is
what users have. Only the workers' environments change; the calling process keeps its own, and
``--quick`` runs (CI's smoke run) keep the variables, as tests and CI must.
"""

from __future__ import annotations

import argparse
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
# Variables that pin OpenBLAS to one CPU's kernels instead of the one it detects (module docstring).
BLAS_PIN_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def thread_env(num_threads: int, unpin_blas: bool = True, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker that must use ``num_threads`` threads everywhere.

    A new dict built from ``base`` (default: this process's environment, which is left as it is);
    with ``unpin_blas`` it lacks BLAS_PIN_VARS, so OpenBLAS picks the kernels of the CPU it runs on."""
    env = dict(os.environ if base is None else base)
    for name in THREAD_ENV_VARS:
        env[name] = str(num_threads)
    if unpin_blas:
        for name in BLAS_PIN_VARS:
            env.pop(name, None)
    # Keras must not pick TensorFlow (not installed) and must not print its banner.
    env.setdefault("KERAS_BACKEND", "torch")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def run_worker(script: str, args: list[str], num_threads: int, unpin_blas: bool = True) -> dict:
    """Runs ``bench/<script> --worker ...`` in a fresh process pinned to ``num_threads`` (and, with
    ``unpin_blas``, without BLAS_PIN_VARS: ``thread_env``); returns its JSON.

    The worker's progress goes to our stdout as it comes; its result is the JSON file it writes.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, str(BENCH_DIR / script), "--worker", "--threads", str(num_threads),
               "--json", str(result_path), *args]
        proc = subprocess.run(cmd, env=thread_env(num_threads, unpin_blas))
        if proc.returncode != 0 or not result_path.exists():
            raise SystemExit(f"worker for {num_threads} thread(s) failed with exit code {proc.returncode}")
        return json.loads(result_path.read_text())


def worker_main(script: str, doc: str, worker, markdown, default_threads: str = "1,2") -> None:
    """The command line of a script that runs one worker per thread count (train_step.py, wholemodel.py):
    ``--quick``, ``--threads``, ``--out``, ``--keep-blas-pins``. In a worker process (``--worker``) runs
    ``worker(args)``; else starts the workers (without BLAS_PIN_VARS unless ``--quick`` or
    ``--keep-blas-pins``), writes ``markdown(workers)`` to ``<out>/<stem>.md`` and the workers' results to
    ``<out>/<stem>.json``, and prints the report."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", default=default_threads)
    p.add_argument("--out", default=str(BENCH_DIR / "results"))
    p.add_argument("--keep-blas-pins", action="store_true",
                   help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE in the workers (--quick always does)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    unpin = not (args.quick or args.keep_blas_pins)  # CI's smoke run keeps the pins (module docstring)
    workers = [run_worker(script, ["--quick"] if args.quick else [], t, unpin_blas=unpin)
               for t in parse_threads(args.threads)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(workers)
    stem = Path(script).stem
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(workers, indent=1))
    print()
    print(text)


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


def parse_cache_size(text: str) -> int | None:
    """Bytes of a cache size as sysfs writes it ("48K", "1024K", "32M") or getconf does ("1048576")."""
    text = text.strip().upper().removesuffix("B").strip()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in "KMG" else text
    try:
        value = int(digits) * scale
    except ValueError:
        return None
    return value or None  # getconf prints 0 or nothing for a level it does not know


def cache_sizes(sysfs_dir: Path = Path("/sys/devices/system/cpu/cpu0/cache"),
                getconf: str = "getconf") -> dict:
    """Data (or unified) cache sizes of CPU 0 in bytes, {"L1d": ..., "L2": ..., "L3": ..., "source": ...}.

    From sysfs, which gives one instance's size (a core's L2, a CCX's L3); else from ``getconf``,
    which may give a whole socket's L3 (it does on this kind of VM: 384 MB against sysfs's 32 MB), so
    sysfs wins wherever it is readable. Levels that neither source gives are absent."""
    sizes: dict = {}
    if sysfs_dir.is_dir():
        for index in sorted(sysfs_dir.glob("index*")):
            try:
                level = (index / "level").read_text().strip()
                kind = (index / "type").read_text().strip()
                size = parse_cache_size((index / "size").read_text())
            except OSError:
                continue
            if kind in ("Data", "Unified") and size:
                sizes["L1d" if level == "1" else f"L{level}"] = size
    if sizes:
        sizes["source"] = str(sysfs_dir)
        return sizes
    for name, key in (("L1d", "LEVEL1_DCACHE_SIZE"), ("L2", "LEVEL2_CACHE_SIZE"), ("L3", "LEVEL3_CACHE_SIZE")):
        try:
            out = subprocess.run([getconf, key], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            break
        size = parse_cache_size(out) if out.strip() else None
        if size:
            sizes[name] = size
    sizes["source"] = "getconf" if sizes else "unknown (no sysfs cache entries, no getconf)"
    return sizes


def cpus_one_per_core(allowed: list[int], core_of: dict[int, object]) -> list[int]:
    """The allowed CPUs ordered so that the first ones are on distinct cores (the first CPU of each
    core, in ``allowed``'s order), then the remaining SMT siblings. ``core_of`` maps a CPU to its
    core's identity; CPUs missing from it count as cores of their own."""
    seen: set = set()
    first, rest = [], []
    for cpu in allowed:
        core = core_of.get(cpu, ("cpu", cpu))
        (rest if core in seen else first).append(cpu)
        seen.add(core)
    return first + rest


def cpu_cores() -> tuple[list[int], int]:
    """(this process's allowed CPUs, one per core first; the number of distinct cores among them)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        allowed = list(range(os.cpu_count() or 1))
    core_of = {}
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            core_of[cpu] = ((topology / "physical_package_id").read_text().strip(),
                            (topology / "core_id").read_text().strip())
        except OSError:
            pass
    ordered = cpus_one_per_core(allowed, core_of)
    cores = len({core_of.get(c, ("cpu", c)) for c in allowed})
    return ordered, cores


def blas_info() -> dict:
    """The BLAS (and OpenMP) libraries loaded in this process, per threadpoolctl: which library, its
    kernel (OpenBLAS's ``architecture``: the CPU type whose kernels it runs), version and threads;
    and the BLAS pin variables as this process sees them. Call after the libraries are imported.
    threadpoolctl is optional (the ``bench`` extra): without it, the answer says so."""
    out: dict = {"pin_vars": {name: os.environ.get(name) for name in BLAS_PIN_VARS}}
    try:
        from threadpoolctl import threadpool_info
    except ImportError as exc:
        out["libraries"] = None
        out["missing"] = f"threadpoolctl is not installed ({exc}); pip install 'fastgru[bench]' to name the BLAS kernels"
        return out
    keys = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads", "threading_layer")
    out["libraries"] = [{k: info.get(k) for k in keys} | {"file": Path(info.get("filepath") or "?").name}
                        for info in threadpool_info()]
    return out


def blas_warning(blas: dict, cpu_flags: list[str]) -> str | None:
    """Why the BLAS figures of a worker are not the machine's, or None: an OpenBLAS running its
    Haswell (AVX2) kernels on a CPU with AVX-512, or a pin variable still set."""
    pinned = {k: v for k, v in blas.get("pin_vars", {}).items() if v is not None}
    haswell = [lib for lib in blas.get("libraries") or []
               if lib.get("internal_api") == "openblas" and str(lib.get("architecture")).lower() == "haswell"]
    if haswell and "avx512f" in cpu_flags:
        names = ", ".join(f"{lib['file']} {lib['version']}" for lib in haswell)
        return (f"OpenBLAS runs its Haswell (AVX2) kernels on this AVX-512 CPU ({names})"
                + (f" because {', '.join(f'{k}={v}' for k, v in pinned.items())} is set" if pinned else "")
                + ": its figures are not the machine's.")
    if pinned:
        return (f"{', '.join(f'{k}={v}' for k, v in pinned.items())} set in this worker: OpenBLAS's kernels "
                "are pinned, not the ones it would pick for this CPU.")
    return None


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
    return {"source": f"fallback ({reason}): fastgru._core.best_isa() and bench/common.py cpu_info()",
            "config": config}


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


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
