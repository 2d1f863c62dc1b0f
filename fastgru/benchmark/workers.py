"""One worker process per thread count.

Thread counts are fixed per process: each thread count runs in its own fresh subprocess whose
environment pins every thread pool before any library is imported (OpenBLAS, OpenMP and MKL read
their variables once, at load time, so a process cannot change them later).

``unpin_blas`` drops OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE from a worker's environment: they pin
OpenBLAS (scipy's and numpy's) to one CPU's kernels (e.g. Haswell, AVX2 only), which makes every BLAS
figure, and every engine that calls BLAS, slower than on the same machine without them. Only the
workers' environments change; the calling process keeps its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Variables that pin OpenBLAS to one CPU's kernels instead of the one it detects (module docstring).
BLAS_PIN_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


class WorkerError(RuntimeError):
    """A worker process failed (its own message went to stderr); ``returncode`` is its exit status."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


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


def run_worker(command: list[str], num_threads: int, unpin_blas: bool = True,
               base: dict[str, str] | None = None) -> dict:
    """Runs ``command --worker --threads <num_threads> --json <file>`` in a fresh process with
    `thread_env` (of ``base``, default this process's environment); returns the JSON the worker wrote
    to ``<file>``.

    The worker's stdout and stderr are this process's (its progress shows as it comes); a worker that
    exits non-zero or writes no result raises `WorkerError`."""
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [*command, "--worker", "--threads", str(num_threads), "--json", str(result_path)]
        proc = subprocess.run(cmd, env=thread_env(num_threads, unpin_blas, base))
        if proc.returncode != 0 or not result_path.exists():
            raise WorkerError(f"worker for {num_threads} thread(s) failed with exit code {proc.returncode}",
                              proc.returncode or 1)
        return json.loads(result_path.read_text())


def parse_threads(text: str) -> list[int]:
    """``"1,2"`` -> [1, 2]; ValueError unless every item is a positive integer."""
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or any(t < 1 for t in counts):
        raise ValueError(f"thread counts must be a comma-separated list of positive integers, got {text!r}")
    return counts
