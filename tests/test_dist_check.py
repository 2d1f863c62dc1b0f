"""tools/dist_check.py, the release artifacts' checker (make dist-check), on small archives made here:
it must refuse the faults fastgru's artifacts once had (an sdist without the Cython source, a wheel
carrying the generated C file) and pass complete ones. The real artifacts are built and checked by
tools/check_dist.sh in CI."""

from __future__ import annotations

import importlib.util
import io
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("dist_check", ROOT / "tools" / "dist_check.py")
dist_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dist_check)

EXTENSION = "fastgru/_core" + sysconfig.get_config_var("EXT_SUFFIX")
TRACKED = [".ci/run", ".gitignore", "LICENSE", "MANIFEST.in", "README.md", "pyproject.toml", "setup.py",
           "fastgru/__init__.py", "fastgru/_core.pyx", "fastgru/io/__init__.py", "fastgru/py.typed",
           "src_c/fastgru.h", "src_c/model.c", "tests/c/test_core.c", "tests/test_forward.py"]
MODULES = {"fastgru/__init__.py", "fastgru/io/__init__.py"}


@pytest.fixture
def tracked(tmp_path):
    path = tmp_path / "tracked.txt"
    path.write_text("\n".join(TRACKED) + "\n")
    return str(path)


def _sdist(tmp_path, names):
    path = tmp_path / "fastgru-0.1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name in names:
            info = tarfile.TarInfo(f"fastgru-0.1.0/{name}")
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))
    return str(path)


def _wheel(tmp_path, names):
    path = tmp_path / "fastgru-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, "x")
    return str(path)


COMPLETE_SDIST = [name for name in TRACKED if not name.startswith(".")] + sorted(dist_check.SDIST_METADATA)
COMPLETE_WHEEL = sorted(MODULES) + ["fastgru/py.typed", EXTENSION, "fastgru-0.1.0.dist-info/METADATA",
                                    "fastgru-0.1.0.dist-info/licenses/LICENSE"]


def test_a_complete_sdist_passes(tmp_path, tracked):
    assert dist_check.check_sdist(_sdist(tmp_path, COMPLETE_SDIST), tracked) == 0


@pytest.mark.parametrize("change, fault", [
    (lambda names: [n for n in names if n != "fastgru/_core.pyx"], "missing fastgru/_core.pyx"),
    (lambda names: [n for n in names if not n.startswith("tests/c/")], "missing tests/c/test_core.c"),
    (lambda names: names + ["fastgru/_core.c"], "should not hold fastgru/_core.c"),
    (lambda names: names + ["fastgru/_core.cpython-311-x86_64-linux-gnu.so"], "should not hold fastgru/_core.cpython"),
    (lambda names: names + ["bench/results/bench.json"], "should not hold bench/results/bench.json"),
    (lambda names: names + [".ci/run"], "should not hold .ci/run"),
])
def test_an_sdist_missing_a_source_or_holding_a_build_output_fails(tmp_path, tracked, capsys, change, fault):
    assert dist_check.check_sdist(_sdist(tmp_path, change(list(COMPLETE_SDIST))), tracked) == 1
    assert fault in capsys.readouterr().err


def test_a_wheel_of_the_package_alone_passes(tmp_path, tracked):
    assert dist_check.check_wheel(_wheel(tmp_path, COMPLETE_WHEEL), tracked) == 0


@pytest.mark.parametrize("change, fault", [
    (lambda names: names + ["fastgru/_core.c"], "should not hold fastgru/_core.c"),
    (lambda names: names + ["fastgru/_core.pyx"], "should not hold fastgru/_core.pyx"),
    (lambda names: names + ["tests/test_forward.py"], "should not hold tests/test_forward.py"),
    (lambda names: [n for n in names if n != EXTENSION], f"missing {EXTENSION}"),
    (lambda names: [n for n in names if n != "fastgru/py.typed"], "missing fastgru/py.typed"),
    (lambda names: [n for n in names if "licenses/" not in n], "missing licenses/LICENSE"),
])
def test_a_wheel_with_sources_or_without_the_extension_fails(tmp_path, tracked, capsys, change, fault):
    assert dist_check.check_wheel(_wheel(tmp_path, change(list(COMPLETE_WHEEL))), tracked) == 1
    assert fault in capsys.readouterr().err


def _installed(tmp_path, names):
    site = tmp_path / "site-packages"
    for name in names:
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text("x")
    return site / "fastgru"


INSTALLED = sorted(MODULES) + ["fastgru/py.typed", EXTENSION, "fastgru/__pycache__/__init__.cpython-311.pyc"]


@pytest.mark.parametrize("modules", [MODULES, None], ids=["exact", "by-kind"])
def test_an_installed_package_as_the_wheel_holds_it_passes(tmp_path, modules):
    assert dist_check.check_installed(_installed(tmp_path, INSTALLED), modules) == 0


@pytest.mark.parametrize("modules", [MODULES, None], ids=["exact", "by-kind"])
@pytest.mark.parametrize("extra", ["fastgru/_core.pyx", "fastgru/_core.c", "fastgru.libs/libfoo.so"])
def test_an_installed_package_with_sources_or_grafted_libraries_fails(tmp_path, capsys, modules, extra):
    assert dist_check.check_installed(_installed(tmp_path, INSTALLED + [extra]), modules) == 1
    assert "should not hold" in capsys.readouterr().err
