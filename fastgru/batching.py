"""Scoring many sequences of different lengths: group them by length, run each group as one batch.

`score_sequences(gru, sequences)` is what `fastgru.ray` and `fastgru.dask` run in their workers; it
needs numpy alone. The sequences are sorted by length and cut into groups of at most ``max_rows``;
each group runs as one call with ``lengths=``, so the core never computes a padded step (rows are
ordered by length inside the call and the finished ones drop out), and neighbours in the sorted order
pad each other only in the input buffer.

Measured with ``bench/scaleout.py --grouping`` on the 2-core AMD EPYC Zen 5 VM (family 26 model 2; one
thread, H=256, I=64, one batch of 256 sequences of T uniform in 10..500, load average 3.3 from other
jobs): sorted groups of 8 to 64 rows ran at 740-780 sequences/s; one call per distinct length (199
calls, mostly batches of one, each reading all the weights at every step) at 564; all 256 rows in one
call at 481 and groups of 128 at 543 (the batch shrinks step by step, and the long tail runs a few rows
wide); unsorted groups of 64 at 627 (each group padded to its longest row's input buffer and tail).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

#: What `score_sequences` can return for each sequence.
OUTPUT_KINDS = ("h_n", "output")
DEFAULT_MAX_ROWS = 64


def check_outputs(outputs) -> tuple[str, ...]:
    """``outputs`` (one kind or several) as a tuple of kinds from `OUTPUT_KINDS`; ValueError otherwise."""
    kinds = (outputs,) if isinstance(outputs, str) else tuple(outputs)
    bad = [kind for kind in kinds if kind not in OUTPUT_KINDS]
    if not kinds or bad or len(set(kinds)) != len(kinds):
        raise ValueError(f"outputs must be one or more distinct names of {OUTPUT_KINDS}, got {outputs!r}")
    return kinds


def _check_max_rows(max_rows) -> int:
    if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    return int(max_rows)


def as_sequence_list(sequences, input_size: int, dtype) -> list[np.ndarray]:
    """``sequences`` as a list of C-ordered (T_i, input_size) arrays of ``dtype``.

    Accepts a list or tuple of 2-D arrays, a 1-D object array of them (Ray Data's variable-shaped tensor
    column), or one 3-D array (N, T, I) of equal-length sequences. Errors name the row.
    """
    if isinstance(sequences, np.ndarray) and sequences.dtype != object:
        if sequences.ndim != 3:
            raise ValueError(f"sequences as one array must be 3-D (N, T, I), got shape {sequences.shape}")
        rows: Iterable = sequences
    elif isinstance(sequences, (list, tuple, np.ndarray)):
        rows = sequences
    else:
        raise TypeError(f"sequences must be a list of (T, I) arrays, an object array of them or an (N, T, I) array, "
                        f"got {type(sequences).__name__}")
    return [np.ascontiguousarray(check_sequence(index, row, input_size), dtype=dtype) for index, row in enumerate(rows)]


def check_sequence(index: int, row, input_size: int) -> np.ndarray:
    """``row`` as an array, or TypeError / ValueError naming sequence ``index`` unless it is (T, input_size) real."""
    array = row if type(row) is np.ndarray else np.asarray(row)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"sequence {index} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] != input_size:
        raise ValueError(f"sequence {index} must have shape (T, {input_size}) (time steps, features), got {array.shape}")
    return array


def length_groups(lengths: np.ndarray, max_rows: int = DEFAULT_MAX_ROWS) -> list[np.ndarray]:
    """Indices of the sequences, sorted by length (stable) and cut into groups of at most ``max_rows``."""
    order = np.argsort(lengths, kind="stable")
    return [order[start : start + max_rows] for start in range(0, len(order), max_rows)]


def score_sequences(gru, sequences, *, outputs: str | Sequence[str] = "h_n", max_rows: int = DEFAULT_MAX_ROWS,
                    num_threads: int | None = None) -> dict:
    """Runs ``gru`` (a `fastgru.GRU`) over each sequence, from a zero state, in groups of similar length.

    Returns a dict with an entry per requested output, in the input order: ``"h_n"``, an array
    (N, L*D, H) of final states (row i is ``h_n[:, 0]`` of a call on sequence i alone); ``"output"``, a
    list of N arrays (T_i, D*H). A sequence of 0 steps has ``h_n`` zeros and an empty output.
    ``num_threads`` as for a call (None: the thread budget, `fastgru.threads`).

    float64 and int8 results equal a call per sequence bit for bit; float32 results may differ from it
    in the last bit (about 6e-8 here), because the AVX2 and AVX-512 kernels compute the rows of a batch
    in tiles of 4 or 8 and round a row in a tile differently than a row alone. The same sequences in the
    same groups always give the same bits.
    """
    from fastgru.model import GRU

    if not isinstance(gru, GRU):
        raise TypeError(f"score_sequences runs a fastgru.GRU, got {type(gru).__name__}"
                        + (" (pass its .gru: the calling convention of the wrapper is not applied here)"
                           if hasattr(gru, "gru") else ""))
    kinds = check_outputs(outputs)
    max_rows = _check_max_rows(max_rows)
    spec = gru.spec
    rows = as_sequence_list(sequences, spec.input_size, gru.dtype)
    L, D, H, I = spec.num_layers, spec.num_directions, spec.hidden_size, spec.input_size
    lengths = np.array([row.shape[0] for row in rows], dtype=np.int64)
    h_n = np.zeros((len(rows), L * D, H), dtype=gru.dtype)
    per_step: list = [None] * len(rows)
    for group in length_groups(lengths, max_rows):
        group_lengths = lengths[group]
        steps = int(group_lengths.max())
        if steps == 0:
            for index in group:
                per_step[index] = np.zeros((0, D * H), dtype=gru.dtype)
            continue
        live = group[group_lengths > 0]  # 0-step sequences keep h_n = 0 and an empty output
        for index in group[group_lengths == 0]:
            per_step[index] = np.zeros((0, D * H), dtype=gru.dtype)
        live_lengths = lengths[live]
        shape = (len(live), steps, I) if spec.batch_first else (steps, len(live), I)
        x = np.zeros(shape, dtype=gru.dtype)
        for column, index in enumerate(live):
            if spec.batch_first:
                x[column, : lengths[index]] = rows[index]
            else:
                x[: lengths[index], column] = rows[index]
        equal = bool(live_lengths.min() == steps)
        output, state = gru(x, lengths=None if equal else live_lengths, num_threads=num_threads)
        h_n[live] = state.transpose(1, 0, 2)
        if "output" in kinds:
            for column, index in enumerate(live):
                rows_out = output[column] if spec.batch_first else output[:, column]
                per_step[index] = np.array(rows_out[: lengths[index]], copy=True)
    result = {}
    for kind in kinds:
        result[kind] = h_n if kind == "h_n" else per_step
    return result


def as_gru(source):
    """The `fastgru.GRU` that ``source`` names: the model itself; a path (any file `fastgru.load` reads);
    the bytes of fastgru's own file (`fastgru.io.native.dumps`, a saved file's content); or bytes of
    ``pickle.dumps(model)``. A Keras/ONNX wrapper or another object is refused (TypeError): these helpers
    call a plain GRU, and would silently drop a wrapper's calling convention.
    """
    import os
    import pickle

    from fastgru.model import GRU

    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if data[8:9] == b"{":  # a safetensors header: fastgru's own file
            from fastgru.io.native import loads

            source = loads(data)
        else:
            try:
                source = pickle.loads(data)
            except Exception as error:  # noqa: BLE001 (whatever a damaged pickle raises)
                raise ValueError(f"model bytes are neither fastgru's own file nor a readable pickle "
                                 f"({type(error).__name__}: {error})") from None
    elif isinstance(source, (str, os.PathLike)):
        import fastgru

        source = fastgru.load(source)
    if isinstance(source, GRU):
        return source
    raise TypeError(f"expected a fastgru.GRU, a path, or its bytes; got {type(source).__name__}"
                    + (" (pass its .gru: a wrapper's calling convention is not applied by these helpers)"
                       if hasattr(source, "gru") else ""))
