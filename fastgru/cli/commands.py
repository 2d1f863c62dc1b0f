"""``fastgru inspect`` and ``fastgru convert`` (``fastgru bench`` is `fastgru.cli.bench`)."""

from __future__ import annotations

import json
import os

from fastgru.cli.peers import (PeerUnavailable, build_peer, make_inputs, max_diff, outputs, reference_peer,
                               source_framework)
from fastgru.cli.report import footprint, inspect, text
from fastgru.cli.source import CommandError, one_line, open_source, require

# The random input `convert` checks the converted model on: small, so the float64 reference stays quick.
CHECK_BATCH, CHECK_STEPS = 2, 16


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
    framework (else the float64 reference) on a random input."""
    import fastgru

    source = require(open_source(args.file, args.layer))
    model = source.model
    if args.int8:
        try:
            model = model.quantize("int8")
        except (TypeError, ValueError) as error:
            raise CommandError(f"{source.path}: --int8: {one_line(error, '')}") from None
    try:
        model.save(args.out)
    except OSError as error:
        raise CommandError(f"{args.out}: cannot write it ({error.strerror or error})") from None
    converted = fastgru.load(args.out)  # the comparison runs what the user will load
    kind = type(converted).__name__
    print(f"wrote {args.out}: a fastgru.{kind} with {converted.weight_format} weights, {os.path.getsize(args.out)} "
          f"bytes on disk, {footprint(converted)['total_bytes']} bytes in memory; it loads with numpy alone: "
          f"fastgru.load({args.out!r})")

    inputs = make_inputs(source, converted, CHECK_BATCH, CHECK_STEPS)
    peer, fallback = _check_peer(source, inputs)
    try:
        diff = max_diff(outputs(converted(*inputs.args)), peer.output())
    except ValueError as error:
        raise CommandError(f"{source.path}: the converted model and {peer.name} disagree: {error}") from None
    if fallback:
        print(f"not compared with {fallback[0]}: {fallback[1]}")
    against = peer.what if peer.name == "reference" else f"{peer.name} {peer.version} ({peer.what})"
    note = f"; {inputs.note}" if inputs.note else ""
    print(f"max difference from {against} on a random input ({inputs.shape}{note}): {diff:.3g}")
    if converted.weight_format == "int8":
        print("  (int8 weights: that is the quantization error, about 1e-2 on trained models: docs/int8.md)")
    return 0


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
