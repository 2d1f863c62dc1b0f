"""The benchmark shapes: one row per case. Adding a case is adding a row.

Every case has I = H (input size equals hidden size) unless it says otherwise, one layer, one direction,
float32 activations.
FLOPs count the two matrix products of every step, ``2*T*B*3H*(I+H)``; the gate math is not counted.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    group: str  # streaming | sequence | batch | deepbench | int8 | int8-large (int8 engines only)
    seq_len: int  # T
    batch: int  # B
    hidden: int  # H
    input: int | None = None  # I, when not H

    @property
    def input_size(self) -> int:
        return self.hidden if self.input is None else self.input

    @property
    def flops(self) -> int:
        return 2 * self.seq_len * self.batch * 3 * self.hidden * (self.input_size + self.hidden)

    @property
    def weight_hh_bytes(self) -> int:
        return 3 * self.hidden * self.hidden * 4

    @property
    def streaming(self) -> bool:
        """One time step per call: latency per call is the figure of merit."""
        return self.seq_len == 1

    def label(self) -> str:
        extra = "" if self.input is None else f" I={self.input}"
        return f"T={self.seq_len} B={self.batch} H={self.hidden}{extra}"


DEFAULT = [
    # streaming: one step per call (real-time audio, sensors); the state goes in and out every call
    Shape("stream-256", "streaming", 1, 1, 256),
    Shape("stream-512", "streaming", 1, 1, 512),
    # batch-1 sequences: bound by how fast W_hh streams from cache
    Shape("seq-256", "sequence", 100, 1, 256),
    Shape("seq-512", "sequence", 100, 1, 512),
    Shape("seq-1024", "sequence", 100, 1, 1024),
    # batches: bound by the GEMM peak
    Shape("batch16-512", "batch", 100, 16, 512),
    Shape("batch64-512", "batch", 100, 64, 512),
    # DeepBench-style (Baidu DeepBench GRU inference shapes)
    Shape("deepbench-b4", "deepbench", 50, 4, 1024),
    Shape("deepbench-b32", "deepbench", 50, 32, 1024),
]

# int8 rows, run with --int8: the batch-1 shapes above plus DeepBench's server shape, whole
# (I = H = 1024) and its recurrent part: DeepBench times the recurrence without the input projection.
# No engine here exposes a call on precomputed projections, so the recurrent part is the same GRU with
# a one-feature input (the projection of one feature costs well under 1% of the call); the input
# projection's own cost is the difference of the two rows.
INT8_EXTRA = [
    Shape("deepbench-server", "int8", 1500, 1, 1024),
    Shape("deepbench-server-recurrent", "int8", 1500, 1, 1024, input=1),
    # DeepBench's largest GRU server shape, recurrent part: 23.8 MB of int8 W_hh (95 MB in float32, which
    # would take seconds per call from DRAM in every float32 engine): int8 engines only (Engine.supports)
    Shape("deepbench-server-2816-recurrent", "int8-large", 1500, 1, 2816, input=1),
]

# --quick: tiny shapes for a smoke test (CI); timings are meaningless at this size.
QUICK = [
    Shape("quick-stream", "streaming", 1, 1, 32),
    Shape("quick-seq", "sequence", 10, 1, 48),
    Shape("quick-batch", "batch", 10, 4, 64),
]
