"""Training step: forward + backward (BPTT) of fastgru vs PyTorch autograd.

    python bench/train_step.py [--quick] [--threads 1,2] [--out bench/results] [--keep-blas-pins]

One step = forward keeping what backward needs, then gradients of a loss given dL/d(output) for
every weight, the input x and h0:
- fastgru: ``out, h_n, tape = gru.forward(x, h0, return_tape=True); gru.backward(tape, grad_output=g)``
- torch:   ``out, h_n = m(x, h0)`` with x and h0 requiring grad, then ``out.backward(g)``
Shapes: B=1 and B=16, T=100, H=I=512. Gradients are compared once with float64 PyTorch (max abs
diff, and relative to the largest gradient entry). Timing is interleaved as in run.py. FLOPs are
counted as 3x the forward's (forward, then dx/dh and dW products): an approximation, for scale.
fastgru is skipped with a message if its backward is not implemented.

The weight gradients are large GEMMs through scipy's OpenBLAS, so the workers drop
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as run.py's do (common.thread_env; --quick and
--keep-blas-pins keep them), and the report names the BLAS kernel that ran (threadpoolctl).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from shapes import Shape  # noqa: E402

SHAPES = [Shape("train-b1", "train", 100, 1, 512), Shape("train-b16", "train", 100, 16, 512)]
QUICK_SHAPES = [Shape("quick-train-b1", "train", 10, 1, 32), Shape("quick-train-b4", "train", 10, 4, 32)]


def _torch_step(module, x, h0, grad_output):
    import torch

    x_t = torch.from_numpy(x).requires_grad_(True)
    h0_t = torch.from_numpy(h0).requires_grad_(True)
    g_t = torch.from_numpy(grad_output)

    def step():
        module.zero_grad(set_to_none=True)
        x_t.grad = h0_t.grad = None
        output, _ = module(x_t, h0_t)
        output.backward(g_t)

    def grads() -> dict:
        step()
        out = {name: p.grad.numpy().copy() for name, p in module.named_parameters()}
        out["x"], out["h0"] = x_t.grad.numpy().copy(), h0_t.grad.numpy().copy()
        return out

    return step, grads


def _fastgru_step(module, x, h0, grad_output, threads):
    import fastgru

    gru = fastgru.GRU.from_torch(module)
    gru.num_threads = threads
    if not hasattr(gru, "backward"):
        raise NotImplementedError("fastgru.GRU has no backward()")

    def step():
        _, _, tape = gru.forward(x, h0, return_tape=True)
        return gru.backward(tape, grad_output=grad_output)

    def grads() -> dict:
        return {k: np.asarray(v) for k, v in step().items()}

    try:
        step()
    except (ImportError, AttributeError) as exc:  # backward's module or binding not there yet
        if "backward" in str(exc):
            raise NotImplementedError(f"{type(exc).__name__}: {exc}") from exc
        raise
    return step, grads


def worker(args) -> None:
    import torch

    threads = common.parse_threads(args.threads)[0]
    common.pin_torch_threads(threads)
    from fastgru.benchmark import timing

    say = lambda text: print(f"[train, {threads} thread(s)] {text}", flush=True)  # noqa: E731
    result = {"threads": threads, "versions": common.versions(("numpy", "scipy", "torch", "fastgru")), "cases": [],
              "loadavg_start": common.loadavg()}
    for shape in QUICK_SHAPES if args.quick else SHAPES:
        torch.manual_seed(0)
        module = torch.nn.GRU(shape.input_size, shape.hidden)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((shape.seq_len, shape.batch, shape.input_size), dtype=np.float32)
        h0 = 0.5 * rng.standard_normal((1, shape.batch, shape.hidden), dtype=np.float32)
        grad_output = rng.standard_normal((shape.seq_len, shape.batch, shape.hidden), dtype=np.float32)
        reference = torch.nn.GRU(shape.input_size, shape.hidden).double()
        reference.load_state_dict(module.state_dict())
        _, ref_grads = _torch_step(reference, x.astype(np.float64), h0.astype(np.float64),
                                   grad_output.astype(np.float64))
        expected = ref_grads()

        case = {"shape": shape.name, "T": shape.seq_len, "B": shape.batch, "H": shape.hidden,
                "flops": 3 * shape.flops, "rows": {}}
        runners = {}
        builders = {"fastgru": lambda: _fastgru_step(module, x, h0, grad_output, threads),
                    "torch": lambda: _torch_step(module, x, h0, grad_output)}
        for name, build in builders.items():
            row = case["rows"][name] = {}
            try:
                step, grads = build()
                got = grads()
                missing = sorted(set(expected) - set(got))
                diffs = {k: float(np.max(np.abs(got[k] - expected[k]))) for k in expected if k in got}
                scale = max(float(np.max(np.abs(expected[k]))) for k in diffs)
                row.update(max_abs_diff=max(diffs.values()), max_rel_diff=max(diffs.values()) / scale,
                           worst=max(diffs, key=diffs.get), missing=missing)
                runners[name] = lambda n, step=step: [step() for _ in range(n)]
            except NotImplementedError as exc:
                row["skipped"] = f"not implemented yet: {exc}"
                say(f"{shape.name}: {name} skipped ({row['skipped']})")
            except Exception as exc:  # noqa: BLE001
                row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                say(f"{shape.name}: {name} failed: {row['error']}")
        stats = timing.interleaved(runners, budget_s=0.3 if args.quick else 6.0,
                                   sample_s=0.001 if args.quick else 0.005,
                                   min_rounds=2 if args.quick else 5, max_rounds=5 if args.quick else 40)
        for name, s in stats.items():
            case["rows"][name].update(s)
        say(f"{shape.name} ({shape.label()}): " + ", ".join(
            f"{n} {common.format_seconds(s['median_s'])}" for n, s in stats.items()))
        result["cases"].append(case)
    result["loadavg_end"] = common.loadavg()
    result["blas"] = common.blas_info()  # after fastgru's backward has loaded scipy's BLAS
    Path(args.json).write_text(json.dumps(result, indent=1))


def markdown(workers: list[dict]) -> str:
    from common import format_seconds
    from fastgru.benchmark.timing import paired_ratio

    lines = ["# Training step: forward + backward, fastgru vs torch autograd", "",
             "Per step, median [p90]; GFLOP/s counts 3x the forward FLOPs. `max diff` is over every "
             "gradient (weights, x, h0) against float64 torch (relative: / largest gradient entry).",
             f"CPU: {common.cpu_info()['model']}; versions: {workers[0]['versions']}; 1-minute load average "
             "(start -> end) " + "; ".join(f"{w['threads']} thr {w['loadavg_start'][0] if w['loadavg_start'] else '?'}"
                                         f" -> {w['loadavg_end'][0] if w['loadavg_end'] else '?'}" for w in workers)
             + " (above the thread count: other processes were competing, timings unreliable).", "",
             *_blas_lines(workers),
             "`round by round` = the median over the rounds of torch's sample / this engine's sample in the same "
             "round (`timing.paired_ratio`): a slow spell of the machine slows both samples of its round and "
             "cancels out of it, while it can move the ratio of the medians.", "",
             "| threads | shape | engine | median [p90] | GFLOP/s | max diff (rel) | speedup vs torch | round by round |",
             "|---|---|---|---|---|---|---|---|"]
    for worker in workers:
        for case in worker["cases"]:
            torch_row = case["rows"].get("torch", {})
            for name, row in case["rows"].items():
                head = f"| {worker['threads']} | {case['shape']} (T={case['T']} B={case['B']} H={case['H']}) | {name} |"
                if "median_s" not in row:
                    lines.append(f"{head} {row.get('skipped') or 'failed: ' + row.get('error', '?')} | | | | |")
                    continue
                speedup = paired = ""
                if name != "torch" and "median_s" in torch_row:
                    speedup = f"{torch_row['median_s'] / row['median_s']:.2f}x"
                    ratio = paired_ratio(torch_row, row)
                    paired = "-" if ratio is None else f"{ratio:.2f}x"
                missing = f", missing {row['missing']}" if row.get("missing") else ""
                lines.append(f"{head} {format_seconds(row['median_s'])} [{format_seconds(row['p90_s'])}] | "
                             f"{case['flops'] / row['median_s'] / 1e9:.1f} | {row['max_abs_diff']:.1e} "
                             f"({row['max_rel_diff']:.1e}, worst {row['worst']}{missing}) | {speedup} | {paired} |")
    return "\n".join(lines) + "\n"


def _blas_lines(workers: list[dict]) -> list[str]:
    """Which BLAS ran in each worker, its kernel, and whether the pin variables were set."""
    cpu_flags = common.cpu_info()["flags"]
    lines = []
    for worker in workers:
        blas = worker.get("blas") or {}
        pins = ", ".join(f"{k}={v}" for k, v in blas.get("pin_vars", {}).items() if v is not None)
        libs = blas.get("libraries")
        libs_text = (blas.get("missing", "not recorded") if libs is None else "; ".join(
            f"{lib['file']} {lib.get('version')} kernel {lib.get('architecture') or '?'}, {lib.get('num_threads')} thread(s)"
            for lib in libs if lib.get("user_api") == "blas"))
        warning = common.blas_warning(blas, cpu_flags) if blas else None
        lines.append(f"- {worker['threads']} thread(s): BLAS {libs_text}; pin variables: {pins or 'none'}"
                     + (f". **Warning: {warning}**" if warning else ""))
    return lines + [""]


def main() -> None:
    common.worker_main("train_step.py", __doc__, worker, markdown)


if __name__ == "__main__":
    main()
