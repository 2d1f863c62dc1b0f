"""What every benchmark script shares: thread environment, machine description, versions, workers.

Thread counts are fixed per process: each thread count runs in its own fresh subprocess whose
environment pins every thread pool before any library is imported (OpenBLAS, OpenMP and MKL read
their variables once, at load time; `fastgru.benchmark.workers`, which ``fastgru bench`` uses too).

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

# The worker machinery, the timing and the machine description live in the package (fastgru.benchmark), where
# the `fastgru bench` command uses them too; these names are the benchmark scripts' handles on them.
from fastgru.benchmark.frameworks import pin_torch_threads  # noqa: E402,F401
from fastgru.benchmark.machine import cpu_info, fastgru_config  # noqa: E402,F401
from fastgru.benchmark.timing import format_seconds, paired_ratio  # noqa: E402,F401
from fastgru.benchmark.workers import (BLAS_PIN_VARS, THREAD_ENV_VARS, WorkerError,  # noqa: E402,F401
                                       thread_env)
from fastgru.benchmark import workers as _workers  # noqa: E402


def run_worker(script: str, args: list[str], num_threads: int, unpin_blas: bool = True) -> dict:
    """Runs ``bench/<script> --worker ...`` in a fresh process pinned to ``num_threads`` (and, with
    ``unpin_blas``, without BLAS_PIN_VARS: ``thread_env``); returns its JSON.

    The worker's progress goes to our stdout as it comes; its result is the JSON file it writes.
    """
    try:
        return _workers.run_worker([sys.executable, str(BENCH_DIR / script), *args], num_threads, unpin_blas)
    except WorkerError as error:
        raise SystemExit(str(error)) from None


def parse_threads(text: str) -> list[int]:
    try:
        return _workers.parse_threads(text)
    except ValueError as error:
        raise SystemExit(f"--threads: {error}") from None


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
