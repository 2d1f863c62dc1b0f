"""``python -m fastgru``: the ``fastgru`` command (`fastgru.cli`)."""

from fastgru.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
