"""The package's modules are layered: no import cycle anywhere (imports inside functions count: a lazy
import only hides a cycle), the file formats and importers of fastgru.io never build models, and every
module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fastgru"
# fastgru.io below the objects: formats, what importers share, and the importers describe models;
# fastgru.GRU / fastgru.Model build themselves from those descriptions.
DESCRIBING = ("fastgru.io.safetensors", "fastgru.io.h5", "fastgru.io.keras_archive", "fastgru.io.common",
              "fastgru.io.native", "fastgru.io.torch", "fastgru.io.keras", "fastgru.io.onnx", "fastgru.io.cells",
              "fastgru.io.npz")
FORMATS = ("fastgru.io.safetensors", "fastgru.io.h5", "fastgru.io.keras_archive", "fastgru.io.native")
OBJECTS = ("fastgru.runtime", "fastgru.backward", "fastgru.model", "fastgru.layers", "fastgru.whole_model")
IMPORTERS = ("fastgru.io.torch", "fastgru.io.keras", "fastgru.io.onnx", "fastgru.io.cells", "fastgru.io.npz",
             "fastgru.io.load")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    modules["fastgru._core"] = PACKAGE / "_core.pyx"  # Cython: imports nothing of fastgru
    return modules


def _imports(name: str, path: Path, modules) -> set[str]:
    """Every fastgru module that ``name`` imports, wherever the import statement stands."""
    if path.suffix != ".py":
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import name` imports the submodule pkg.name when there is one, else pkg itself
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target, stack)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    graph = _graph()
    assert {"fastgru.model", "fastgru.backward", "fastgru.io.keras", "fastgru.io.native", "fastgru.io.cells",
            "fastgru.io.npz"} <= set(graph)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", DESCRIBING)
def test_formats_and_importers_never_build_models(module):
    """They return specs, weights and layer descriptions; only the object modules construct objects."""
    assert not (_graph()[module] & set(OBJECTS)), f"{module} imports {sorted(_graph()[module] & set(OBJECTS))}"


@pytest.mark.parametrize("module", FORMATS)
def test_file_formats_know_no_framework_importer(module):
    assert not (_graph()[module] & set(IMPORTERS))


@pytest.mark.parametrize("module", sorted(set(_modules()) - {"fastgru.torch"}))
def test_each_module_imports_alone_in_a_fresh_interpreter(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
