"""Whole Keras models: fastgru.Model against Keras 3 (torch backend), the call and frame-by-frame streaming.

    python bench/wholemodel.py [--quick] [--threads 1,2] [--out bench/results] [--keep-blas-pins]

The two most common Keras shapes of a GRU model, each after a Masking layer (the usual front of padded batches):
- classifier: ``Sequential([Input((T, I)), Masking, GRU(128, activation="tanh"), Dense(10, "softmax")])``;
- tagger: ``Sequential([Input((T, I)), Masking, GRU(64, return_sequences=True), Dense(1, "sigmoid")])``.
T = 100 frames of I = 40 features (a keyword spotter's MFCCs).

Rows per model: the whole-model call at B = 1 and B = 32 (fastgru ``model(x)``, Keras ``model(x)`` eagerly
under ``torch.no_grad()``, its fastest call path), and streaming at B = 1: fastgru ``model.stream(1).step``
against Keras calling a ``stateful=True`` copy of the model on one frame (the Keras way to score frame
by frame). The ``GRU alone`` rows time fastgru's GRU without the head (``model.gru(x)``, a GRUStream),
so that the head's share is measured in the same run. Outputs are compared with Keras once per row.
Timing is interleaved (fastgru/benchmark/timing.py), at normal priority; the report names the CPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

STEPS, FEATURES = 100, 40
MODELS = {"classifier": {"units": 128, "classes": 10, "sequences": False},
          "tagger": {"units": 64, "classes": 1, "sequences": True}}
QUICK = {"steps": 8, "batches": (1, 4)}


def _keras_model(name, steps, batch=None, stateful=False):
    import keras

    spec = MODELS[name]
    L = keras.layers
    head = L.Dense(spec["classes"], activation="sigmoid" if spec["classes"] == 1 else "softmax")
    inputs = keras.Input(batch_shape=(batch, steps, FEATURES))
    gru = L.GRU(spec["units"], activation="tanh", return_sequences=spec["sequences"], stateful=stateful)
    return keras.Sequential([inputs, L.Masking(0.0), gru, head])


def _randomized(model, seed=0):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.uniform(-0.3, 0.3, variable.shape).astype("float32"))
    return model


def _call_rows(name, model, fast, batch, steps, threads):
    import torch

    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, steps, FEATURES)).astype(np.float32)
    x_torch = torch.from_numpy(x)
    with torch.no_grad():
        expected = model(x_torch, training=False).numpy()
    diff = float(np.abs(fast(x) - expected).max())

    def keras_run(n):
        with torch.no_grad():
            for _ in range(n):
                model(x_torch, training=False)

    gru = fast.gru
    runners = {"fastgru": lambda n: [fast(x) for _ in range(n)], "keras": keras_run,
               "fastgru GRU alone": lambda n: [gru(x) for _ in range(n)]}
    return runners, {"fastgru": diff}


def _stream_rows(name, model, fast, steps, threads):
    import torch

    stateful = _keras_model(name, 1, batch=1, stateful=True)
    stateful.set_weights(model.get_weights())
    rng = np.random.default_rng(7)
    frames = rng.standard_normal((steps, 1, FEATURES)).astype(np.float32)
    stream = fast.stream(1)
    with torch.no_grad():
        expected = [stateful(torch.from_numpy(frame[:, None]), training=False).numpy().reshape(1, -1)
                    for frame in frames]
    got = [np.array(stream.step(frame)).reshape(1, -1) for frame in frames]
    diff = float(np.abs(np.stack(got) - np.stack(expected)).max())
    frame_tensors = [torch.from_numpy(frame[:, None]) for frame in frames]
    gru_stream = fast.gru.stream(1)

    def fast_run(n):
        for i in range(n):
            stream.step(frames[i % steps])

    def keras_run(n):
        with torch.no_grad():
            for i in range(n):
                stateful(frame_tensors[i % steps], training=False)

    def gru_run(n):
        for i in range(n):
            gru_stream.step(frames[i % steps])

    return {"fastgru": fast_run, "keras": keras_run, "fastgru GRU alone": gru_run}, {"fastgru": diff}


def worker(args) -> None:
    threads = common.parse_threads(args.threads)[0]
    common.pin_torch_threads(threads)
    import fastgru
    from fastgru.benchmark import timing

    steps = QUICK["steps"] if args.quick else STEPS
    batches = QUICK["batches"] if args.quick else (1, 32)
    say = lambda text: print(f"[wholemodel, {threads} thread(s)] {text}", flush=True)  # noqa: E731
    result = {"threads": threads, "versions": common.versions(("numpy", "torch", "keras", "fastgru")), "cases": [],
              "loadavg_start": common.loadavg()}
    for name in MODELS:
        model = _randomized(_keras_model(name, steps))
        fast = fastgru.Model.from_keras(model)
        fast.num_threads = threads
        cases = [(f"call B={b}", lambda b=b: _call_rows(name, model, fast, b, steps, threads)) for b in batches]
        cases.append(("stream B=1", lambda: _stream_rows(name, model, fast, steps, threads)))
        for label, build in cases:
            runners, diffs = build()
            stats = timing.interleaved(runners, budget_s=0.3 if args.quick else 6.0,
                                       sample_s=0.001 if args.quick else 0.005,
                                       min_rounds=2 if args.quick else 5, max_rounds=5 if args.quick else 60,
                                       settle_s=0.1 if threads > 1 else 0.0)
            case = {"model": name, "case": label, "T": steps, "rows": stats, "max_diff": diffs}
            result["cases"].append(case)
            say(f"{name} {label}: " + ", ".join(f"{n} {common.format_seconds(s['median_s'])}" for n, s in stats.items())
                + f" (max |fastgru - keras| {diffs['fastgru']:.1e})")
    result["loadavg_end"] = common.loadavg()
    Path(args.json).write_text(json.dumps(result, indent=1))


def markdown(workers: list[dict]) -> str:
    from common import format_seconds

    cpu = common.cpu_info()
    lines = ["# Whole Keras models: fastgru.Model vs Keras 3 (torch backend)", "",
             f"CPU: {cpu['model']} (family {cpu.get('family', '?')} model {cpu.get('model_number', '?')}), "
             f"{cpu.get('usable_cpus', '?')} usable CPUs; versions: {workers[0]['versions']}. Per call (stream: per "
             "frame), median [p90]. `head` is the share of fastgru's time spent outside the GRU "
             "(1 - GRU alone / whole model); `max diff` is fastgru against Keras on the same input.", "",
             "| threads | model | case | fastgru | Keras | speedup | fastgru GRU alone | head | max diff |",
             "|---|---|---|---|---|---|---|---|---|"]
    for worker in workers:
        for case in worker["cases"]:
            rows = case["rows"]
            fast, keras, alone = (rows[k]["median_s"] for k in ("fastgru", "keras", "fastgru GRU alone"))
            lines.append(
                f"| {worker['threads']} | {case['model']} | {case['case']}, T={case['T']} | "
                f"{format_seconds(fast)} [{format_seconds(rows['fastgru']['p90_s'])}] | "
                f"{format_seconds(keras)} [{format_seconds(rows['keras']['p90_s'])}] | **{keras / fast:.1f}x** | "
                f"{format_seconds(alone)} | {max(0.0, 1 - alone / fast):.0%} | {case['max_diff']['fastgru']:.1e} |")
    loads = "; ".join(f"{w['threads']} thr {w['loadavg_start'][0] if w['loadavg_start'] else '?'} -> "
                      f"{w['loadavg_end'][0] if w['loadavg_end'] else '?'}" for w in workers)
    lines += ["", f"1-minute load average (start -> end): {loads}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    common.worker_main("wholemodel.py", __doc__, worker, markdown, default_threads="1")


if __name__ == "__main__":
    main()
