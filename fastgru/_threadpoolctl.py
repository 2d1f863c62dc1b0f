"""fastgru's controller for threadpoolctl, registered through threadpoolctl's mechanism for third-party
libraries (``threadpoolctl.register(controller_class)``).

threadpoolctl lists the shared objects loaded in the process (``/proc/self/maps``, ``dl_iterate_phdr``,
...) and makes a controller for each whose file name starts with one of a controller class's
``filename_prefixes`` and that exports one of its ``check_symbols``. fastgru's is its extension module,
``fastgru/_core.<platform tag>.so``, recognised by the C core's ``fg_gru_create``. The controller reads and
sets fastgru's process-wide setting (`fastgru.threads.get_num_threads` / `set_num_threads`), so
``threadpool_info()`` lists fastgru (``user_api`` and ``internal_api`` ``"fastgru"``) and
``threadpool_limits(1)`` or ``threadpool_limits(1, user_api="fastgru")`` limits every model that was
built without ``num_threads``.

Registering needs threadpoolctl's base class, so it waits for threadpoolctl: `install` registers at once
when threadpoolctl is already imported, and otherwise puts a finder on ``sys.meta_path`` that registers
right after threadpoolctl's module runs, then removes itself. ``import fastgru`` so never imports
threadpoolctl, and costs nothing when it is not installed.
"""

from __future__ import annotations

import sys
import warnings

from ._version import __version__

USER_API = "fastgru"
_registered_with: set[int] = set()  # id() of the threadpoolctl modules fastgru registered with


def _controller_class(threadpoolctl):
    from fastgru import threads

    class FastgruController(threadpoolctl.LibController):
        """fastgru's worker pools (the C core's fg_pool), through fastgru's process-wide setting."""

        user_api = USER_API
        internal_api = USER_API
        filename_prefixes = ("_core.",)
        check_symbols = ("fg_gru_create",)

        def get_num_threads(self):
            return threads.get_num_threads()

        def set_num_threads(self, num_threads):
            threads.set_num_threads(num_threads)

        def get_version(self):
            return __version__

    return FastgruController


def register(threadpoolctl) -> None:
    """Registers fastgru's controller with this threadpoolctl module (once)."""
    if id(threadpoolctl) in _registered_with:
        return
    threadpoolctl.register(_controller_class(threadpoolctl))
    _registered_with.add(id(threadpoolctl))


def _register_quietly(module) -> None:
    # A threadpoolctl whose API changed must still import: fastgru then stays out of its listings.
    try:
        register(module)
    except Exception as error:  # noqa: BLE001
        warnings.warn(f"fastgru could not register with threadpoolctl {getattr(module, '__version__', '?')} "
                      f"({type(error).__name__}: {error}); threadpool_limits will not limit fastgru", RuntimeWarning)


class _RegisterAfterImport:
    """A meta path finder that only answers for ``threadpoolctl``: it finds the module as the other
    finders would and has its loader register fastgru's controller once the module has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "threadpoolctl":
            return None
        _remove_finder()
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register_quietly(module)

        spec.loader.exec_module = exec_then_register
        return spec


_FINDER = _RegisterAfterImport()


def _remove_finder() -> None:
    try:
        sys.meta_path.remove(_FINDER)
    except ValueError:
        pass


def install() -> None:
    """Registers now if threadpoolctl is imported, else when it is (see the module docstring)."""
    module = sys.modules.get("threadpoolctl")
    if module is not None:
        _register_quietly(module)
    elif _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
