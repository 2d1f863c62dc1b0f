"""``fastgru inspect`` and ``fastgru convert`` (``fastgru bench`` is `fastgru.cli.bench`)."""

from __future__ import annotations

import json
import os

from fastgru.cli.inputs import does_not_run, make_inputs
from fastgru.cli.peers import PeerUnavailable, build_peer, max_diff, outputs, source_framework
from fastgru.cli.reference_peer import reference_peer
from fastgru.cli.report import footprint, inspect, text
from fastgru.cli.source import CommandError, one_line, open_source, require

def inspect_command(args) -> int:
    """Prints the report (text, or JSON with ``--json``); a refused file still gets its report, then the
    one-line refusal on stderr and exit status 2."""
    source = open_source(args.file, args.layer)
    report = inspect(source)
    print(json.dumps(report, indent=1) if args.json else text(report), end="\n" if args.json else "")
    if source.refused is not None:
        raise CommandError(source.refused)
    return 0


def convert_command(args) -> int:
    """Writes fastgru's own file, loads it back, and prints its largest difference from the source's
    framework (else the float64 reference) on a random input. A check that cannot run removes the file
    again: exit status 0 means a file that was written and checked."""
    import fastgru

    if args.weight_bits != 8 and not args.int8:
        raise CommandError("--weight-bits applies to int8 weights: add --int8")
    source = require(open_source(args.file, args.layer))
    model = source.model
    if args.int8:
        try:
            model = model.quantize("int8", weight_bits=args.weight_bits)
        except (TypeError, ValueError) as error:
            raise CommandError(f"{source.path}: --int8: {one_line(error, '')}") from None
    try:
        model.save(args.out)
    except OSError as error:
        raise CommandError(f"{args.out}: cannot write it ({error.strerror or error})") from None
    try:
        converted = fastgru.load(args.out)  # the comparison runs what the user will load
        diff, peer, fallback, inputs = _check(source, converted, args)
    except CommandError as error:
        os.remove(args.out)
        raise CommandError(f"{error} ({args.out} removed)") from None
    print(f"wrote {args.out}: a fastgru.{type(converted).__name__} with {converted.weight_format} weights, "
          f"{os.path.getsize(args.out)} bytes on disk, {footprint(converted)['total_bytes']} bytes in memory; it "
          f"loads with numpy alone: fastgru.load({args.out!r})")
    if fallback:
        print(f"not compared with {fallback[0]}: {fallback[1]}")
    against = peer.what if peer.name == "reference" else f"{peer.name} {peer.version} ({peer.what})"
    note = f"; {inputs.note}" if inputs.note else ""
    print(f"max difference from {against} on a random input ({inputs.shape}{note}): {diff:.3g}")
    if converted.weight_format == "int8":
        print("  (int8 weights: that is the quantization error, about 1e-2 on trained models: docs/int8.md)")
    return 0


def _check(source, converted, args):
    """(max difference, the peer, why the source's framework was not used or None, the inputs)."""
    inputs = make_inputs(source, converted, args.batch, args.seq_len)
    try:
        got = outputs(converted(*inputs.args))
    except ValueError as error:
        raise does_not_run(source, inputs, error) from None
    peer, fallback = _check_peer(source, inputs)
    try:
        return max_diff(got, peer.output()), peer, fallback, inputs
    except ValueError as error:
        raise CommandError(f"{source.path}: the converted model and {peer.name} disagree: {error}") from None


def _check_peer(source, inputs):
    """The peer to compare with: the source's framework where it runs here, else the float64 reference
    (and why the framework did not run)."""
    name = source_framework(source, source.model)
    if name != "reference":
        try:
            return build_peer(name, source, source.model, inputs, threads=1), None
        except PeerUnavailable as error:
            return reference_peer(source, source.model, inputs), (name, str(error))
    return reference_peer(source, source.model, inputs), None
