"""fastgru's version: the one place it is written (pyproject.toml reads it from here, statically, and
fastgru.__version__ re-exports it). A module of its own so that modules fastgru/__init__.py imports can
name the version without importing the package they are part of."""

__version__ = "0.1.0"
