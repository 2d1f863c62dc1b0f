"""Scale-out: sequences per second of scoring many variable-length sequences, one process vs Ray vs Dask.

    python bench/scaleout.py                 # 20,000 sequences, T uniform in 10..500, H=256 (several minutes)
    python bench/scaleout.py --quick         # 600 short sequences, a small model: a smoke test of seconds
    python bench/scaleout.py --grouping      # also: how to group one batch by length (fastgru.batching)
    python bench/scaleout.py --repeat 3      # three interleaved rounds, the best of each run reported

Every run scores the same sequences with the same model (one layer, float32, I=64 by default, zero
initial state, final states h_n returned), cut into the same batches of ``--batch-size`` sequences,
each batch scored by ``fastgru.batching.score_sequences`` (sorted by length, groups of ``--max-rows``
run with ``lengths=``):

- ``1 process, 1 thread`` and ``1 process, 2 threads``: the batches one after another in this process;
- ``Ray Data, 2 actors x 1 thread``: ``ray.init(num_cpus=2)``, the sequences in a materialized dataset
  (a variable-shaped tensor column, already in the object store), ``map_batches(fastgru.ray.GRUPredictor,
  compute=ActorPoolStrategy(size=2), batch_size=...)``, results materialized;
- ``Dask, 2 workers x 1 thread``: ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``,
  the batches scattered to the workers beforehand, the model shared with ``fastgru.dask.share``
  (scattered once per worker), one task per batch, results gathered.

Data placement and cluster start-up are not timed (a real job reads its data in the workers); the model
broadcast is timed on its own. Reported: throughput, scaling efficiency = throughput / (2 x one
single-threaded process), the time each engine's workers spend outside fastgru per batch
((workers x wall - compute inside the batches) / batches), and the engines' bare cost per task,
measured with batches of one 1-step sequence of a tiny model. Results: ``scaleout.md``,
``scaleout.json`` and ``scaleout.png`` in ``--out`` (default ``bench/results/``, not committed).

The clusters listen on 127.0.0.1 only: the script runs them in a network namespace with only the
loopback interface when it may create one (tools/loopback.py; root), and tells Ray to use 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import common  # noqa: E402
from loopback import loopback_only  # noqa: E402

RAY_ENVIRONMENT = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                   "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
TARGET_EFFICIENCY = 0.85


def make_sequences(count: int, min_steps: int, max_steps: int, features: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_steps, max_steps + 1, count)
    return [rng.standard_normal((int(t), features), dtype=np.float32) for t in lengths]


def make_model(hidden: int, features: int, seed: int):
    import fastgru

    return fastgru.GRU(features, hidden, seed=seed)


def batches_of(sequences, size: int):
    return [sequences[start : start + size] for start in range(0, len(sequences), size)]


# ------------------------------------------------------------------ one process

def run_single(gru, batches, threads: int, max_rows: int) -> dict:
    from fastgru.batching import score_sequences

    score_sequences(gru, batches[0][:8], max_rows=max_rows, num_threads=threads)  # warm the pool and caches
    load = common.loadavg()
    start = time.perf_counter()
    for batch in batches:
        score_sequences(gru, batch, max_rows=max_rows, num_threads=threads)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "compute_s": wall * threads, "workers": 1, "threads": threads, "loadavg": load}


# ------------------------------------------------------------------ Ray

def _ray_predictor_class():
    import numpy as np

    import fastgru.ray

    class TimedPredictor(fastgru.ray.GRUPredictor):
        """GRUPredictor plus each batch's compute time and wall-clock span, for the report."""

        def __call__(self, batch):
            begin = time.time()
            start = time.perf_counter()
            scored = super().__call__(batch)
            seconds = time.perf_counter() - start
            rows = len(scored["h_n"])
            scored["compute_s"] = np.full(rows, seconds / rows)
            scored["span"] = np.array([[begin, time.time()]] * rows)
            return scored

    return TimedPredictor


def _busy(workers: int, compute_s: float, spans, batches: int) -> dict:
    """What the workers did: compute, and time outside fastgru per batch from the first batch's start to
    the last one's end (actor or task start-up before the first batch left out)."""
    begin, end = min(b for b, _ in spans), max(e for _, e in spans)
    return {"compute_s": compute_s, "busy_span_s": end - begin, "batches": batches, "first_batch_at": begin,
            "steady_outside_per_batch_s": (workers * (end - begin) - compute_s) / batches}


def run_ray(gru, sequences, batch_size: int, max_rows: int, workers: int, tiny) -> dict:
    os.environ.update({k: os.environ.get(k, v) for k, v in RAY_ENVIRONMENT.items()})
    import logging
    import shutil

    import ray
    import ray.data

    data_bytes = sum(s.nbytes for s in sequences)
    temp = tempfile.mkdtemp(prefix="fgray")
    ray.init(num_cpus=workers, include_dashboard=False, _temp_dir=temp, logging_level=logging.ERROR,
             log_to_driver=False, object_store_memory=int(max(512 << 20, 2.5 * data_bytes)))
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        predictor = _ray_predictor_class()

        def job(dataset, model, size):
            started, start = time.time(), time.perf_counter()
            scored = dataset.map_batches(predictor, batch_size=size, compute=ray.data.ActorPoolStrategy(size=workers),
                                         fn_constructor_kwargs={"model": model, "max_rows": max_rows}).materialize()
            wall = time.perf_counter() - start
            columns = scored.select_columns(["compute_s", "span"]).take_batch(batch_size=scored.count())
            spans = {tuple(row) for row in columns["span"].tolist()}  # one per batch
            busy = _busy(workers, float(columns["compute_s"].sum()), spans, len(spans))
            return {"wall_s": wall, "startup_s": busy.pop("first_batch_at") - started, **busy}

        tiny_model, tiny_rows = tiny
        tiny_dataset = ray.data.from_items([{"x": row} for row in tiny_rows]).materialize()
        job(tiny_dataset, tiny_model, 1)  # warm: imports, the workers' first start
        bare = job(tiny_dataset, tiny_model, 1)
        start = time.perf_counter()
        model_ref = ray.put(gru)
        broadcast = time.perf_counter() - start
        # one block per batch: Ray Data cuts batches at block boundaries, and the default 200 blocks would
        # make batches of 100 rows from a batch_size of 256
        blocks = -(-len(sequences) // batch_size)
        dataset = ray.data.from_items([{"x": s} for s in sequences], override_num_blocks=blocks).materialize()
        load = common.loadavg()
        result = job(dataset, model_ref, batch_size)
        return {**result, "workers": workers, "threads": 1, "loadavg": load, "broadcast_s": broadcast,
                "per_task_s": bare["steady_outside_per_batch_s"], "version": ray.__version__}
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


# ------------------------------------------------------------------ Dask

def _timed_partition(partition, gru, max_rows):
    from fastgru.batching import score_sequences

    begin = time.time()
    start = time.perf_counter()
    h_n = score_sequences(gru, partition, max_rows=max_rows)["h_n"]
    return h_n, time.perf_counter() - start, (begin, time.time())


def run_dask(gru, batches, max_rows: int, workers: int, tiny) -> dict:
    import dask
    import distributed

    import fastgru.dask

    scratch = tempfile.TemporaryDirectory(prefix="fgdask")
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, local_directory=scratch.name) as cluster, \
            distributed.Client(cluster) as client:

        def job(parts, shared):
            started, start = time.time(), time.perf_counter()
            results = client.gather(client.map(_timed_partition, parts, gru=shared, max_rows=max_rows, pure=False))
            wall = time.perf_counter() - start
            busy = _busy(workers, float(sum(seconds for _, seconds, _ in results)), [span for _, _, span in results],
                         len(results))
            return {"wall_s": wall, "startup_s": busy.pop("first_batch_at") - started, **busy}

        tiny_model, tiny_rows = tiny
        tiny_parts = client.scatter([[row] for row in tiny_rows])
        tiny_shared = fastgru.dask.share(tiny_model, client)
        job(tiny_parts, tiny_shared)  # warm
        bare = job(tiny_parts, tiny_shared)
        parts = client.scatter(batches)
        distributed.wait(parts)
        start = time.perf_counter()
        shared = fastgru.dask.share(gru, client)
        distributed.wait(shared)
        broadcast = time.perf_counter() - start
        load = common.loadavg()
        result = job(parts, shared)
        return {**result, "workers": workers, "threads": 1, "loadavg": load, "broadcast_s": broadcast,
                "per_task_s": bare["steady_outside_per_batch_s"],
                "version": f"{dask.__version__} (distributed {distributed.__version__})"}


# ------------------------------------------------------------------ grouping

def run_grouping(hidden: int, features: int, batch: int, min_steps: int, max_steps: int, seed: int, repeats: int):
    """One batch, one thread: the ways to group it by length (the measurement behind fastgru.batching)."""
    import numpy as np

    from fastgru.batching import length_groups

    gru = make_model(hidden, features, seed)
    sequences = make_sequences(batch, min_steps, max_steps, features, seed + 1)
    lengths = np.array([len(s) for s in sequences])

    def run(groups):
        for group in groups:
            group_lengths = lengths[group]
            x = np.zeros((int(group_lengths.max()), len(group), features), np.float32)
            for column, index in enumerate(group):
                x[: lengths[index], column] = sequences[index]
            gru(x, lengths=group_lengths, num_threads=1)

    by_length: dict = {}
    for index in np.argsort(lengths, kind="stable"):
        by_length.setdefault(int(lengths[index]), []).append(index)
    strategies = {"one call per distinct length": [np.array(v) for v in by_length.values()]}
    for rows in (8, 16, 32, 64, 128, batch):
        strategies[f"sorted, groups of {rows}, lengths="] = length_groups(lengths, rows)
    strategies["unsorted, groups of 64, lengths="] = [np.arange(s, min(s + 64, batch)) for s in range(0, batch, 64)]
    times = {name: [] for name in strategies}
    for _ in range(repeats):  # interleaved rounds: load drift hits every strategy alike
        for name, groups in strategies.items():
            start = time.perf_counter()
            run(groups)
            times[name].append(time.perf_counter() - start)
    return [{"strategy": name, "calls": len(strategies[name]), "seconds": float(np.median(t)),
             "sequences_per_s": batch / float(np.median(t))} for name, t in times.items()]


# ------------------------------------------------------------------ report

def summarize(results: dict, sequences: int) -> list[dict]:
    rows = []
    base = results.get("single-1")
    for key, label in (("single-1", "1 process, 1 thread"), ("single-2", "1 process, 2 threads"),
                       ("ray", "Ray Data, 2 actors x 1 thread"), ("dask", "Dask, 2 workers x 1 thread")):
        if key not in results:
            continue
        r = results[key]
        rate = sequences / r["wall_s"]
        row = {"run": label, "key": key, "wall_s": r["wall_s"], "sequences_per_s": rate, "loadavg": r["loadavg"]}
        if base:
            ideal = (r["workers"] * r["threads"]) * sequences / base["wall_s"]
            row["speedup"] = rate / (sequences / base["wall_s"])
            row["efficiency"] = rate / ideal
        if key in ("ray", "dask"):
            batches = r["batches"]
            row["outside_fastgru_per_batch_s"] = (r["workers"] * r["wall_s"] - r["compute_s"]) / batches
            row["steady_outside_per_batch_s"] = r["steady_outside_per_batch_s"]
            row["startup_s"] = r["startup_s"]
            if base:  # > 1: the batches' own compute ran slower than in the 1-thread process (CPU contention)
                row["compute_vs_1_thread"] = r["compute_s"] / base["wall_s"]
            row["outside_fastgru_share"] = 1 - r["compute_s"] / (r["workers"] * r["wall_s"])
            row["bare_task_s"] = r["per_task_s"]
            row["broadcast_s"] = r["broadcast_s"]
        rows.append(row)
    return rows


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(config: dict, machine: dict, rows: list[dict], grouping, load_end) -> str:
    cpu = machine["cpu"]
    lines = [
        "# Scale-out: scoring variable-length sequences", "",
        f"CPU: {cpu.get('model')} (family {cpu.get('family')} model {cpu.get('model_number')}), "
        f"{cpu.get('usable_cpus')} usable CPUs, caches {cpu.get('caches')}; Python {machine['python']}; "
        f"{config['versions']}.",
        f"Job: {config['sequences']} sequences, T uniform in {config['min_steps']}..{config['max_steps']} "
        f"({config['steps_total']} steps), I={config['features']}, H={config['hidden']}, one layer, float32, "
        f"final states returned; batches of {config['batch_size']} sequences, groups of {config['max_rows']} "
        f"(fastgru.batching). Best of {config['repeat']} interleaved round(s). Load average at start "
        f"{machine['loadavg_start']}, at end {load_end}.", "",
        "| run | wall | sequences/s | speedup | efficiency | start-up | outside fastgru per batch (all / steady) | "
        "workers' time outside fastgru | fastgru compute vs 1 thread | bare task | model broadcast | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        outside = ("-" if "outside_fastgru_per_batch_s" not in row else
                   f"{common.format_seconds(row['outside_fastgru_per_batch_s'])} / "
                   f"{common.format_seconds(row['steady_outside_per_batch_s'])}")
        lines.append(
            f"| {row['run']} | {row['wall_s']:.2f} s | {row['sequences_per_s']:.1f} | "
            f"{row.get('speedup', 0):.2f}x | {100 * row.get('efficiency', 0):.0f}% | "
            f"{common.format_seconds(row.get('startup_s'))} | {outside} | "
            f"{_percent(row.get('outside_fastgru_share'))} | {_ratio(row.get('compute_vs_1_thread'))} | "
            f"{common.format_seconds(row.get('bare_task_s'))} | {common.format_seconds(row.get('broadcast_s'))} | "
            f"{row['loadavg'][0] if row['loadavg'] else '-'} |")
    lines += ["", f"Efficiency = throughput / (workers x threads x the 1-thread process's); target "
              f"{100 * TARGET_EFFICIENCY:.0f}% for the engines, and no slower than 1 process with 2 threads. "
              "'Outside fastgru' is the workers' time not spent in score_sequences, per batch: over the whole "
              "run (start-up included), and over the span from the first batch's start to the last one's end. "
              "'Start-up': from the job's submission to its first batch (Ray starts its actors then). "
              "'Bare task': the steady time outside fastgru per batch for batches of one 1-step sequence of a "
              "tiny model: the engine's own cost per batch. 'fastgru compute vs 1 thread': the time the "
              "workers spent inside score_sequences, over the 1-thread process's wall time for the same "
              "batches; above 1.00x the same work ran slower in the workers (other processes on the CPUs, "
              "shared caches), which no engine can recover. Efficiency is about "
              "(1 - time outside fastgru) / (compute vs 1 thread)."]
    if grouping:
        lines += ["", f"## Grouping one batch by length ({config['grouping_batch']} sequences, 1 thread)", "",
                  "| strategy | calls | time | sequences/s |", "|---|---|---|---|"]
        for g in grouping:
            lines.append(f"| {g['strategy']} | {g['calls']} | {common.format_seconds(g['seconds'])} | "
                         f"{g['sequences_per_s']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [row["run"].replace(", ", "\n") for row in rows]
    left.bar(labels, [row["sequences_per_s"] for row in rows], color=["#999", "#666", "#1f77b4", "#ff7f0e"][: len(rows)])
    if rows and rows[0]["key"] == "single-1":
        left.axhline(2 * rows[0]["sequences_per_s"], color="green", linestyle="--", label="ideal 2x of 1 thread")
        left.legend()
    left.set_ylabel("sequences / s")
    left.set_title("throughput")
    engine_rows = [row for row in rows if "efficiency" in row and row["key"] != "single-1"]
    right.bar([row["run"].replace(", ", "\n") for row in engine_rows], [100 * row["efficiency"] for row in engine_rows],
              color=["#666", "#1f77b4", "#ff7f0e"][: len(engine_rows)])
    right.axhline(100 * TARGET_EFFICIENCY, color="red", linestyle="--", label=f"target {100 * TARGET_EFFICIENCY:.0f}%")
    right.set_ylabel("% of ideal 2x")
    right.set_ylim(0, 110)
    right.set_title("scaling efficiency")
    right.legend()
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="600 short sequences, H=32: a smoke test")
    parser.add_argument("--sequences", type=int, default=20000)
    parser.add_argument("--min-steps", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256, help="sequences per Ray batch / Dask task")
    parser.add_argument("--max-rows", type=int, default=64, help="sequences per fastgru call (fastgru.batching)")
    parser.add_argument("--runs", default="single,ray,dask", help="any of single, ray, dask")
    parser.add_argument("--grouping", action="store_true", help="also time the ways to group one batch by length")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of every run, interleaved (load drift hits all alike); the best round is reported")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", type=Path, default=common.BENCH_DIR / "results")
    args = parser.parse_args()
    if args.quick:
        args.sequences, args.min_steps, args.max_steps, args.hidden, args.features, args.batch_size = 600, 5, 60, 32, 8, 50
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not set(runs) <= {"single", "ray", "dask"}:
        raise SystemExit(f"--runs takes single, ray, dask; got {args.runs!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    workers = 2

    confined = None
    if {"ray", "dask"} & set(runs):
        confined = loopback_only()
        print("clusters run in a loopback-only network namespace" if confined else
              "cannot create a network namespace here: clusters are bound to 127.0.0.1 by their settings")
    machine = common.describe_machine()
    import numpy as np

    import fastgru

    sequences = make_sequences(args.sequences, args.min_steps, args.max_steps, args.features, args.seed)
    gru = make_model(args.hidden, args.features, args.seed)
    batches = batches_of(sequences, args.batch_size)
    tiny = (fastgru.GRU(2, 2, seed=0), [np.zeros((1, 2), np.float32)] * (60 if args.quick else 200))
    config = {"sequences": args.sequences, "min_steps": args.min_steps, "max_steps": args.max_steps,
              "steps_total": int(sum(len(s) for s in sequences)), "features": args.features, "hidden": args.hidden,
              "batch_size": args.batch_size, "max_rows": args.max_rows, "seed": args.seed, "quick": args.quick,
              "workers": workers, "command": " ".join(sys.argv), "confined_to_loopback": bool(confined),
              "repeat": args.repeat}
    results: dict = {}
    rounds: dict = {}
    for round_index in range(max(1, args.repeat)):
        measured = {}
        if "single" in runs:
            for threads in (1, 2):
                print(f"round {round_index + 1}: one process, {threads} thread(s) ...", flush=True)
                measured[f"single-{threads}"] = run_single(gru, batches, threads, args.max_rows)
        if "ray" in runs:
            print(f"round {round_index + 1}: Ray Data ...", flush=True)
            measured["ray"] = run_ray(gru, sequences, args.batch_size, args.max_rows, workers, tiny)
        if "dask" in runs:
            print(f"round {round_index + 1}: Dask ...", flush=True)
            measured["dask"] = run_dask(gru, batches, args.max_rows, workers, tiny)
        for key, result in measured.items():
            rounds.setdefault(key, []).append(result["wall_s"])
            if key not in results or result["wall_s"] < results[key]["wall_s"]:
                results[key] = result
    config["rounds_wall_s"] = rounds
    grouping = None
    if args.grouping:
        print("grouping ...", flush=True)
        config["grouping_batch"] = 256
        grouping = run_grouping(args.hidden, args.features, 256, args.min_steps, args.max_steps, args.seed, 3 if args.quick else 5)
    versions = {k: v for k, v in common.versions(("numpy", "fastgru")).items() if "blas" not in k}
    versions.update({k: results[k]["version"] for k in ("ray", "dask") if k in results})
    config["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    rows = summarize(results, args.sequences)
    load_end = common.loadavg()
    report = markdown(config, machine, rows, grouping, load_end)
    (args.out / "scaleout.md").write_text(report)
    (args.out / "scaleout.json").write_text(json.dumps(
        {"config": config, "machine": machine, "results": results, "rows": rows, "grouping": grouping,
         "loadavg_end": load_end}, indent=2))
    plot(rows, args.out / "scaleout.png")
    print(report)
    print(f"wrote {args.out / 'scaleout.md'}, scaleout.json, scaleout.png")


if __name__ == "__main__":
    main()
