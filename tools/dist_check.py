"""Checks of fastgru's release artifacts, called by tools/check_dist.sh (make dist-check).

    python tools/dist_check.py sdist  SDIST.tar.gz TRACKED.txt   the sdist holds the tracked files it should
    python tools/dist_check.py wheel  WHEEL.whl    TRACKED.txt   the wheel holds the package and nothing else
    python -I dist_check.py smoke [--modules TRACKED.txt]        run in a fresh venv holding an installed fastgru

TRACKED.txt lists the repository's files at the commit being released (`git ls-tree -r --name-only`).
`smoke` needs nothing but the standard library and the installed fastgru with its dependencies (numpy,
scipy), so that it runs in a virtual environment made only for it, from a directory outside any source
tree (`python -I` keeps the script's own directory and PYTHONPATH off sys.path); without --modules it
checks the installed files by kind only (as cibuildwheel's test step runs it).
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path

# Tracked files a source release leaves out (MANIFEST.in says why), and the files setuptools writes
# into every sdist.
NOT_IN_SDIST = [".ci/*", ".gitignore"]
SDIST_METADATA = {"PKG-INFO", "setup.cfg", "fastgru.egg-info/PKG-INFO", "fastgru.egg-info/SOURCES.txt",
                  "fastgru.egg-info/dependency_links.txt", "fastgru.egg-info/entry_points.txt",
                  "fastgru.egg-info/requires.txt", "fastgru.egg-info/top_level.txt"}
# What a build generates: never in an sdist or a wheel.
GENERATED = ["*.c", "*.so", "*.o", "*.pyd", "*.py[cod]", "bench/results/*", "build/*"]


def _tracked(path: str) -> list[str]:
    return [line for line in Path(path).read_text().splitlines() if line]


def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _report(what: str, missing, unexpected) -> int:
    for name in sorted(missing):
        print(f"{what}: missing {name}", file=sys.stderr)
    for name in sorted(unexpected):
        print(f"{what}: should not hold {name}", file=sys.stderr)
    return 1 if missing or unexpected else 0


def package_modules(tracked: list[str]) -> set[str]:
    """The package's Python modules at this commit: what the wheel must hold besides the extension."""
    return {name for name in tracked if name.startswith("fastgru/") and name.endswith(".py")}


def check_sdist(sdist: str, tracked_list: str) -> int:
    tracked = _tracked(tracked_list)
    with tarfile.open(sdist) as archive:
        members = [member.name for member in archive.getmembers() if member.isfile()]
    root = members[0].split("/", 1)[0]
    held = {name.split("/", 1)[1] for name in members}
    # C sources in src_c/, tests/c/ and bench/ (its measuring loops) are the project's own; only Cython's
    # output is generated
    generated = {name for name in held
                 if _matches(name, GENERATED) and not name.startswith(("src_c/", "tests/c/", "bench/"))}
    expected = {name for name in tracked if not _matches(name, NOT_IN_SDIST)} | SDIST_METADATA
    status = _report(f"sdist {root}", expected - held, (held - expected) | generated)
    if status == 0:
        print(f"sdist {root}: {len(held)} files: the {len(expected) - len(SDIST_METADATA)} tracked files a source "
              f"release needs (all but {', '.join(NOT_IN_SDIST)}) and setuptools' metadata; no generated file")
    return status


def expected_wheel_files(modules: set[str]) -> set[str]:
    extension = "fastgru/_core" + sysconfig.get_config_var("EXT_SUFFIX")
    return modules | {"fastgru/py.typed", extension}


def check_wheel(wheel: str, tracked_list: str) -> int:
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
    package = {name for name in names if ".dist-info/" not in name}
    expected = expected_wheel_files(package_modules(_tracked(tracked_list)))
    info = {name.split("/", 1)[1] for name in names if ".dist-info/" in name}
    status = _report(Path(wheel).name, (expected - package) | ({"licenses/LICENSE"} - info), package - expected)
    if status == 0:
        print(f"{Path(wheel).name}: {len(package)} package files (the modules, py.typed, the extension) and "
              f"{len(info)} in .dist-info, LICENSE among them")
    return status


def _installed_files(package_dir: Path) -> set[str]:
    root = package_dir.parent
    return {path.relative_to(root).as_posix() for path in package_dir.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts}


def check_installed(package_dir: Path, modules: set[str] | None) -> int:
    files = _installed_files(package_dir)
    extension = "fastgru/_core" + sysconfig.get_config_var("EXT_SUFFIX")
    if modules is not None:
        status = _report("installed fastgru", expected_wheel_files(modules) - files,
                         files - expected_wheel_files(modules))
    else:  # by kind: only modules, the marker and this interpreter's extension
        odd = {name for name in files if not name.endswith(".py") and name not in (extension, "fastgru/py.typed")}
        status = _report("installed fastgru", {extension, "fastgru/py.typed", "fastgru/__init__.py"} - files, odd)
    libs = sorted(path.name for path in package_dir.parent.glob("fastgru*.libs"))
    if libs:  # auditwheel grafts external shared libraries there; fastgru needs none but libc and libm
        status = _report("installed fastgru", set(), set(libs))
    if status == 0:
        print(f"installed files: {len(files)} in {package_dir}: the modules, py.typed and "
              f"{Path(extension).name}; no C or Cython source")
    return status


def smoke(modules_list: str | None) -> int:
    import numpy as np

    import fastgru
    from fastgru import _core, reference

    package_dir = Path(fastgru.__file__).resolve().parent
    prefix = Path(sys.prefix).resolve()
    if not package_dir.is_relative_to(prefix):
        print(f"smoke: imported fastgru from {package_dir}, outside this environment ({prefix})", file=sys.stderr)
        return 1
    print(f"fastgru {fastgru.__version__} from {package_dir}; kernel sets this CPU runs: {_core.supported_isas()}")
    show_config = getattr(fastgru, "show_config", None)
    if show_config is not None:
        show_config()

    rng = np.random.default_rng(0)
    gru = fastgru.GRU(5, 24, num_layers=2, bidirectional=True, seed=1)
    x = rng.standard_normal((9, 3, 5)).astype(np.float32)
    lengths = [9, 4, 1]
    want_output, want_h_n = reference.forward(gru.spec, gru.weights, x, lengths=lengths)
    quantized = gru.quantize("int8")
    assert quantized.weight_format == "int8"
    int8 = {}
    try:  # every kernel set the run-time dispatch offers on this CPU, portable first
        for isa in _core.supported_isas():
            _core.set_backend(isa=isa)
            output, h_n = gru(x, lengths=lengths)
            np.testing.assert_allclose(output, want_output, rtol=0, atol=1e-5, err_msg=f"float32 output, {isa}")
            np.testing.assert_allclose(h_n, want_h_n, rtol=0, atol=1e-5, err_msg=f"float32 h_n, {isa}")
            int8[isa] = quantized(x, lengths=lengths)
    finally:
        _core.set_backend()
    for isa, (output, h_n) in int8.items():
        # int8 differs from float by the quantization error (docs/int8.md), the same on every kernel set
        np.testing.assert_allclose(output, want_output, rtol=0, atol=3e-2, err_msg=f"int8 output, {isa}")
        np.testing.assert_array_equal(output, int8["generic"][0], err_msg=f"int8 output, {isa} against generic")
        np.testing.assert_array_equal(h_n, int8["generic"][1], err_msg=f"int8 h_n, {isa} against generic")
    int8_error = float(np.abs(int8["generic"][0] - want_output).max())
    print(f"forward: float32 matches the float64 reference within 1e-5 on {', '.join(int8)}; "
          f"int8 within {int8_error:.1e}, bit for bit the same on each")

    # the backward pass takes its GEMMs from scipy's BLAS at run time: the one use of the scipy dependency
    grad_output = rng.standard_normal(want_output.shape).astype(np.float32)
    _, _, tape = gru.forward(x, lengths=lengths, return_tape=True)
    grads = gru.backward(tape, grad_output=grad_output)
    want_grads = reference.backward(gru.spec, gru.weights, x, lengths=lengths, grad_output=grad_output)
    for name, value in want_grads.items():
        np.testing.assert_allclose(grads[name], value, rtol=0, atol=1e-4, err_msg=f"gradient of {name}")
    print(f"backward (scipy's BLAS): {len(want_grads)} gradients match the float64 reference within 1e-4")

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "gru.fastgru"
        gru.save(path)
        loaded = fastgru.load(path)
        report = _console_script("inspect", str(path), "--json")
    assert report["parameters"] == sum(value.size for value in gru.weights.values()), report
    print(f"the fastgru console script ({sysconfig.get_path('scripts')}): inspect reads the saved file")
    for name, value in gru.weights.items():
        np.testing.assert_array_equal(loaded.weights[name], value, err_msg=f"loaded {name}")
    np.testing.assert_array_equal(loaded(x, lengths=lengths)[0], gru(x, lengths=lengths)[0], err_msg="loaded model")
    print("save -> load: same weights, same output")

    return check_installed(package_dir, package_modules(_tracked(modules_list)) if modules_list else None)


def _console_script(*args: str) -> dict:
    """The JSON that the installed ``fastgru`` command (the wheel's entry point) prints for ``args``."""
    import json
    import subprocess

    script = Path(sysconfig.get_path("scripts")) / "fastgru"
    result = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} exited with {result.returncode}: {result.stderr}")
    return json.loads(result.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("sdist", "wheel"):
        command = commands.add_parser(name)
        command.add_argument("archive")
        command.add_argument("tracked")
    commands.add_parser("smoke").add_argument("--modules", help="TRACKED.txt: check the installed files exactly")
    args = parser.parse_args(argv)
    if args.command == "sdist":
        return check_sdist(args.archive, args.tracked)
    if args.command == "wheel":
        return check_wheel(args.archive, args.tracked)
    return smoke(args.modules)


if __name__ == "__main__":
    sys.exit(main())
