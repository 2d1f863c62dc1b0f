"""Turns the workers' results into a markdown report and a PNG plot.

"speedup" is (best peer's median time) / (fastgru engine's median time): above 1 fastgru is faster.
The best peer of a float32 fastgru engine is the fastest float32 peer; an int8 fastgru engine is
compared with every peer (int8 ones included). Medians are per call.
"""

from __future__ import annotations

from pathlib import Path

from common import format_seconds

THREAD_SETTINGS = {
    "fastgru": "`num_threads=t` (model attribute and per call); scipy OpenBLAS via OPENBLAS_NUM_THREADS=t",
    "fastgru-stream": "`gru.stream(batch_size=B, h0=h0, num_threads=t)`, then `step(x_t)` per call",
    "fastgru-int8": "as fastgru; `gru.quantize(\"int8\")`",
    "fastgru-int8-stream": "as fastgru-stream, on `gru.quantize(\"int8\")`",
    "torch": "`torch.set_num_threads(t)`, `set_num_interop_threads(1)`, OMP/MKL_NUM_THREADS=t; "
             "`torch.inference_mode()`",
    "torch-int8": "as torch; `quantize_dynamic(nn.GRU, qint8)`",
    "onnxruntime": "`intra_op_num_threads=t`, `inter_op_num_threads=1`, sequential, all graph "
                   "optimizations, default spinning; `session.run(None, feed)` per call",
    "keras": "torch backend, so torch's threads; eager `layer(x, initial_state=[h0])` under `torch.no_grad()`",
}


def _fastgru_names(rows: dict) -> list[str]:
    return [n for n in rows if n.startswith("fastgru")]


def _timed(row: dict) -> bool:
    return "median_s" in row


def best_peer(case: dict, worker: dict, precision: str) -> tuple[str, float] | None:
    """Fastest peer for a fastgru engine of the given precision: (name, median seconds)."""
    info = worker["engines"]
    candidates = [(row["median_s"], name) for name, row in case["rows"].items()
                  if _timed(row) and info[name]["peer"]
                  and (precision == "int8" or info[name]["precision"] == "float32")]
    if not candidates:
        return None
    seconds, name = min(candidates)
    return name, seconds


def scale_sgemm_peaks(workers: list[dict]) -> None:
    """A t-thread sgemm peak is at least t times the 1-thread one measured in the same run.

    scipy's OpenBLAS on t threads falls short of that on this shared VM (its workers wake up late, as
    fastgru's did before pool.c moved them off the caller's CPU: 140-150 GFLOP/s on 2 threads against
    2 x 105), and a limit the engines can exceed is no limit. So where a 1-thread worker ran, a t-thread
    worker's peak is max(its own, t x the 1-thread peak), and its description says which one it is;
    the measured figure is kept as ``measured_best_gflops``. run.py applies it once, before bench.json
    is written, so the JSON, the table and the plot all use the same peak."""
    single = next((w["limits"]["sgemm"] for w in workers if w["threads"] == 1), None)
    for worker in workers:
        s = worker["limits"]["sgemm"]
        t = worker["threads"]
        if single is None or t == 1:
            continue
        s["measured_best_gflops"] = s["best_gflops"]
        scaled = t * single["best_gflops"]
        if scaled > s["best_gflops"]:
            s["best_gflops"] = scaled
            s["what"] += (f"; measured best {s['measured_best_gflops']:.1f}, below {t} x the 1-thread peak, "
                          f"so {t} x {single['best_gflops']:.1f} is used")


def roofline(case: dict, row: dict, limits: dict, precision: str = "float32") -> dict:
    """How close a timed row comes to the machine's limits (the engine's weight bytes: 4 for float32,
    1 for int8)."""
    median = row["median_s"]
    gflops = case["flops"] / median / 1e9
    read = limits["read"].get(str(case["H"]))
    whh_gbs = case["T"] * case["weight_hh_bytes"] * (0.25 if precision == "int8" else 1) / median / 1e9
    return {
        "gflops": gflops,
        "pct_sgemm": 100 * gflops / limits["sgemm"]["best_gflops"],
        "whh_gbs": whh_gbs,
        "pct_read": 100 * whh_gbs / read["limit_gbs"] if read else None,
    }


def _roof_text(case: dict, roof: dict) -> str:
    by_read = f"W_hh {roof['whh_gbs']:.3g} GB/s = {roof['pct_read']:.0f}% of read" if roof["pct_read"] else ""
    by_gemm = f"{roof['pct_sgemm']:.0f}% of sgemm peak"
    if case["B"] == 1:
        return by_read
    if case["B"] >= 16:
        return by_gemm
    return f"{by_read}; {by_gemm}"


def _busy_warning(meta: dict, workers: list[dict]) -> list[str]:
    """A loud line when other processes were running: their load lands on some samples and threads."""
    cpus = meta["machine"]["cpu"]["usable_cpus"] or 1
    # The 1-minute load includes this benchmark itself (about 1 for t=1, up to t for t threads).
    busy = [(w["threads"], max(w["loadavg_start"][0], w["loadavg_end"][0])) for w in workers
            if w.get("loadavg_start") and w.get("loadavg_end")]
    busy = [(t, load) for t, load in busy if load > t + 0.5]
    if not busy:
        return []
    text = ", ".join(f"{load:.1f} during the {t}-thread run" for t, load in busy)
    return [f"**Warning: the machine was busy (1-minute load average {text}, on {cpus} CPUs): other "
            "processes competed for the cores, so these timings (multi-threaded ones most) are unreliable.**", ""]


def markdown(meta: dict, workers: list[dict]) -> str:
    cpu = meta["machine"]["cpu"]
    lines = ["# fastgru benchmark", ""]
    if meta.get("quick"):
        lines += ["**Quick mode (smoke test): tiny shapes, few repeats; these timings mean nothing.**", ""]
    lines += [
        f"- command: `{meta['command']}` ({meta['elapsed_s']} s), {meta['date']}, git {meta['git']}",
        f"- CPU: {cpu['model']} (family {cpu.get('family', '?')} model {cpu.get('model_number', '?')}), "
        f"{cpu['usable_cpus']} usable / {cpu['logical_cpus']} logical CPUs, "
        f"flags {' '.join(cpu['flags'])}, caches " + ", ".join(f"{k} {v}" for k, v in cpu["caches"].items()),
        f"- Python {meta['machine']['python']} on {meta['machine']['platform']}",
        "- load average (1/5/15 min) per worker, start -> end: " + "; ".join(
            f"{w['threads']} thr {w['loadavg_start']} -> {w['loadavg_end']}" for w in workers),
        "- FLOPs per call = 2*T*B*3H*(I+H), I = H, one layer, float32. Median and p90 are per call, "
        "over samples interleaved round-robin with the other engines (timing.py). `max diff` is the "
        "max abs difference of the output sequence from float64 PyTorch on the same weights and input.",
        "",
        *_busy_warning(meta, workers),
        "## Engines and thread settings", "",
        "| engine | version | threads (t = the worker's thread count) |", "|---|---|---|",
    ]
    first = workers[0]
    for name, info in first["engines"].items():
        version = info["version"] if info["available"] else f"**unavailable**: {info['reason']}"
        lines.append(f"| {name} | {version} | {THREAD_SETTINGS.get(name, '')} |")
    v = first["versions"]
    lines += ["", "Also: " + ", ".join(f"{k} {v[k]}" for k in ("numpy", "scipy", "numpy_blas", "scipy_blas")
                                       if k in v)
              + ". Each thread count ran in its own process with "
              + ", ".join(f"{k}=t" for k in first["env"]) + " set before any import.", ""]

    for worker in workers:
        lines += _worker_section(worker)
    return "\n".join(lines) + "\n"


def _worker_section(worker: dict) -> list[str]:
    t = worker["threads"]
    limits = worker["limits"]
    s = limits["sgemm"]
    lines = [f"## {t} thread{'s' if t > 1 else ''}", "", "Machine limits, measured in this run (limits.py):", "",
             f"- sgemm peak **{s['best_gflops']:.1f} GFLOP/s** (median {s['median_gflops']:.1f}): {s['what']}"]
    for h, r in limits["read"].items():
        methods = ", ".join(f"{name} {m['best_gbs']:.0f}" if "best_gbs" in m else f"{name}: {m['skipped']}"
                            for name, m in r["methods"].items())
        lines.append(f"- read of a W_hh-sized buffer, H={h} ({r['bytes'] / 1e6:.2f} MB): "
                     f"**{r['limit_gbs']:.0f} GB/s** ({methods}; best sample, GB/s)")

    lines += ["", f"### Summary, {t} thread(s)", "",
              "| shape | T | B | H | fastgru engine | median | max diff | best float32 peer | its median | speedup | vs machine limit |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for case in worker["cases"]:
        names = [n for n in _fastgru_names(case["rows"])]
        if not names:
            lines.append(f"| {case['shape']} | {case['T']} | {case['B']} | {case['H']} | - | - | | | | | |")
        for name in names:
            row = case["rows"][name]
            if not _timed(row):
                lines.append(f"| {case['shape']} | {case['T']} | {case['B']} | {case['H']} | {name} | "
                             f"failed: {row.get('error', '?')} | | | | | |")
                continue
            peer = best_peer(case, worker, worker["engines"][name]["precision"])
            peer_text = ("-", "-", "-") if peer is None else (
                peer[0], format_seconds(peer[1]), f"**{peer[1] / row['median_s']:.2f}x**")
            lines.append(f"| {case['shape']} | {case['T']} | {case['B']} | {case['H']} | {name} | "
                         f"{format_seconds(row['median_s'])} | {row['max_abs_diff']:.1e} | {peer_text[0]} | {peer_text[1]} | "
                         f"{peer_text[2]} | "
                         f"{_roof_text(case, roofline(case, row, limits, worker['engines'][name]['precision']))} |")

    lines += ["", f"### All rows, {t} thread(s)", "",
              "| shape | engine | median | p90 | GFLOP/s | % sgemm peak | W_hh GB/s | max diff | samples x calls |",
              "|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for case in worker["cases"]:
        for name, row in case["rows"].items():
            if not _timed(row):
                lines.append(f"| {case['shape']} | {name} | failed: {row.get('error', '?')} | | | | | | |")
                continue
            roof = roofline(case, row, limits, worker["engines"][name]["precision"])
            lines.append(
                f"| {case['shape']} | {name} | {format_seconds(row['median_s'])} | "
                f"{format_seconds(row['p90_s'])} | {roof['gflops']:.1f} | {roof['pct_sgemm']:.0f}% | "
                f"{roof['whh_gbs']:.3g} | {row['max_abs_diff']:.1e} | {row['samples']} x {row['calls_per_sample']} |")
            notes += [f"{case['shape']} / {name}: {n}" for n in row.get("notes", [])]
    lines += ["", "W_hh GB/s = T * 3H*H*b bytes / median (b = 4 for float32 engines, 1 for int8 ones): the "
              "rate at which the recurrent weights were consumed over the whole call (input projection "
              "included, so a lower bound on the recurrent step's own rate)."]
    lines += _int8_section(worker)
    if notes:
        lines += ["", "Notes (API gaps met while building the adapters):", ""] + [f"- {n}" for n in sorted(set(notes))]
    lines.append("")
    return lines


# issue 7's targets for fastgru's int8 engines on batch-1 shapes, and DeepBench's published TitanXp figure
# for its GRU server shape (H=1024, B=1, T=1500, recurrent part).
INT8_TARGETS = {"onnxruntime": 2.0, "torch-int8": 1.3}
DEEPBENCH_TITANXP_S = 59.3e-3


def _int8_section(worker: dict) -> list[str]:
    """fastgru int8 against each int8 target peer, per batch-1 shape; and the DeepBench figure.
    Single-threaded workers only: the targets are single-threaded, and with more threads the peers'
    spinning thread pools share the process (bench/deepbench_int8.py explains)."""
    if not any(name.startswith("fastgru-int8") for case in worker["cases"] for name in case["rows"]):
        return []
    if worker["threads"] != 1:
        return ["", f"int8 at {worker['threads']} threads: every sample above follows a pause until the peers' "
                "spinning thread pools have gone quiet, so its first call wakes fastgru's sleeping workers; "
                "`python bench/deepbench_int8.py` times fastgru int8 alone, calls back to back."]
    rows = []
    for case in worker["cases"]:
        names = [n for n in case["rows"] if n.startswith("fastgru-int8") and _timed(case["rows"][n])]
        if case["B"] != 1 or not names:
            continue
        # the streaming path where there is one (it is the low-latency call), else the sequence call
        name = min(names, key=lambda n: case["rows"][n]["median_s"])
        median = case["rows"][name]["median_s"]
        cells = []
        for peer, target in INT8_TARGETS.items():
            row = case["rows"].get(peer, {})
            if _timed(row):
                ratio = row["median_s"] / median
                cells.append(f"{format_seconds(row['median_s'])}: **{ratio:.2f}x** "
                             f"({'meets' if ratio >= target else 'misses'} {target}x)")
            else:
                cells.append("-")
        rows.append(f"| {case['shape']} | {name} | {format_seconds(median)} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    lines = ["", f"### int8 targets, {worker['threads']} thread(s)", "",
             "| shape | fastgru engine | median | " + " | ".join(f"{p} (target {t}x)" for p, t in INT8_TARGETS.items())
             + " |", "|---|---|---|" + "---|" * len(INT8_TARGETS)] + rows
    cases = {c["shape"]: c for c in worker["cases"]}
    recurrent, whole = cases.get("deepbench-server-recurrent"), cases.get("deepbench-server")
    row = recurrent["rows"].get("fastgru-int8", {}) if recurrent else {}
    if _timed(row):
        lines += ["", f"DeepBench GRU server shape (H=1024, B=1, T=1500), recurrent part (a one-feature input: "
                  f"shapes.py): fastgru int8 **{format_seconds(row['median_s'])}** median, "
                  f"{format_seconds(row['min_s'])} best, against the TitanXp's "
                  f"{format_seconds(DEEPBENCH_TITANXP_S)} "
                  f"({'under' if row['median_s'] < DEEPBENCH_TITANXP_S else 'over'} it at the median)."]
        full = whole["rows"].get("fastgru-int8", {}) if whole else {}
        if _timed(full):
            lines.append(f"The input projection (I = 1024) adds {format_seconds(full['median_s'] - row['median_s'])} "
                         f"(whole call {format_seconds(full['median_s'])}).")
    return lines


def plot(meta: dict, workers: list[dict], path: Path) -> str:
    """GFLOP/s per shape per engine (top) and fastgru's speedup over the best peer (bottom)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError as exc:
        return f"no plot: {exc}"

    fig, axes = plt.subplots(2, len(workers), figsize=(7 * len(workers), 8), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]})
    for col, worker in enumerate(workers):
        cases = worker["cases"]
        labels = [c["shape"] for c in cases]
        engines = [n for n in worker["engines"] if any(_timed(c["rows"].get(n, {})) for c in cases)]
        width = 0.8 / max(1, len(engines))
        xs = np.arange(len(cases))
        ax = axes[0][col]
        palette = plt.get_cmap("tab10").colors
        color = {name: palette[i % len(palette)] for i, name in enumerate(worker["engines"])}
        for i, name in enumerate(engines):
            values = [c["flops"] / c["rows"][name]["median_s"] / 1e9 if _timed(c["rows"].get(name, {}))
                      else np.nan for c in cases]
            ax.bar(xs + (i - (len(engines) - 1) / 2) * width, values, width, label=name, color=color[name])
        peak = worker["limits"]["sgemm"]["best_gflops"]
        ax.axhline(peak, color="k", linestyle="--", linewidth=1, label=f"sgemm peak {peak:.0f}")
        ax.set_yscale("log")
        ax.set_ylim(top=peak * 8)  # room for the legend above the bars
        ax.set_ylabel("GFLOP/s (median)")
        ax.set_title(f"{worker['threads']} thread(s)")
        ax.set_xticks(xs, labels, rotation=30, ha="right", fontsize=8)
        ax.legend(fontsize=7, ncol=3, loc="upper left")

        ax = axes[1][col]
        fastgru_names = [n for n in worker["engines"] if any(n in c["rows"] for c in cases)
                         and not worker["engines"][n]["peer"]]
        width = 0.8 / max(1, len(fastgru_names))
        for i, name in enumerate(fastgru_names):
            values = []
            for c in cases:
                row = c["rows"].get(name, {})
                peer = best_peer(c, worker, worker["engines"][name]["precision"]) if _timed(row) else None
                values.append(peer[1] / row["median_s"] if peer else np.nan)
            ax.bar(xs + (i - (len(fastgru_names) - 1) / 2) * width, values, width, label=name,
                   color=color[name])
        ax.axhline(1.0, color="k", linewidth=1)
        ax.set_ylabel("speedup over best peer")
        ax.set_xticks(xs, labels, rotation=30, ha="right", fontsize=8)
        if fastgru_names:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no fastgru engine ran", ha="center", transform=ax.transAxes)
    cpu = meta["machine"]["cpu"]["model"]
    flags = (" (QUICK: meaningless)" if meta["quick"] else "") + (
        " (machine busy: timings unreliable)" if _busy_warning(meta, workers) else "")
    fig.suptitle(f"fastgru vs peers, {cpu}, {meta['date'][:10]}{flags}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    size_kb = Path(path).stat().st_size / 1024
    return f"plot: {path} ({size_kb:.0f} KB)"
