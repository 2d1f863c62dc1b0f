"""The command line of the benchmark scripts that run one worker process per thread count
(train_step.py, wholemodel.py): ``--quick``, ``--threads``, ``--out``; each worker writes its JSON, and the
parent writes ``<stem>.md`` (the script's report) and ``<stem>.json`` to ``--out`` and prints the report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import common


def main(script: str, doc: str, worker, markdown, default_threads: str = "1,2") -> None:
    """Parses the arguments; in a worker process (``--worker``) runs ``worker(args)``, else starts the
    workers and writes ``markdown(workers)``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", default=default_threads)
    p.add_argument("--out", default=str(common.BENCH_DIR / "results"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    workers = [common.run_worker(script, ["--quick"] if args.quick else [], t)
               for t in common.parse_threads(args.threads)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(workers)
    stem = Path(script).stem
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(workers, indent=1))
    print()
    print(text)
