"""Builds one of bench/'s C measuring loops (``bench/<name>.c``) at run time and loads it with ctypes.

The loops (fma_peak.c, read_kernel.c) are measuring devices, not part of fastgru, so they are built
here with the system C compiler (``$CC``, default ``cc``), plain ``-O2`` (each function picks its own
instruction set with ``__attribute__((target))``; never ``-march=native``), into a cache folder under
the temporary directory keyed by a hash of the sources, headers, compiler and flags. Without a
compiler, or when the build fails, ``load`` returns the reason as a string, and every limit that
needed the loop says "not measured" with it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
FLAGS = ["-O2", "-shared", "-fPIC", "-pthread"]

_loaded: dict[str, ctypes.CDLL | str] = {}


def _headers() -> list[Path]:
    return sorted(SOURCE_DIR.glob("*.h"))


def load(name: str, signatures: dict[str, tuple[list, object]]) -> ctypes.CDLL | str:
    """The library built from ``bench/<name>.c`` with ``signatures`` ({function: (argtypes, restype)})
    applied, or a sentence saying why it is not available. Built once per process and source version."""
    if name in _loaded:
        return _loaded[name]
    _loaded[name] = result = _build(name, signatures)
    return result


def _build(name: str, signatures: dict[str, tuple[list, object]]) -> ctypes.CDLL | str:
    source = SOURCE_DIR / f"{name}.c"
    compiler = shlex.split(os.environ.get("CC", "cc")) or ["cc"]
    digest = hashlib.sha1()
    for path in [source, *_headers()]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(" ".join(compiler + FLAGS).encode())
    cache = Path(tempfile.gettempdir()) / f"fastgru-bench-{name}-{digest.hexdigest()[:12]}-{os.getuid()}"
    library = cache / f"{name}.so"
    if not library.exists():
        cache.mkdir(exist_ok=True)
        partial = cache / f"{name}.{os.getpid()}.so"  # renamed into place: concurrent builds are safe
        try:
            proc = subprocess.run([*compiler, *FLAGS, f"-I{SOURCE_DIR}", str(source), "-o", str(partial)],
                                  capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"no C compiler ({' '.join(compiler)}: {exc})"
        if proc.returncode != 0:
            return f"building {source.name} failed: {proc.stderr.strip()[:300]}"
        os.replace(partial, library)
    try:
        lib = ctypes.CDLL(str(library))
        for function, (argtypes, restype) in signatures.items():
            getattr(lib, function).argtypes = argtypes
            getattr(lib, function).restype = restype
    except (OSError, AttributeError) as exc:
        return f"loading {library} failed: {exc}"
    return lib
