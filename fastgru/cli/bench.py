"""``fastgru bench``: the user's model in fastgru against the framework that wrote it and ONNX Runtime.

The method is ``bench/run.py``'s, with its code (`fastgru.benchmark`): each thread count runs in a fresh
worker process whose OMP/OPENBLAS/MKL_NUM_THREADS are set before any import (the BLAS pin variables of
the caller's environment are kept: the command measures the user's setup as it is); inside it every
engine is built on the same random input, its output compared once with the float64 reference, then all
engines are timed interleaved (warm-up, samples of at least 5 ms, rounds in an order drawn afresh each
round, median and p90 per call).

Progress goes to stderr: on a terminal one line, rewritten as the work goes (building each engine, each
round of timing); elsewhere (a pipe, a log file) a plain line per step and none per round.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from fastgru.cli.source import CommandError, Source, one_line, open_source, require

PEERS = ("torch", "onnxruntime", "keras")
# What each peer imports here (onnxruntime on a bare GRU also exports it with torch.onnx, which needs onnx).
_NEEDS = {"torch": ("torch",), "keras": ("keras", "torch"), "onnxruntime": ("onnxruntime",)}
_EXPORT_NEEDS = ("onnxruntime", "torch", "onnx")
SAMPLE_S = 0.005  # a sample lasts at least this long (fastgru.benchmark.timing)
MIN_ROUNDS, MAX_ROUNDS = 5, 1000
# With several threads each sample waits for the previous engine's spinning pool to sleep (timing.settle;
# ONNX Runtime's spins about 50 ms): otherwise it competes with the engine timed. bench/run.py waits as long.
SETTLE_S = 0.25


def bench_command(args) -> int:
    if args.worker:
        return worker(args)
    from fastgru.benchmark.machine import cpu_info, kernel_table
    from fastgru.benchmark.workers import WorkerError, run_worker

    import fastgru

    source = require(open_source(args.file, args.layer))
    against, skipped = resolve_against(args.against, source)
    cpu = cpu_info()
    print(f"fastgru bench {source.path}: a fastgru.{type(source.model).__name__} "
          f"({_convention(source.model)}); peers: {', '.join(against) or 'none'}")
    print(f"CPU: {cpu['model']} (family {cpu.get('family', '?')}, model {cpu.get('model_number', '?')}; "
          f"{cpu['usable_cpus']} usable of {cpu['logical_cpus']} logical CPUs; {', '.join(cpu['flags'])}); "
          f"fastgru {fastgru.__version__}, kernel table {kernel_table()}")
    for name, why in skipped.items():
        print(f"not run: {name}: {why}")
    command = [sys.executable, "-m", "fastgru", "bench", source.path, "--batch", str(args.batch),
               "--seq-len", str(args.seq_len), "--budget", str(args.budget), "--against", ",".join(against) or "none"]
    command += ["--int8"] if args.int8 else []
    command += ["--layer", args.layer] if args.layer else []
    env = _worker_env(fastgru.__file__)
    for threads in args.threads:
        sys.stdout.flush()
        try:
            result = run_worker(command, threads, unpin_blas=False, base=env)
        except WorkerError as error:
            return error.returncode  # the worker said why on stderr
        print()
        print(table(result))
    return 0


def _worker_env(package_file: str) -> dict:
    """This environment, with the folder this fastgru was imported from first on PYTHONPATH unless it is a
    site-packages folder (an installed fastgru is found there anyway; putting site-packages ahead of the
    standard library could shadow it): the worker imports the same fastgru, also from a source tree."""
    import site

    root = os.path.realpath(Path(package_file).resolve().parent.parent)
    installed = {os.path.realpath(path) for path in [*site.getsitepackages(), site.getusersitepackages()]}
    if root in installed:
        return dict(os.environ)
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))


def _convention(model) -> str:
    owner = "PyTorch's" if hasattr(model, "spec") else {"keras": "Keras'", "onnx": "ONNX's"}[model.convention]
    return f"{owner} conventions"


def resolve_against(text: str | None, source: Source) -> tuple[list[str], dict[str, str]]:
    """The peers to run and, for the default choice, the ones left out and why. Explicit names that do not
    apply to the file, or whose package is missing, are a `CommandError`."""
    from fastgru.cli.peers import applicable

    why_not = applicable(source, source.model)
    if text is not None and text.strip().lower() == "none":
        return [], {}
    if text is None:  # every peer that applies; those whose package is missing are named
        chosen, skipped = [], {}
        for name in PEERS:
            if why_not[name] is None:
                missing = _missing(name, source)
                if missing:
                    skipped[name] = missing
                else:
                    chosen.append(name)
        return chosen, skipped
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown or not names:
        raise CommandError(f"--against: unknown peer(s) {unknown or [text]}; known: {', '.join(PEERS)} (or none)")
    for name in names:
        reason = why_not[name]
        if reason:
            raise CommandError(f"{source.path}: --against {name} does not apply: {reason}")
        missing = _missing(name, source)
        if missing:
            raise CommandError(f"--against {name}: {missing}")
    return list(dict.fromkeys(names)), {}


def _missing(name: str, source: Source) -> str | None:
    needs = _EXPORT_NEEDS if name == "onnxruntime" and source.kind != "onnx" else _NEEDS[name]
    absent = [package for package in needs if importlib.util.find_spec(package) is None]
    if not absent:
        return None
    return f"needs {', '.join(absent)}, which is not installed: pip install {' '.join(absent)}"


# ------------------------------------------------------------------------------------------ the worker


class Progress:
    """The progress line on stderr (module docstring)."""

    def __init__(self, label: str, stream=None):
        self.stream = stream or sys.stderr
        self.label = label
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, text: str) -> None:
        if self.tty:
            self.stream.write(f"\r\033[K{self.label}: {text}")
        else:
            self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()

    def rounds(self, done: int, planned: int) -> None:
        if self.tty:
            self.step(f"timing, round {done} of at most {planned}")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _engine(model, inputs, what: str):
    from fastgru.cli.peers import Peer, outputs

    import fastgru

    args = inputs.args

    def run(n: int) -> None:
        for _ in range(n):
            model(*args)

    return Peer("fastgru", fastgru.__version__, what, lambda: outputs(model(*args)), run)


def worker(args) -> int:
    """One thread count (``--threads t``): builds every engine, compares each with the reference, times
    them interleaved and writes the result to ``--json``."""
    from fastgru.benchmark.machine import fastgru_config
    from fastgru.benchmark.timing import interleaved
    from fastgru.cli.inputs import does_not_run, make_inputs
    from fastgru.cli.peers import PeerUnavailable, build_peer, max_diff
    from fastgru.cli.reference_peer import reference_peer

    threads = args.threads[0]
    progress = Progress(f"fastgru bench, {threads} thread{'s' if threads > 1 else ''}")
    load_start = _loadavg()
    progress.step(f"reading {args.file}")
    source = require(open_source(args.file, args.layer))
    model = source.model
    model.num_threads = threads
    inputs = make_inputs(source, model, args.batch, args.seq_len)
    named = [name for name, value in zip(("sequence_lens", "initial_h"), inputs.args[1:]) if value is not None]
    call = "gru(x)" if hasattr(model, "spec") else f"model({', '.join(['x', *named])})"
    engines = {"fastgru": _engine(model, inputs, call)}
    not_run = {}
    if args.int8:
        try:
            quantized = model.quantize("int8")
            quantized.num_threads = threads
            engines["fastgru int8"] = _engine(quantized, inputs, f"{call} on model.quantize('int8')")
        except (TypeError, ValueError) as error:
            not_run["fastgru int8"] = str(error)
    against = [] if args.against in (None, "none") else args.against.split(",")
    for name in against:
        progress.step(f"building {name}")
        try:
            engines[name] = build_peer(name, source, model, inputs, threads)
        except PeerUnavailable as error:
            not_run[name] = str(error)
    progress.step("running the float64 reference")
    reference = reference_peer(source, model, inputs)
    try:
        expected = reference.output()
    except ValueError as error:
        raise does_not_run(source, inputs, error) from None
    rows = {}
    for name, engine in list(engines.items()):
        try:
            got = engine.output()
        except Exception as error:  # noqa: BLE001 - a peer that fails on the input is reported, not fatal
            if name.startswith("fastgru"):
                raise does_not_run(source, inputs, error) from None
            not_run[name] = f"{type(error).__name__}: {one_line(error, '')}"
            del engines[name]
            continue
        rows[name] = {"version": engine.version, "what": engine.what, "max_abs_diff": max_diff(got, expected)}
    progress.step("timing")
    start = time.perf_counter()
    stats = interleaved({name: engine.run for name, engine in engines.items()}, budget_s=args.budget,
                        sample_s=SAMPLE_S, min_rounds=MIN_ROUNDS, max_rounds=MAX_ROUNDS,
                        settle_s=SETTLE_S if threads > 1 else 0.0, progress=progress.rounds)
    for name, row in stats.items():
        rows[name].update(row)
    progress.close()
    result = {"file": source.path, "threads": threads, "input": {"shape": inputs.shape, "note": inputs.note},
              "reference": reference.what, "rows": rows, "not_run": not_run, "config": fastgru_config(),
              "timing_s": round(time.perf_counter() - start, 2), "loadavg": [load_start, _loadavg()]}
    Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


def _ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


# ----------------------------------------------------------------------------------------- the report


def table(result: dict) -> str:
    """One thread count's result as bench/run.py's tables are shaped: median, p90, ratio (of medians and
    round by round), max diff."""
    from fastgru.benchmark.timing import format_seconds, paired_ratio

    threads = result["threads"]
    load = " -> ".join("?" if value is None else f"{value:.2f}" for value in result["loadavg"])
    note = f"; {result['input']['note']}" if result["input"]["note"] else ""
    lines = [f"{threads} thread{'s' if threads > 1 else ''}; input {result['input']['shape']}{note}; "
             f"1-minute load average {load}", "",
             "| engine | version | median | p90 | ratio | round by round | max diff | what runs |",
             "|---|---|---|---|---|---|---|---|"]
    fastgru = result["rows"]["fastgru"]
    for name, row in result["rows"].items():
        paired = paired_ratio(row, fastgru)
        lines.append(f"| {name} | {row['version']} | {format_seconds(row['median_s'])} | {format_seconds(row['p90_s'])} "
                     f"| {_ratio(row['median_s'] / fastgru['median_s'])} | {'-' if paired is None else _ratio(paired)} "
                     f"| {row['max_abs_diff']:.1e} | {row['what']} |")
    lines.append("")
    lines.append("ratio: the engine's median over fastgru's (above 1: fastgru is faster); round by round: the median "
                 "over the rounds of the engine's sample over fastgru's in the same round (a slow spell of the machine "
                 "slows both, so it cancels out of this one); median and p90 per call "
                 f"over {fastgru['samples']} interleaved samples; max diff: the largest "
                 f"|output - reference|, the reference being {result['reference']}.")
    for name, why in result["not_run"].items():
        lines.append(f"not run: {name}: {why}")
    # The load average counts this worker itself (about one per thread it keeps busy).
    busiest = max((value for value in result["loadavg"] if value is not None), default=0.0)
    if busiest > threads + 0.5:
        lines.append(f"warning: the 1-minute load average reached {busiest:.2f} on a {threads}-thread run: other "
                     f"processes competed for the cores, so these timings are unreliable.")
    return "\n".join(lines) + "\n"
