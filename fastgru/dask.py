"""Scoring sequences on a Dask cluster with a fastgru model (``pip install fastgru[dask]``).

    from distributed import Client
    import fastgru.dask
    client = Client("tcp://scheduler:8786")                # or LocalCluster(...)
    states = fastgru.dask.score("model.fastgru", sequences)  # a list of (T_i, I) arrays -> list of h_n

`score` takes a ``dask.bag.Bag`` of (T_i, I) arrays (returns a Bag), a ``dask.array.Array`` (N, T, I) of
equal-length sequences (returns a dask array), or a list of arrays (computes, returns a list, in order).
Each partition or block is scored by `fastgru.batching.score_sequences`: sorted by length, groups of
``max_rows`` run with ``lengths=``, so padding costs no compute. The model may be a `fastgru.GRU` or a
`fastgru.Model` (a ``.keras`` whole model, an ONNX node chain): a Model's result per sequence is what it
returns for that sequence alone (groups of equal length; see `fastgru.batching`).

The model is sent once per worker, never once per task: with a distributed client (the current one,
or ``client=``), it is scattered to every worker (``client.scatter(model, broadcast=True)``)
and each task reads the copy its worker holds, unpickled once per worker process; without one, every
task shares one ``dask.delayed`` key of the model (the local schedulers). The model travels as its
portable bytes (`fastgru.io.native`), so workers need no framework, only fastgru and numpy.

Dask's nannies start each worker with ``OMP_NUM_THREADS=1``, which fastgru follows (`fastgru.threads`):
a worker of ``threads_per_worker=k`` runs k tasks at once, each on one thread.

Dask is imported when a function here runs; ``import fastgru`` never imports it.
"""

from __future__ import annotations

import sys
from typing import Sequence

from fastgru.batching import (DEFAULT_MAX_ROWS, as_model, check_outputs, check_sequence, is_model,
                              score_sequences, sequence_shape)

__all__ = ["score", "share"]

#: Sequences per task when `score` partitions a list.
DEFAULT_PARTITION_SIZE = 256


def _current_client():
    """The distributed client in use, if distributed is imported and one exists."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:  # no client
        return None


def share(model, client=None):
    """``model`` (a `fastgru.GRU` or `fastgru.Model`, a path, or its bytes; see
    `fastgru.batching.as_model`) as one object that every task of a graph can take as an argument, sent
    once per worker: a future of the model scattered to every worker of ``client`` (default: the current
    distributed client), or a ``dask.delayed`` of it where there is no client."""
    model = as_model(model)
    client = client if client is not None else _current_client()
    if client is not None:
        return client.scatter(model, broadcast=True, hash=False)
    import dask

    return dask.delayed(model, pure=True)


def _score_partition(partition, gru, kinds, max_rows):
    """One bag partition (an iterable of sequences) -> a list with one result per sequence."""
    rows = list(partition)
    results = score_sequences(gru, rows, outputs=kinds, max_rows=max_rows)
    per_kind = [list(results[kind]) for kind in kinds]
    return [values[0] if len(kinds) == 1 else tuple(values) for values in zip(*per_kind)] if rows else []


def _score_block(block, model, kind, max_rows, row_shape, dtype):
    """One block (n, T, I) of a dask array -> (n, L*D, H) final states, (n, T, D*H) outputs, or a Model's
    (n, ...) output rows."""
    import numpy as np

    result = score_sequences(model, block, outputs=kind, max_rows=max_rows)[kind]
    if kind == "output":
        return np.stack(result) if result else np.zeros((0, *row_shape), dtype=dtype)
    return result


def _block_rows(model, sequences, kind):
    """The shape and dtype of one sequence's result in a dask array of sequences (N, T, ...) of ``model``."""
    import numpy as np

    if not is_model(model):
        spec = model.spec
        L, D, H = spec.num_layers, spec.num_directions, spec.hidden_size
        return ((L * D, H) if kind == "h_n" else (sequences.shape[1], D * H)), model.dtype
    if model.convention == "onnx":
        raise ValueError("an ONNX model returns (Y, Y_h), two arrays: score a dask Bag or a list of sequences "
                         "(or pass its GRU, model.gru, for h_n)")
    features, dtype = sequence_shape(model)
    probe = np.zeros((1, *sequences.shape[1:]), dtype=dtype or np.int64)  # one sequence of zeros, here
    returned = model(probe)
    if isinstance(returned, (list, tuple)):
        raise ValueError(f"model {model.name!r} returns {len(returned)} arrays: score a dask Bag or a list of "
                         f"sequences")
    return returned.shape[1:], returned.dtype


def score(model, sequences, *, outputs: str | Sequence[str] | None = None, max_rows: int = DEFAULT_MAX_ROWS,
          partition_size: int = DEFAULT_PARTITION_SIZE, client=None):
    """Scores every sequence with ``model``, each from the model's initial state, the model sent once per
    worker.

    ``sequences``:

    - a ``dask.bag.Bag`` of (T_i, I) arrays: returns a Bag with one result per element, in order;
    - a ``dask.array.Array`` of shape (N, T, I), chunked along N (T and I are made single chunks):
      returns a dask array, (N, L*D, H) for ``outputs="h_n"`` or (N, T, D*H) for ``"output"``, and for a
      Keras-convention Model with one output array, (N, ...) rows of it (its shape found by calling the
      model on one sequence of zeros here);
    - a list or tuple of (T_i, I) arrays: scores them in tasks of ``partition_size`` sequences (sent
      to the workers with ``client.scatter`` when there is a client) and returns the list of results.

    A GRU's result is ``h_n`` (L*D, H) (``outputs`` None or ``"h_n"``) or the outputs (T_i, D*H) of one
    sequence (``"output"``), or a tuple of both when ``outputs`` names both; a Model's is what the model
    returns for that sequence alone (an array, or a tuple for several). A model that starts with an
    Embedding takes (T_i,) token ids. ``max_rows``: the largest group of similar lengths run as one batch.
    ``client``: a ``distributed.Client`` (default: the current one, if any; else Dask's scheduler).
    """
    import dask.array as da
    import dask.bag as db

    model = as_model(model)
    kinds = check_outputs(outputs, model)
    score_sequences(model, [], outputs=kinds, max_rows=max_rows)  # checks the options before anything is sent
    features, _ = sequence_shape(model)
    client = client if client is not None else _current_client()
    if isinstance(sequences, db.Bag):
        return sequences.map_partitions(_score_partition, share(model, client), kinds, max_rows)
    if isinstance(sequences, da.Array):
        if len(kinds) != 1:
            raise ValueError("a dask array gets one output: outputs='h_n' or outputs='output'")
        rank = 2 if features == "ids" else 3
        if sequences.ndim != rank or (features != "ids" and sequences.shape[2] != features):
            layout = "(N, T) of token ids" if features == "ids" else f"(N, T, {features})"
            raise ValueError(f"sequences must be a dask array {layout}, got shape {sequences.shape}")
        row_shape, dtype = _block_rows(model, sequences, kinds[0])
        shared = share(model, client)
        sequences = sequences.rechunk({axis: -1 for axis in range(1, sequences.ndim)})
        rank, result_rank = sequences.ndim, 1 + len(row_shape)  # a Model's rows may have another rank
        axes = {"drop_axis": list(range(result_rank, rank))} if result_rank < rank else \
            {"new_axis": list(range(rank, result_rank))} if result_rank > rank else {}
        return sequences.map_blocks(_score_block, shared, kinds[0], max_rows, row_shape, dtype,
                                    chunks=(sequences.chunks[0], *((size,) for size in row_shape)), dtype=dtype,
                                    **axes)
    if not isinstance(sequences, (list, tuple)):
        raise TypeError(f"sequences must be a dask Bag, a dask array or a list of arrays, got {type(sequences).__name__}")
    if isinstance(partition_size, bool) or not isinstance(partition_size, int) or partition_size < 1:
        raise ValueError(f"partition_size must be a positive integer, got {partition_size!r}")
    for index, row in enumerate(sequences):  # here, not in a worker: the error names the sequence
        check_sequence(index, row, features)
    partitions = [list(sequences[start : start + partition_size]) for start in range(0, len(sequences), partition_size)]
    shared = share(model, client)
    if client is None:
        bag = db.from_sequence(partitions, npartitions=max(1, len(partitions))).map(
            _score_partition, shared, kinds, max_rows)
        return [result for part in bag.compute() for result in part]
    futures = client.map(_score_partition, client.scatter(partitions), gru=shared, kinds=kinds, max_rows=max_rows,
                         pure=False)
    return [result for part in client.gather(futures) for result in part]
