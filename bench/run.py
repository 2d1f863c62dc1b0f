"""fastgru vs PyTorch / ONNX Runtime / Keras: one command, a markdown table, a PNG plot.

    python bench/run.py [--quick] [--threads 1,2] [--out bench/results] [--int8]
                        [--engines fastgru,torch,...] [--shapes seq-512,...] [--budget SECONDS]

Each thread count runs in a fresh subprocess with OMP/OPENBLAS/MKL_NUM_THREADS set and
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE removed before any import (see common.py; --quick and
--keep-blas-pins keep them); inside it the machine's limits are measured first (limits.py), then
every shape is timed with all engines interleaved round by round (fastgru/benchmark/timing.py), after each engine's
output was compared once with float64 PyTorch. Results: <out>/bench.md, bench.png, bench.json.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import shapes as shape_table  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes, few repeats: a smoke test (< 60 s)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--out", default=str(common.BENCH_DIR / "results"), help="output folder")
    p.add_argument("--int8", action="store_true", help="add the int8 engines and the DeepBench server shape")
    p.add_argument("--engines", default=None, help="comma-separated engine names (default: all float32 ones)")
    p.add_argument("--shapes", default=None, help="comma-separated shape names (default: the standard set)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timing per shape and thread count (default 6, quick 0.3)")
    p.add_argument("--keep-blas-pins", action="store_true",
                   help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE in the workers (--quick always does: CI keeps them)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def select_shapes(args) -> list:
    table = shape_table.QUICK if args.quick else shape_table.DEFAULT + (
        shape_table.INT8_EXTRA if args.int8 else [])
    if args.shapes:
        everything = {s.name: s for s in shape_table.DEFAULT + shape_table.INT8_EXTRA + shape_table.QUICK}
        wanted = args.shapes.split(",")
        unknown = [n for n in wanted if n not in everything]
        if unknown:
            raise SystemExit(f"unknown shape(s) {unknown}; known: {sorted(everything)}")
        table = [everything[n] for n in wanted]
    return table


def select_engines(args) -> list[str]:
    import engines

    names = list(engines.DEFAULT_ENGINES) + (engines.INT8_ENGINES if args.int8 else [])
    if args.engines:
        names = args.engines.split(",")
        unknown = [n for n in names if n not in engines.ENGINES]
        if unknown:
            raise SystemExit(f"unknown engine(s) {unknown}; known: {sorted(engines.ENGINES)}")
    return names


# --------------------------------------------------------------------------------------- worker


def worker(args) -> None:
    import numpy as np

    threads = common.parse_threads(args.threads)[0]
    common.pin_torch_threads(threads)
    import torch

    import engines
    import limits
    from fastgru.benchmark import timing

    quick = args.quick
    budget = args.budget if args.budget is not None else (0.3 if quick else 6.0)
    # With several threads, a pause before each sample lets the previous engine's spinning pool go to
    # sleep (fastgru/benchmark/timing.py: ONNX Runtime's spins 40-50 ms): otherwise it competes with the engine timed.
    timing_opts = dict(budget_s=budget, sample_s=0.001 if quick else 0.005,
                       min_rounds=2 if quick else 5, max_rounds=5 if quick else 60,
                       settle_s=0.25 if threads > 1 else 0.0)
    say = lambda text: print(f"[{threads} thread(s)] {text}", flush=True)  # noqa: E731

    result: dict = {"threads": threads, "config": common.fastgru_config(), "versions": common.versions(),
                    "engines": {}, "not_applicable": {}, "cases": [],
                    "env": {k: os.environ.get(k) for k in common.THREAD_ENV_VARS + common.BLAS_PIN_VARS},
                    "torch_threads": torch.get_num_threads(), "loadavg_start": common.loadavg()}
    active = []
    for name in select_engines(args):
        engine = engines.ENGINES[name]
        reason = engine.not_applicable()
        if reason:
            result["not_applicable"][name] = reason
            say(f"engine {name} not run: {reason}")
            continue
        try:
            version = engine.probe()
            result["engines"][name] = {"available": True, "version": version, "peer": engine.peer,
                                       "precision": engine.precision}
            active.append(engine)
        except Exception as exc:  # noqa: BLE001 - an engine that cannot load is reported, not fatal
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            result["engines"][name] = {"available": False, "reason": reason, "peer": engine.peer,
                                       "precision": engine.precision}
            say(f"engine {name} unavailable: {reason}")

    selected = select_shapes(args)
    say("measuring machine limits ...")
    result["limits"] = limits.measure(threads, selected, quick)
    for line in limits.describe(result["limits"]):
        say(line)
    result["blas"] = common.blas_info()  # after every engine and scipy are loaded: all BLAS libraries
    warning = common.blas_warning(result["blas"], common.cpu_info()["flags"])
    if warning:
        say(f"warning: {warning}")

    for shape in selected:
        torch.manual_seed(0)
        module = torch.nn.GRU(shape.input_size, shape.hidden).float().eval()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((shape.seq_len, shape.batch, shape.input_size), dtype=np.float32)
        h0 = 0.5 * rng.standard_normal((1, shape.batch, shape.hidden), dtype=np.float32)
        with torch.inference_mode():
            reference = torch.nn.GRU(shape.input_size, shape.hidden).double()
            reference.load_state_dict(module.state_dict())
            expected = reference(torch.from_numpy(x).double(), torch.from_numpy(h0).double())[0].numpy()

        case = {"shape": shape.name, "group": shape.group, "T": shape.seq_len, "B": shape.batch,
                "H": shape.hidden, "I": shape.input_size, "flops": shape.flops,
                "weight_hh_bytes": shape.weight_hh_bytes, "rows": {}}
        runners = {}
        for engine in active:
            if not engine.supports(shape):
                continue
            row = case["rows"][engine.name] = {}
            try:
                built = engine.build(module, shape, x, h0, threads)
                out = np.asarray(built.output(), dtype=np.float64)
                want = expected[:out.shape[0]]
                if out.shape != want.shape:
                    raise ValueError(f"output shape {out.shape}, expected {want.shape}")
                row["max_abs_diff"] = float(np.max(np.abs(out - want)))
                row["notes"] = built.notes
                runners[engine.name] = built.run
            except Exception as exc:  # noqa: BLE001
                row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                say(f"{shape.name}: {engine.name} failed: {row['error']}")
        start = time.perf_counter()
        stats = timing.interleaved(runners, **timing_opts) if runners else {}
        for name, s in stats.items():
            case["rows"][name].update(s)
        result["cases"].append(case)
        line = ", ".join(f"{n} {common.format_seconds(s['median_s'])}" for n, s in stats.items())
        say(f"{shape.name} ({shape.label()}): {line}  [{time.perf_counter() - start:.1f} s]")
        runners = built = None
        gc.collect()  # this case's models (tens of MB each at H=1024) go before the next case's

    after = result["fma_after"] = limits.fma_after(result["limits"], quick)
    if "gflops" in after:
        say(f"FMA peak after the cases: {after['gflops']:.1f} GFLOP/s ({100 * after['of_before']:.0f}% of before)")
    result["loadavg_end"] = common.loadavg()
    Path(args.json).write_text(json.dumps(result, indent=1))


# --------------------------------------------------------------------------------------- parent


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.REPO_DIR,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=common.REPO_DIR, capture_output=True, text=True).stdout.strip()
        return (rev or "no commit") + (" (uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    import report

    thread_counts = common.parse_threads(args.threads)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": " ".join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git": git_revision(), "quick": args.quick, "machine": common.describe_machine(),
    }
    cpu = meta["machine"]["cpu"]
    print(f"CPU: {cpu['model']} ({cpu['usable_cpus']} usable of {cpu['logical_cpus']} logical CPUs; "
          f"{', '.join(cpu['flags'])}; caches {cpu['caches']}); threads {thread_counts}", flush=True)
    passthrough = [a for a in (["--quick"] if args.quick else []) + (["--int8"] if args.int8 else [])]
    for flag in ("engines", "shapes", "budget"):
        if getattr(args, flag) is not None:
            passthrough += [f"--{flag}", str(getattr(args, flag))]
    # CI's smoke run (--quick) keeps the BLAS pins: tests and CI never drop them (common.py).
    unpin = not (args.quick or args.keep_blas_pins)
    meta["blas_pins"] = {"unset_in_workers": unpin,
                         "parent": {k: os.environ.get(k) for k in common.BLAS_PIN_VARS},
                         "why_kept": None if unpin else ("--quick" if args.quick else "--keep-blas-pins")}
    start = time.perf_counter()
    workers = [common.run_worker("run.py", passthrough, t, unpin_blas=unpin) for t in thread_counts]
    meta["elapsed_s"] = round(time.perf_counter() - start, 1)

    report.scale_sgemm_reference(workers)
    report.annotate_shares(workers)
    config = workers[0].get("config") if workers else None
    (out_dir / "bench.json").write_text(json.dumps({"config": config, "meta": meta, "workers": workers}, indent=1))
    text = report.markdown(meta, workers)
    (out_dir / "bench.md").write_text(text)
    plot_note = report.plot(meta, workers, out_dir / "bench.png")
    print()
    print(text)
    print(plot_note)
    print(f"wrote {out_dir / 'bench.md'}, {out_dir / 'bench.json'} in {meta['elapsed_s']} s")


if __name__ == "__main__":
    main()
