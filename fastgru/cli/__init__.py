"""The ``fastgru`` command (also ``python -m fastgru``): the user's own model file, from the shell.

    fastgru inspect FILE [--layer NAME] [--json]       what fastgru reads in the file, and what it refuses
    fastgru convert FILE OUT [--int8 [--weight-bits 7]] [--layer NAME] [--batch B] [--seq-len T]   fastgru's own file, checked
    fastgru bench FILE [--batch B] [--seq-len T] [--threads 1,2] [--int8] [--against torch,onnxruntime,keras]

No framework is imported unless a subcommand compares with it. Exit status: 0 on success, 2 on a refused
or unreadable file (one line on stderr naming the file and the reason), a missing package that a
comparison needs, or a usage error (argparse's). docs/cli.md has the details.
"""

from __future__ import annotations

import argparse
import sys

from fastgru.cli.source import CommandError

EXIT_REFUSED = 2


def _thread_counts(text: str) -> list[int]:
    from fastgru.benchmark.workers import parse_threads

    try:
        return parse_threads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastgru", description="Inspect, convert and benchmark a GRU model file "
                                "(PyTorch, safetensors, Keras, ONNX, NumPy or fastgru's own) with fastgru.")
    p.add_argument("--version", action="version", version=f"fastgru {_version()}")
    commands = p.add_subparsers(dest="command", required=True, metavar="{inspect,convert,bench}")
    layer_help = ("which GRU: torch/safetensors/npz prefix, Keras layer name, ONNX node name (a comma-separated "
                  "list of nodes stacks them)")

    inspect = commands.add_parser("inspect", help="what fastgru reads in the file, and what it refuses",
                                  description="What fastgru reads in FILE: format, layers, GRUs, masks, heads, "
                                              "parameters, memory, refusals.")
    inspect.add_argument("file")
    inspect.add_argument("--layer", help=layer_help)
    inspect.add_argument("--json", action="store_true", help="the same report as JSON (keys: docs/cli.md)")

    convert = commands.add_parser("convert", help="write fastgru's own file, checked against the source",
                                  description="Writes OUT, fastgru's own file (loads with numpy alone), and prints "
                                              "the largest difference from the source's framework on a random input.")
    convert.add_argument("file")
    convert.add_argument("out")
    convert.add_argument("--int8", action="store_true", help="quantize the GRUs' weights to int8")
    convert.add_argument("--weight-bits", type=int, choices=(8, 7), default=8,
                         help="with --int8: 8-bit weight codes (default) or 7-bit ones, faster on CPUs without "
                              "AVX-512 VNNI at twice the rounding error (docs/int8.md)")
    convert.add_argument("--layer", help=layer_help)
    convert.add_argument("--batch", type=_positive, default=2, help="batch size of the check's input (default 2)")
    convert.add_argument("--seq-len", type=_positive, default=16,
                         help="sequence length of the check's input (default 16)")

    bench = commands.add_parser("bench", help="time the model in fastgru against its framework",
                                description="Times the model in FILE in fastgru against the framework that wrote "
                                            "it and ONNX Runtime; each thread count in a fresh process.")
    bench.add_argument("file")
    bench.add_argument("--batch", type=_positive, default=1, help="batch size B (default 1)")
    bench.add_argument("--seq-len", type=_positive, default=100, help="sequence length T (default 100)")
    bench.add_argument("--threads", type=_thread_counts, default=[1], help="comma-separated thread counts "
                       "(default 1)")
    bench.add_argument("--int8", action="store_true", help="also time fastgru with int8 weights")
    bench.add_argument("--against", default=None, help="comma-separated peers: torch, onnxruntime, keras, or none "
                       "(default: every one that applies to the file and is installed)")
    bench.add_argument("--layer", help=layer_help)
    bench.add_argument("--budget", type=_budget, default=5.0,
                       help="seconds of timing per thread count (default 5; at least 5 rounds run)")
    bench.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    bench.add_argument("--json", default=None, help=argparse.SUPPRESS)
    return p


def _version() -> str:
    import fastgru

    return fastgru.__version__


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status (the console script exits with it)."""
    args = parser().parse_args(argv)
    try:
        if args.command == "inspect":
            from fastgru.cli.commands import inspect_command

            return inspect_command(args)
        if args.command == "convert":
            from fastgru.cli.commands import convert_command

            return convert_command(args)
        from fastgru.cli.bench import bench_command

        return bench_command(args)
    except CommandError as error:
        print(f"fastgru {args.command}: {error}", file=sys.stderr)
        return EXIT_REFUSED
