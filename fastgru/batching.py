"""Scoring many sequences of different lengths: group them by length, run each group as one batch.

`score_sequences(model, sequences)` is what `fastgru.ray` and `fastgru.dask` run in their workers; it
needs numpy alone. ``model`` is a `fastgru.GRU` or a `fastgru.Model`, and each result is what a call on
that one sequence alone returns:

- a **GRU**: the sequences are sorted by length and cut into groups of at most ``max_rows``; each group
  runs as one call with ``lengths=``, so the core never computes a padded step (rows are ordered by
  length inside the call and the finished ones drop out), and neighbours in the sorted order pad each
  other only in the input buffer. Results: ``"h_n"`` and/or ``"output"`` per sequence.
- a **Model** (a Keras model with its heads, a Keras GRU layer, an ONNX node chain): groups of sequences
  of *equal* length, at most ``max_rows`` each, run as one unpadded call ``model(x)``. A Keras model takes
  masks, not lengths, and padding under a mask gives the sequence's own result only where every layer
  skips masked steps: GlobalMaxPooling1D ignores the mask (Keras does too), Flatten and normalization
  over time see the padded length, a ``go_backwards`` layer reads the padding first. Equal lengths need
  no such argument, for every layer. The result, ``"output"``, is that sequence's row of what the model
  returns (a Keras classifier's (classes,) scores, a ``return_sequences`` model's (T_i, units), a tuple
  for models that return a list, ``(Y, Y_h)`` of the ONNX node for that row).

Measured with ``bench/scaleout.py --grouping`` on the 2-core AMD EPYC Zen 5 VM (family 26 model 2; one
thread, H=256, I=64, one batch of 256 sequences of T uniform in 10..500, load average 3.3 from other
jobs): sorted groups of 8 to 64 rows ran at 740-780 sequences/s; one call per distinct length (199
calls, mostly batches of one, each reading all the weights at every step; what a Model's equal-length
groups come to on such a batch) at 564; all 256 rows in one call at 481 and groups of 128 at 543 (the
batch shrinks step by step, and the long tail runs a few rows wide); unsorted groups of 64 at 627 (each
group padded to its longest row's input buffer and tail).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

#: What `score_sequences` can return for each sequence of a GRU; a Model gives "output" (what it returns).
OUTPUT_KINDS = ("h_n", "output")
DEFAULT_MAX_ROWS = 64


def is_model(model) -> bool:
    """Whether ``model`` is a `fastgru.Model` (else a GRU, or something these helpers refuse)."""
    from fastgru.whole_model import Model

    return isinstance(model, Model)


def check_outputs(outputs, model=None) -> tuple[str, ...]:
    """``outputs`` (one kind or several) as a tuple of kinds from `OUTPUT_KINDS`; ValueError otherwise.
    ``None`` is ``"h_n"`` for a GRU and ``"output"`` for a `fastgru.Model`, whose only result is its output."""
    if outputs is None:
        return ("output",) if is_model(model) else ("h_n",)
    kinds = (outputs,) if isinstance(outputs, str) else tuple(outputs)
    bad = [kind for kind in kinds if kind not in OUTPUT_KINDS]
    if not kinds or bad or len(set(kinds)) != len(kinds):
        raise ValueError(f"outputs must be one or more distinct names of {OUTPUT_KINDS}, got {outputs!r}")
    if is_model(model) and kinds != ("output",):
        raise ValueError(f"a fastgru.Model gives one result per sequence, what the model returns for it: "
                         f"outputs='output' (or None), got {outputs!r}; a GRU's h_n is its GRU's (model.gru)")
    return kinds


def _check_max_rows(max_rows) -> int:
    if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    return int(max_rows)


def sequence_shape(model) -> tuple[int | str, object]:
    """``(features, dtype)`` of one sequence for ``model``: the features per step, or ``"ids"`` for a Model
    that starts with an Embedding (sequences of (T_i,) token ids, kept in their integer dtype)."""
    if not is_model(model):
        return model.spec.input_size, model.dtype
    features = next((layer.input_features for layer in model.layers if layer.input_features is not None), None)
    if features is None:
        raise ValueError(f"model {model.name!r}: no layer says how many features a step has")
    return features, (None if features == "ids" else model.dtype)


def as_sequence_list(sequences, input_size, dtype) -> list[np.ndarray]:
    """``sequences`` as a list of C-ordered (T_i, input_size) arrays of ``dtype`` (``input_size="ids"``:
    (T_i,) token ids, ``dtype`` None: as given).

    Accepts a list or tuple of arrays, a 1-D object array of them (Ray Data's variable-shaped tensor
    column), or one array (N, T, I) (or (N, T) ids) of equal-length sequences. Errors name the row.
    """
    rank = 1 if input_size == "ids" else 2
    if isinstance(sequences, np.ndarray) and sequences.dtype != object:
        if sequences.ndim != rank + 1:
            layout = "(N, T)" if rank == 1 else "(N, T, I)"
            raise ValueError(f"sequences as one array must be {rank + 1}-D {layout}, got shape {sequences.shape}")
        rows: Iterable = sequences
    elif isinstance(sequences, (list, tuple, np.ndarray)):
        rows = sequences
    else:
        raise TypeError(f"sequences must be a list of (T, I) arrays, an object array of them or an (N, T, I) array, "
                        f"got {type(sequences).__name__}")
    return [np.ascontiguousarray(check_sequence(index, row, input_size), dtype=dtype) for index, row in enumerate(rows)]


def check_sequence(index: int, row, input_size) -> np.ndarray:
    """``row`` as an array, or TypeError / ValueError naming sequence ``index`` unless it is (T, input_size)
    real numbers (``input_size="ids"``: (T,) token ids, whose values the model checks)."""
    array = row if type(row) is np.ndarray else np.asarray(row)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"sequence {index} must hold real numbers, got dtype {array.dtype}")
    if input_size == "ids":
        if array.ndim != 1:
            raise ValueError(f"sequence {index} must have shape (T,) (token ids: the model starts with an "
                             f"Embedding), got {array.shape}")
    elif array.ndim != 2 or array.shape[1] != input_size:
        raise ValueError(f"sequence {index} must have shape (T, {input_size}) (time steps, features), got {array.shape}")
    return array


def length_groups(lengths: np.ndarray, max_rows: int = DEFAULT_MAX_ROWS, equal: bool = False) -> list[np.ndarray]:
    """Indices of the sequences, sorted by length (stable) and cut into groups of at most ``max_rows``;
    with ``equal``, a group also never mixes lengths."""
    order = np.argsort(lengths, kind="stable")
    if not equal:
        return [order[start : start + max_rows] for start in range(0, len(order), max_rows)]
    ends = np.flatnonzero(np.diff(lengths[order])) + 1
    return [run[start : start + max_rows] for run in np.split(order, ends) if len(run)
            for start in range(0, len(run), max_rows)]


def score_sequences(model, sequences, *, outputs: str | Sequence[str] | None = None,
                    max_rows: int = DEFAULT_MAX_ROWS, num_threads: int | None = None) -> dict:
    """Runs ``model`` (a `fastgru.GRU` or `fastgru.Model`) over each sequence, in groups of similar length
    (module docstring), each from the model's own initial state.

    Returns a dict with an entry per requested output, in the input order. For a GRU (``outputs``
    default ``"h_n"``): ``"h_n"``, an array (N, L*D, H) of final states (row i is ``h_n[:, 0]`` of a call
    on sequence i alone); ``"output"``, a list of N arrays (T_i, D*H). A sequence of 0 steps has ``h_n``
    the initial state (zeros without a learned one) and an empty output. For a Model (``outputs``
    ``"output"``): ``"output"``, a list of N results, each what the model returns for that sequence alone
    with the batch axis taken out (an array, or a tuple of arrays). ``num_threads`` as for a call (None:
    the model's, else the thread budget, `fastgru.threads`).

    float64 and int8 results equal a call per sequence bit for bit; float32 results may differ from it
    in the last bit (about 6e-8 here), because the AVX2 and AVX-512 kernels compute the rows of a batch
    in tiles of 4 or 8 and round a row in a tile differently than a row alone. The same sequences in the
    same groups always give the same bits.
    """
    from fastgru.model import GRU

    if not isinstance(model, GRU) and not is_model(model):
        raise TypeError(f"score_sequences runs a fastgru.GRU or fastgru.Model, got {type(model).__name__}")
    kinds = check_outputs(outputs, model)
    max_rows = _check_max_rows(max_rows)
    if is_model(model):
        return {"output": _score_with_model(model, sequences, max_rows, num_threads)}
    gru = model
    spec = gru.spec
    rows = as_sequence_list(sequences, spec.input_size, gru.dtype)
    L, D, H, I = spec.num_layers, spec.num_directions, spec.hidden_size, spec.input_size
    lengths = np.array([row.shape[0] for row in rows], dtype=np.int64)
    h_n = np.zeros((len(rows), L * D, H), dtype=gru.dtype)
    if gru.initial_state is not None:
        h_n[...] = gru.initial_state  # what a 0-step sequence ends in (calls overwrite the others)
    per_step: list = [None] * len(rows)
    for group in length_groups(lengths, max_rows):
        group_lengths = lengths[group]
        steps = int(group_lengths.max())
        if steps == 0:
            for index in group:
                per_step[index] = np.zeros((0, D * H), dtype=gru.dtype)
            continue
        live = group[group_lengths > 0]  # 0-step sequences keep h_n = the initial state and an empty output
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


def _batch_axes(model) -> tuple[int, tuple[int, ...] | None]:
    """Where the batch axis lies in a Model's input and in each array it returns (None: axis 0 of each).
    ONNX's layout 0 puts it second in X (T, B, I) and third and second in Y (T, D, B, H) and Y_h (D, B, H)."""
    if model.convention == "onnx" and not model.gru.spec.batch_first:
        return 1, (2, 1)
    return 0, None


def _score_with_model(model, sequences, max_rows: int, num_threads) -> list:
    features, dtype = sequence_shape(model)
    rows = as_sequence_list(sequences, features, dtype)
    lengths = np.array([row.shape[0] for row in rows], dtype=np.int64)
    input_axis, output_axes = _batch_axes(model)
    results: list = [None] * len(rows)
    for group in length_groups(lengths, max_rows, equal=True):
        returned = model(np.stack([rows[index] for index in group], axis=input_axis), num_threads=num_threads)
        arrays = list(returned) if isinstance(returned, (list, tuple)) else [returned]
        axes = output_axes or (0,) * len(arrays)
        for column, index in enumerate(group):
            picked = tuple(np.take(array, column, axis=axis) for array, axis in zip(arrays, axes))  # copies
            results[index] = picked if isinstance(returned, (list, tuple)) else picked[0]
    return results


def as_model(source):
    """The `fastgru.GRU` or `fastgru.Model` that ``source`` names: the object itself; a path (any file
    `fastgru.load` reads, a ``.keras`` whole model included); the bytes of fastgru's own file
    (`fastgru.io.native.dumps`, a saved file's content); or bytes of ``pickle.dumps(model)``. Anything
    else is refused (TypeError); damaged bytes raise ValueError.
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
    if isinstance(source, GRU) or is_model(source):
        return source
    raise TypeError(f"expected a fastgru.GRU or fastgru.Model, a path, or its bytes; got {type(source).__name__}")
