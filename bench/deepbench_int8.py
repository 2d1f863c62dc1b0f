"""fastgru int8 on DeepBench's GRU server shape (H=1024, B=1, T=1500), in a process of its own.

    python bench/deepbench_int8.py [--threads 1,2] [--rounds 15]

DeepBench times the recurrent part (the input projection excluded). fastgru exposes no call on
precomputed projections, so the recurrent part is timed as the same GRU with a one-feature input
(I=1: its projection is one multiply per gate and step, well under 1% of the call). The input
projection's cost is the difference from the I=1024 model (of the best times: medians on a shared
machine are noisier than the difference). The two are timed alternately, round
after round, so load drift hits both alike. The report gives best and median per call. The
published TitanXp figure for this shape is 59.3 ms.

Why not in run.py's interleaved rounds (it has the same shapes with --int8)? There every engine
shares one process. At 2 threads, PyTorch's OpenMP workers and ONNX Runtime's pool keep spinning
on the second core after their own calls, and fastgru's step-by-step barrier waits for the
operating system to give its worker that core back. Measured on seq-512 at 2 threads: fastgru int8
alone 0.84 ms, interleaved with torch-int8 2.18 ms, with onnxruntime 3.74 ms. Single-threaded
rows are not affected.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

HIDDEN, SEQ_LEN, TITANXP_S = 1024, 1500, 59.3e-3


def worker(args) -> None:
    import numpy as np

    import fastgru

    threads = int(args.threads)
    rng = np.random.default_rng(0)
    h0 = (0.5 * rng.standard_normal((1, 1, HIDDEN))).astype(np.float32)
    cases = {}
    for name, inputs in (("recurrent (I=1)", 1), ("whole (I=1024)", HIDDEN)):
        model = fastgru.GRU(inputs, HIDDEN, seed=0, num_threads=threads).quantize("int8")
        x = rng.standard_normal((SEQ_LEN, 1, inputs)).astype(np.float32)
        model(x, h0)  # warm-up: workspace, pool, caches
        cases[name] = (model, x)
    times = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (model, x) in cases.items():
            start = time.perf_counter()
            model(x, h0)
            times[name].append(time.perf_counter() - start)
    result = {"threads": threads, "load_end": common.loadavg(), "isa": fastgru._core.best_isa(),
              "times": times}
    Path(args.json).write_text(json.dumps(result))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    import numpy as np

    print(f"fastgru int8, DeepBench GRU server shape H={HIDDEN} B=1 T={SEQ_LEN}; {args.rounds} rounds; "
          f"load average at start {common.loadavg()}")
    print("\n| threads | kernels | recurrent part (I=1): best / median | whole call (I=1024): best / median "
          "| input projection (difference of the bests) | vs TitanXp 59.3 ms (recurrent, median) |")
    print("|---|---|---|---|---|---|")
    for threads in common.parse_threads(args.threads):
        result = common.run_worker("deepbench_int8.py", ["--rounds", str(args.rounds)], threads)
        best = {name: min(values) for name, values in result["times"].items()}
        median = {name: float(np.median(values)) for name, values in result["times"].items()}
        recurrent, whole = "recurrent (I=1)", "whole (I=1024)"
        print(f"| {threads} | {result['isa']} | {best[recurrent] * 1e3:.1f} / {median[recurrent] * 1e3:.1f} ms | "
              f"{best[whole] * 1e3:.1f} / {median[whole] * 1e3:.1f} ms | "
              f"{(best[whole] - best[recurrent]) * 1e3:.1f} ms | "
              f"{TITANXP_S / median[recurrent]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
