"""Scoring sequences on a Dask cluster with a fastgru model (``pip install fastgru[dask]``).

    from distributed import Client
    import fastgru.dask
    client = Client("tcp://scheduler:8786")                # or LocalCluster(...)
    states = fastgru.dask.score("model.fastgru", sequences)  # a list of (T_i, I) arrays -> list of h_n

`score` takes a ``dask.bag.Bag`` of (T_i, I) arrays (returns a Bag), a ``dask.array.Array`` (N, T, I) of
equal-length sequences (returns a dask array), or a list of arrays (computes, returns a list, in order).
Each partition or block is scored by `fastgru.batching.score_sequences`: sorted by length, groups of
``max_rows`` run with ``lengths=``, so padding costs no compute.

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

from fastgru.batching import DEFAULT_MAX_ROWS, as_gru, check_outputs, check_sequence, score_sequences

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
    """``model`` (a `fastgru.GRU`, a path, or its bytes; see `fastgru.batching.as_gru`) as one object
    that every task of a graph can take as an argument, sent once per worker: a future of the model
    scattered to every worker of ``client`` (default: the current distributed client), or a
    ``dask.delayed`` of it where there is no client."""
    gru = as_gru(model)
    client = client if client is not None else _current_client()
    if client is not None:
        return client.scatter(gru, broadcast=True, hash=False)
    import dask

    return dask.delayed(gru, pure=True)


def _score_partition(partition, gru, kinds, max_rows):
    """One bag partition (an iterable of sequences) -> a list with one result per sequence."""
    rows = list(partition)
    results = score_sequences(gru, rows, outputs=kinds, max_rows=max_rows)
    per_kind = [list(results[kind]) for kind in kinds]
    return [values[0] if len(kinds) == 1 else tuple(values) for values in zip(*per_kind)] if rows else []


def _score_block(block, gru, kind, max_rows):
    """One block (n, T, I) of a dask array -> (n, L*D, H) final states or (n, T, D*H) outputs."""
    import numpy as np

    result = score_sequences(gru, block, outputs=kind, max_rows=max_rows)[kind]
    if kind == "output":
        steps, width = block.shape[1], gru.spec.num_directions * gru.spec.hidden_size
        return np.stack(result) if result else np.zeros((0, steps, width), dtype=gru.dtype)
    return result


def score(model, sequences, *, outputs: str | Sequence[str] = "h_n", max_rows: int = DEFAULT_MAX_ROWS,
          partition_size: int = DEFAULT_PARTITION_SIZE, client=None):
    """Scores every sequence with ``model`` from a zero state, the model sent once per worker.

    ``sequences``:

    - a ``dask.bag.Bag`` of (T_i, I) arrays: returns a Bag with one result per element, in order;
    - a ``dask.array.Array`` of shape (N, T, I), chunked along N (T and I are made single chunks):
      returns a dask array, (N, L*D, H) for ``outputs="h_n"`` or (N, T, D*H) for ``"output"``;
    - a list or tuple of (T_i, I) arrays: scores them in tasks of ``partition_size`` sequences (sent
      to the workers with ``client.scatter`` when there is a client) and returns the list of results.

    A result is ``h_n`` (L*D, H) or the outputs (T_i, D*H) of one sequence, or a tuple of both when
    ``outputs`` names both. ``max_rows``: the largest group of similar lengths run as one batch.
    ``client``: a ``distributed.Client`` (default: the current one, if any; else Dask's scheduler).
    """
    import dask.array as da
    import dask.bag as db

    kinds = check_outputs(outputs)
    gru = as_gru(model)
    score_sequences(gru, [], outputs=kinds, max_rows=max_rows)  # checks the options before anything is sent
    client = client if client is not None else _current_client()
    if isinstance(sequences, db.Bag):
        return sequences.map_partitions(_score_partition, share(gru, client), kinds, max_rows)
    if isinstance(sequences, da.Array):
        if len(kinds) != 1:
            raise ValueError("a dask array gets one output: outputs='h_n' or outputs='output'")
        spec = gru.spec
        if sequences.ndim != 3 or sequences.shape[2] != spec.input_size:
            raise ValueError(f"sequences must be a dask array (N, T, {spec.input_size}), got shape {sequences.shape}")
        shared = share(gru, client)
        sequences = sequences.rechunk({1: -1, 2: -1})
        L, D, H = spec.num_layers, spec.num_directions, spec.hidden_size
        tail = ((L * D,), (H,)) if kinds[0] == "h_n" else ((sequences.shape[1],), (D * H,))
        return sequences.map_blocks(_score_block, shared, kinds[0], max_rows, chunks=(sequences.chunks[0], *tail),
                                    dtype=gru.dtype)
    if not isinstance(sequences, (list, tuple)):
        raise TypeError(f"sequences must be a dask Bag, a dask array or a list of arrays, got {type(sequences).__name__}")
    if isinstance(partition_size, bool) or not isinstance(partition_size, int) or partition_size < 1:
        raise ValueError(f"partition_size must be a positive integer, got {partition_size!r}")
    for index, row in enumerate(sequences):  # here, not in a worker: the error names the sequence
        check_sequence(index, row, gru.spec.input_size)
    partitions = [list(sequences[start : start + partition_size]) for start in range(0, len(sequences), partition_size)]
    shared = share(gru, client)
    if client is None:
        bag = db.from_sequence(partitions, npartitions=max(1, len(partitions))).map(
            _score_partition, shared, kinds, max_rows)
        return [result for part in bag.compute() for result in part]
    futures = client.map(_score_partition, client.scatter(partitions), gru=shared, kinds=kinds, max_rows=max_rows,
                         pure=False)
    return [result for part in client.gather(futures) for result in part]
