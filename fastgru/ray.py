"""Scoring a Ray Dataset of sequences with a fastgru model (``pip install fastgru[ray]``).

    import ray, fastgru.ray
    ds = ray.data.read_parquet(...)                          # a column "x" of (T_i, I) arrays
    scored = ds.map_batches(fastgru.ray.GRUPredictor, fn_constructor_kwargs={"model": "model.fastgru"},
                            compute=ray.data.ActorPoolStrategy(size=4), batch_size=256)  # 4 actors, one model each
    scored.select_columns(["id", "h_n"]).write_parquet(...)

`GRUPredictor` is a callable class for ``Dataset.map_batches``: Ray makes N actors
(``compute=ActorPoolStrategy(size=N)``; ``concurrency=N`` before Ray 2.51, deprecated since), each
builds the predictor once (so the model is loaded once per actor, not per batch) and calls it on numpy
batches (``batch_format="numpy"``, Ray's default: a dict of column name -> array). Sequences of different
lengths are what Ray calls a variable-shaped tensor column: in a batch, a 1-D object array of (T_i, I)
arrays (a plain (B, T, I) array when a block happens to hold one length). Each batch is scored by
`fastgru.batching.score_sequences` (sorted by length, groups of ``max_rows`` run with ``lengths=``, so
padding costs no compute), and the results come back as new columns, in the batch's row order:
``"h_n"``, the final states (B, L*D, H); ``"output"``, the per-step outputs, variable-shaped (T_i, D*H).
Every other column passes through (ids, metadata); the input column too with ``keep_input=True``.

The model may also be a `fastgru.Model` (a ``.keras`` file with its heads, an ONNX node chain): each row
then gets what the model returns for that sequence alone (groups of equal length, see
`fastgru.batching`), in the column ``"output"`` (one array per row, e.g. a classifier's (classes,)
scores), or in ``"output_0"``, ``"output_1"``, ... for a model that returns several arrays (Keras
``return_state``, ``merge_mode=None``; ONNX's ``Y`` and ``Y_h``). A model that starts with an Embedding
takes (T_i,) token ids.

Ray Data does not keep the dataset's row order across blocks unless asked:
``ray.data.DataContext.get_current().execution_options.preserve_order = True`` keeps it; otherwise carry
an id column. Each actor takes ``num_cpus=1`` unless ``map_batches`` says otherwise, and Ray sets
``OMP_NUM_THREADS`` to an actor's CPUs, which fastgru follows (`fastgru.threads`): N actors of one CPU
each use N cores without oversubscribing them.

This module imports Ray only where it needs it (``ray.get`` of an object reference); ``import fastgru``
never imports it.
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from fastgru.batching import DEFAULT_MAX_ROWS, as_model, check_outputs, score_sequences

__all__ = ["GRUPredictor"]


def _resolve(model):
    """``model`` after following a Ray object reference (to a model, or to its bytes)."""
    if "ray" not in sys.modules:  # no object reference can exist without Ray
        return model
    import ray

    return ray.get(model) if isinstance(model, ray.ObjectRef) else model


class GRUPredictor:
    """Scores the sequences of a column; for ``ray.data.Dataset.map_batches(GRUPredictor, ...)``.

    ``model``: a `fastgru.GRU` or `fastgru.Model`; a path any `fastgru.load` reads (it must exist where
    the actors run); the bytes of fastgru's own file (`fastgru.io.native.dumps`, the content of a saved
    file) or of ``pickle.dumps(model)``; or a Ray object reference to any of these (``ray.put(model)``:
    stored once in the object store, fetched once per node). ``column``: the input column, (T_i, I)
    sequences. ``outputs``: for a GRU ``"h_n"`` (the default), ``"output"`` or both, each a new column;
    for a Model ``"output"`` (the default; see the module docstring). ``max_rows``: the largest group run
    as one batch. ``num_threads``: threads per call (None: the model's, else the actor's budget,
    ``OMP_NUM_THREADS``).
    """

    def __init__(self, model, *, column: str = "x", outputs: str | Sequence[str] | None = None,
                 keep_input: bool = False, max_rows: int = DEFAULT_MAX_ROWS, num_threads: int | None = None):
        self.model = as_model(_resolve(model))
        self.column = column
        self.outputs = check_outputs(outputs, self.model)
        self.keep_input = bool(keep_input)
        self.max_rows = max_rows
        self.num_threads = num_threads
        score_sequences(self.model, [], outputs=self.outputs, max_rows=max_rows,
                        num_threads=num_threads)  # checks the options now

    def __call__(self, batch: dict) -> dict:
        if not isinstance(batch, dict):
            raise TypeError(f"GRUPredictor takes numpy batches (map_batches(..., batch_format='numpy')), "
                            f"got {type(batch).__name__}")
        if self.column not in batch:
            raise KeyError(f"the batch has no column {self.column!r} (columns: {sorted(batch)})")
        results = score_sequences(self.model, batch[self.column], outputs=self.outputs, max_rows=self.max_rows,
                                  num_threads=self.num_threads)
        columns = {}
        for name in self.outputs:
            value = results[name]
            if name == "h_n":
                columns[name] = value
            elif value and isinstance(value[0], tuple):  # a Model that returns several arrays
                for part in range(len(value[0])):
                    columns[f"{name}_{part}"] = _object_column([row[part] for row in value])
            else:
                columns[name] = _object_column(value)
        clashes = sorted(name for name in columns if name in batch and name != self.column)
        if clashes:
            raise ValueError(f"the batch already has column(s) {clashes}: rename them before scoring")
        scored = {name: value for name, value in batch.items() if self.keep_input or name != self.column}
        scored.update(columns)
        return scored


def _object_column(arrays: list) -> np.ndarray:
    """A variable-shaped tensor column: one array per row (also when they happen to share a shape, so that
    every batch of a dataset has the same column type)."""
    column = np.empty(len(arrays), dtype=object)
    for row, array in enumerate(arrays):
        column[row] = array
    return column
