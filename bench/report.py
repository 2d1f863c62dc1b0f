"""Turns the workers' results into a markdown report and a PNG plot.

"speedup" is (best peer's median time) / (fastgru engine's median time): above 1 fastgru is faster.
The best peer of a float32 fastgru engine is the fastest float32 peer; an int8 fastgru engine is
compared with every peer (int8 ones included). Medians are per call. "round by round" is the same
comparison as the median over the rounds of the interleaved timing of the peer's sample / fastgru's
sample in that round (fastgru.benchmark.timing.paired_ratio): a slow spell of the machine slows both
samples of a round, so it cancels out of this figure, while it can move the ratio of two medians
when it falls on one engine's samples more than the other's (a long row has few samples). Where the
two figures disagree, the machine drifted during the case.

Every row is also put against the machine's limits measured in the same worker (limits.py,
roofline.py): "% FMA peak" is GFLOP/s over the register-only FMA loop of the widest vector unit at
the worker's thread count; "% read" is the weight bytes a call reads over the read bandwidth of
the cache level those weights live in; "% roof" is the roofline time (each of the two products at
the FMA peak or at that read bandwidth, whichever binds) over the measured time. The sgemm column
is OpenBLAS's GEMM rate, a reference, not a limit.
"""

from __future__ import annotations

from pathlib import Path

import roofline as roofline_model
from common import blas_warning, format_seconds, paired_ratio

THREAD_SETTINGS = {
    "fastgru": "`num_threads=t` (model attribute and per call); scipy OpenBLAS via OPENBLAS_NUM_THREADS=t",
    "fastgru-stream": "`gru.stream(batch_size=B, h0=h0, num_threads=t)`, then `step(x_t)` per call",
    "fastgru-avx2": "as fastgru, with fastgru's AVX2 kernel table forced around its build and calls",
    "fastgru-avx2-stream": "as fastgru-stream, with the AVX2 kernel table forced",
    "fastgru-int8": "as fastgru; `gru.quantize(\"int8\")`",
    "fastgru-int8-stream": "as fastgru-stream, on `gru.quantize(\"int8\")`",
    "fastgru-int8-avx2": "as fastgru-int8, with the AVX2 kernel table forced",
    "fastgru-int8-w7": "as fastgru-int8, 7-bit weight codes: `gru.quantize(\"int8\", weight_bits=7)`",
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


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _paired_text(peer_row: dict, row: dict) -> str:
    """The round-by-round ratio of a peer's row to a fastgru row (timing.paired_ratio), "-" without one."""
    ratio = paired_ratio(peer_row, row)
    return "-" if ratio is None else f"{ratio:.2f}x"


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


def scale_sgemm_reference(workers: list[dict]) -> None:
    """A t-thread sgemm figure is at least t times the 1-thread one measured in the same run.

    scipy's OpenBLAS on t threads falls short of that on this shared VM (its workers wake up late), so
    where a 1-thread worker ran, a t-thread worker's sgemm figure is max(its own, t x the 1-thread
    one), and its description says which one it is; the measured figure is kept as
    ``measured_best_gflops``. run.py applies it once, before bench.json is written, so the JSON, the
    table and the plot all use the same figure. (The FMA and read limits need no such step: each
    worker measures them at 1 and t threads itself, limits.py.)"""
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
            s["what"] += (f"; measured best {s['measured_best_gflops']:.1f}, below {t} x the 1-thread figure, "
                          f"so {t} x {single['best_gflops']:.1f} is used")


def fma_peak(worker: dict) -> float | None:
    """The FMA peak a worker's shares are against: the widest loop's best sample before the cases, or
    after them where the machine measured faster then (limits.fma_after): a shared guest's speed moves
    during a run, and the faster figure is the nearer to what the core can do."""
    before = worker["limits"]["fma"].get("peak_gflops")
    after = worker.get("fma_after") or {}
    if before and after.get("gflops") and after.get("width") == worker["limits"]["fma"].get("widest"):
        return max(before, after["gflops"])
    return before


def roofline(case: dict, row: dict, worker: dict, precision: str = "float32") -> dict:
    """Every ratio of a timed row against the limits of its worker (roofline.roof)."""
    limits = worker["limits"]
    read = limits.get("read", {}).get(str(case["H"]), {})
    return roofline_model.roof(
        case, row["median_s"], precision, threads=limits["threads"], caches=limits["caches"],
        fma_gflops=fma_peak(worker), int8_gops=limits.get("int8", {}).get("peak_gflops"),
        level_gbs=roofline_model.level_limits(limits),
        sgemm_gflops=limits["sgemm"]["best_gflops"], fallback_gbs=read.get("best_gbs"))


def annotate_shares(workers: list[dict]) -> None:
    """Writes each timed row's ratios to the limits (``roofline``'s dict: % FMA peak, % read of its
    level, % roof, % sgemm, ...) into the row as ``"vs_limits"``, so bench.json carries the same
    figures as the tables. run.py calls it once, after ``scale_sgemm_reference``."""
    for worker in workers:
        for case in worker["cases"]:
            for name, row in case["rows"].items():
                if _timed(row):
                    row["vs_limits"] = roofline(case, row, worker, worker["engines"][name]["precision"])


def _limit_text(case: dict, roof: dict, precision: str) -> str:
    """The summary's "vs machine limit" cell: the share of the roof, then the figure of the limit
    that matters most for the row (read bandwidth at B = 1, FMA peak for batches)."""
    read = (f"weights {roof['weights_gbs']:.3g} GB/s = {_pct(roof['pct_read'])} of {roof['level_what']}"
            if roof["pct_read"] is not None else f"{roof['level']} read not measured")
    if roof["pct_roof"] is None:
        return f"{read} ({roof['roof_text']})"
    peak = "int8 peak" if precision == "int8" else "FMA peak"
    second = read if case["B"] == 1 else f"{_pct(roof['pct_fma'])} of {peak}"
    return f"**{roof['pct_roof']:.0f}% of roof** ({roof['roof_text']}); {second}"


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


# ---------------------------------------------------------------------------------------- configuration


def _scalar_text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_scalar_text(v) for v in value) if value else "(none)"
    return "-" if value is None else str(value)


def _is_flat(value) -> bool:
    return not isinstance(value, dict) and not (
        isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value))


def _nested(value, depth: int) -> list[str]:
    """A dict (of dicts, lists, scalars) as a nested markdown list."""
    pad = "  " * depth
    lines = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if _is_flat(item):
            lines.append(f"{pad}- {key}: {_scalar_text(item)}")
        elif isinstance(item, dict) and all(_is_flat(v) for v in item.values()) and len(item) <= 8 \
                and not isinstance(value, dict):
            lines.append(f"{pad}- " + "; ".join(f"{k}: {_scalar_text(v)}" for k, v in item.items()))
        else:
            lines.append(f"{pad}- {key}:")
            lines += _nested(item, depth + 1)
    return lines


def config_section(workers: list[dict]) -> list[str]:
    """The report's first section: fastgru's configuration as the first worker saw it
    (fastgru.show_config's dict, or the fallback of common.fastgru_config)."""
    entry = workers[0].get("config") if workers else None
    lines = ["## Configuration", ""]
    if not entry:
        return lines + ["Not recorded by the workers of this run.", ""]
    lines += [f"From {entry['source']}, in the {workers[0]['threads']}-thread worker "
              "(each worker's own is in bench.json):", ""]
    lines += _nested(entry["config"], 0) if isinstance(entry["config"], dict) else [f"- {entry['config']}"]
    return lines + [""]


# ---------------------------------------------------------------------------------------- report


def markdown(meta: dict, workers: list[dict]) -> str:
    cpu = meta["machine"]["cpu"]
    lines = ["# fastgru benchmark", ""]
    if meta.get("quick"):
        lines += ["**Quick mode (smoke test): tiny shapes, few repeats; these timings mean nothing.**", ""]
    lines += config_section(workers)
    pins = meta.get("blas_pins", {})
    parent = ", ".join(f"{k}={v}" for k, v in pins.get("parent", {}).items() if v is not None) or "none set"
    pins_text = (f"unset in every worker (this run's own environment: {parent})" if pins.get("unset_in_workers")
                 else f"kept in the workers ({pins.get('why_kept') or 'not recorded'}; {parent}): BLAS figures "
                      "use the pinned kernels, not the machine's")
    lines += [
        "## Run", "",
        f"- command: `{meta['command']}` ({meta['elapsed_s']} s), {meta['date']}, git {meta['git']}",
        f"- CPU: {cpu['model']} (family {cpu.get('family', '?')} model {cpu.get('model_number', '?')}), "
        f"{cpu['usable_cpus']} usable / {cpu['logical_cpus']} logical CPUs, "
        f"flags {' '.join(cpu['flags'])}, caches " + ", ".join(f"{k} {v}" for k, v in cpu["caches"].items()),
        f"- Python {meta['machine']['python']} on {meta['machine']['platform']}",
        f"- OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: {pins_text}",
        "- load average (1/5/15 min) per worker, start -> end: " + "; ".join(
            f"{w['threads']} thr {w['loadavg_start']} -> {w['loadavg_end']}" for w in workers),
        "- FLOPs per call = 2*T*B*3H*(I+H), I = H, one layer, float32. Median and p90 are per call, "
        "over samples interleaved round-robin with the other engines (fastgru/benchmark/timing.py). `max diff` is the "
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
              + ", ".join(f"{k}=t" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"))
              + " set before any import."]
    for name, reason in first.get("not_applicable", {}).items():
        lines.append(f"Not run on this CPU: {name} ({reason}).")
    lines.append("")

    for worker in workers:
        lines += _worker_section(worker, cpu["flags"])
    return "\n".join(lines) + "\n"


def _blas_lines(worker: dict, cpu_flags: list[str]) -> list[str]:
    blas = worker.get("blas")
    if not blas:
        return ["- BLAS: not recorded by this worker"]
    pins = ", ".join(f"{k}={v}" for k, v in blas.get("pin_vars", {}).items() if v is not None)
    lines = [f"- BLAS pin variables in this worker: {pins or 'none (OpenBLAS picks its kernels for this CPU)'}"]
    if blas.get("libraries") is None:
        lines.append(f"- BLAS libraries: not known: {blas.get('missing', 'threadpoolctl unavailable')}")
    else:
        for lib in blas["libraries"]:
            if lib.get("user_api") != "blas":
                continue
            lines.append(f"- BLAS (threadpoolctl): {lib['file']}: {lib.get('internal_api')} {lib.get('version')}, "
                         f"kernel **{lib.get('architecture') or '?'}**, {lib.get('num_threads')} thread(s)")
    warning = blas_warning(blas, cpu_flags)
    if warning:
        lines.append(f"- **Warning: {warning}**")
    return lines


def _peak_rows(name: str, unit: str, used_as: str, digits: str, peaks: dict, counts: list[int],
               missing: str = "") -> list[str]:
    """The limits table's rows of one register-only loop (limits._loop_peaks' dict): a row per width,
    its best figure per thread count, and "used as" on the widest; or one "not measured" row."""
    if peaks.get("widest") is None:
        why = peaks.get("not_measured", "-") + (f" ({missing})" if missing else "")
        return [f"| {name} peak | " + " | ".join("-" for _ in counts) + f" | not measured: {why} |"]
    rows = []
    for width, entry in peaks["widths"].items():
        if "by_threads" not in entry:
            rows.append(f"| {name} {width}-bit | " + " | ".join("-" for _ in counts)
                        + f" | not measured: {entry['not_measured']} |")
            continue
        used = (f"**{used_as} {peaks['peak_gflops']:{digits}} {unit}** ({peaks['peak_what']})"
                if int(width) == peaks["widest"] else "")
        rows.append(f"| {name} {width}-bit, {unit} | " + " | ".join(
            f"{entry['by_threads'][str(c)]['best_gflops']:{digits}}" for c in counts) + f" | {used} |")
    return rows


def _fma_after_lines(worker: dict) -> list[str]:
    """The FMA loop measured again after the cases (limits.fma_after), against the figure before them."""
    after = worker.get("fma_after")
    if after is None:  # a run from before the re-measurement existed
        return []
    if "gflops" not in after:
        return [f"- FMA loop after the cases: not measured: {after['not_measured']}", ""]
    slowest = min(after["of_before"], after.get("median_of_before", after["of_before"]))
    drift = ("the machine kept its speed" if slowest >= 0.95 else
             "the machine ran slower by the end of the run, so the shares of the peak understate the engines' "
             "(every engine alike: the samples are interleaved)")
    median = (f" (median {after['median_gflops']:.1f}, {100 * after['median_of_before']:.0f}% of the median "
              "before)" if "median_gflops" in after else "")
    return [f"- FMA loop ({after['width']}-bit, {worker['threads']} thread(s)) measured again after the cases: "
            f"{after['gflops']:.1f} GFLOP/s best, {100 * after['of_before']:.0f}% of the figure before them{median}; "
            f"{drift}. The shares of the FMA peak are against the higher of the two best samples "
            f"({fma_peak(worker):.1f} GFLOP/s).", ""]


def limits_section(worker: dict, cpu_flags: list[str]) -> list[str]:
    """The worker's measured limits: FMA peak per width, read bandwidth per level, W_hh-sized reads,
    sgemm (reference) and which BLAS ran."""
    t = worker["threads"]
    limits = worker["limits"]
    counts = sorted({1, t})
    head = " | ".join(f"{c} thread{'s' if c > 1 else ''}" for c in counts)
    lines = [f"Machine limits, measured in this worker before the cases (limits.py); {limits.get('pinning', '')}:", "",
             f"| limit | {head} | used as |", "|---|" + "---|" * len(counts) + "---|"]
    fma = limits["fma"]
    lines += _peak_rows("FMA", "GFLOP/s", "compute limit", ".1f", fma, counts)
    if "widths" in fma:
        ratio = fma.get("ratio_512_256")
        if ratio:
            lines.append("| FMA 512-bit / 256-bit | " + " | ".join(f"{ratio[str(c)]:.2f}" for c in counts)
                         + " | about 2: 512-bit FMAs at full width; about 1: split into two 256-bit halves |")
        else:
            lines.append("| FMA 512-bit / 256-bit | " + " | ".join("-" for _ in counts)
                         + " | not measured: no 512-bit FMA on this CPU |")
    int8 = limits.get("int8", {"not_measured": "not measured by this version of limits.py"})
    lines += _peak_rows(f"int8 {int8.get('loop', 'vpdpbusd')}", "GOP/s", "int8 compute limit", ".0f", int8, counts,
                        missing="int8 rows get no compute roof")
    for level, entry in limits["levels"].items():
        if "widths" not in entry:
            lines.append(f"| read {level} | " + " | ".join("-" for _ in counts) + f" | not measured: {entry['not_measured']} |")
            continue
        for width, value in entry["widths"].items():
            if "by_threads" not in value:
                lines.append(f"| read {level}, {width}-bit | " + " | ".join("-" for _ in counts)
                             + f" | not measured: {value['not_measured']} |")
                continue
            lines.append(f"| read {level} ({entry['bytes_per_thread'] / 2**20:.2f} MiB per thread), {width}-bit, GB/s | "
                         + " | ".join(f"{value['by_threads'][str(c)]['best_gbs']:.0f}" for c in counts) + " | |")
        lines.append(f"| | " + " | ".join("" for _ in counts)
                     + f" | **{level} limit {entry['limit_gbs']:.0f} GB/s** ({entry['limit_what']}) |")
    s = limits["sgemm"]
    lines.append(f"| sgemm {s['size']}^3, GFLOP/s (reference) | " + " | ".join(
        f"{s['best_gflops']:.1f}" if c == t else "" for c in counts) + f" | reference, not a limit: {s['what']} |")
    lines += ["", "Figures are best samples (load from other processes only lowers a rate). Per-core limits "
              "(FMA, L1, L2) at t threads are at least min(t, cores) x the 1-thread figure.", ""]
    lines += _fma_after_lines(worker)
    caches = limits.get("caches", {})
    l2 = caches.get("L2")
    for precision, h, r in roofline_model.whh_reads(limits):
        levels = ", ".join(f"{lvl} at {n} thread{'s' if int(n) > 1 else ''}" for n, lvl in r["levels"].items())
        fits = (f"{'fits' if r['fits_l2'][str(t)] else 'does not fit'} one core's L2 ({l2 / 2**20:.2f} MiB) "
                f"at {t} thread(s)" if l2 else "L2 size unknown")
        lines.append(f"- W_hh H={h} ({r['bytes'] / 2**20:.2f} MiB {precision}): {fits}; lives in {levels}. "
                     f"Read of a buffer its size, GB/s: {roofline_model.read_methods_text(r)}")
    lines += _blas_lines(worker, cpu_flags)
    return lines + [""]


def _worker_section(worker: dict, cpu_flags: list[str] | None = None) -> list[str]:
    t = worker["threads"]
    limits = worker["limits"]
    if cpu_flags is None:
        cpu_flags = (worker.get("config") or {}).get("config", {}).get("cpu", {}).get("flags") or []
    lines = [f"## {t} thread{'s' if t > 1 else ''}", ""] + limits_section(worker, cpu_flags)

    lines += [f"### Summary, {t} thread(s)", "",
              "| shape | T | B | H | fastgru engine | median | max diff | best float32 peer | its median | speedup | "
              "round by round | vs machine limit |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for case in worker["cases"]:
        names = [n for n in _fastgru_names(case["rows"])]
        if not names:
            lines.append(f"| {case['shape']} | {case['T']} | {case['B']} | {case['H']} | - | - | | | | | | |")
        for name in names:
            row = case["rows"][name]
            if not _timed(row):
                lines.append(f"| {case['shape']} | {case['T']} | {case['B']} | {case['H']} | {name} | "
                             f"failed: {row.get('error', '?')} | | | | | | |")
                continue
            precision = worker["engines"][name]["precision"]
            peer = best_peer(case, worker, precision)
            peer_text = ("-", "-", "-", "-") if peer is None else (
                peer[0], format_seconds(peer[1]), f"**{peer[1] / row['median_s']:.2f}x**",
                _paired_text(case["rows"][peer[0]], row))
            lines.append(f"| {case['shape']} | {case['T']} | {case['B']} | {case['H']} | {name} | "
                         f"{format_seconds(row['median_s'])} | {row['max_abs_diff']:.1e} | {peer_text[0]} | {peer_text[1]} | "
                         f"{peer_text[2]} | {peer_text[3]} | {_limit_text(case, roofline(case, row, worker, precision), precision)} |")

    lines += ["", f"### All rows, {t} thread(s)", "",
              "| shape | engine | median | p90 | GFLOP/s | % FMA peak | % sgemm (ref) | weights GB/s | level | % read | % roof | max diff | samples x calls |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for case in worker["cases"]:
        for name, row in case["rows"].items():
            if not _timed(row):
                lines.append(f"| {case['shape']} | {name} | failed: {row.get('error', '?')} |" + " |" * 10)
                continue
            roof = roofline(case, row, worker, worker["engines"][name]["precision"])
            lines.append(
                f"| {case['shape']} | {name} | {format_seconds(row['median_s'])} | "
                f"{format_seconds(row['p90_s'])} | {roof['gflops']:.1f} | {_pct(roof['pct_fma'])} | "
                f"{_pct(roof['pct_sgemm'])} | {roof['weights_gbs']:.3g} | {roof['level']} | {_pct(roof['pct_read'])} | "
                f"{_pct(roof['pct_roof'])} | {row['max_abs_diff']:.1e} | {row['samples']} x {row['calls_per_sample']} |")
            notes += [f"{case['shape']} / {name}: {n}" for n in row.get("notes", [])]
    lines += ["", "% FMA peak = GFLOP/s / the widest FMA loop's GFLOP/s at this thread count for float32 engines, "
              "GOP/s / the widest int8 loop's (vpdpbusd with AVX-512 VNNI, else vpmaddubsw + vpmaddwd) for int8 ones (the compute limit of batched rows and of a "
              "sequence's input projection). "
              "weights GB/s = (T * W_hh + W_ih) bytes / median, b = 4 bytes per weight for float32 engines and 1 for "
              "int8 ones; `level` = where the weights a step reads live at this thread count (W_hh, plus W_ih "
              "when T = 1), % read = weights GB/s / that level's read limit (the limit of batch-1 rows; for a "
              "sequence it includes the input projection, so it is a lower bound on the recurrence's own rate). "
              "% roof = roofline time / median (roofline.py: each product at the FMA peak or that read "
              "bandwidth, whichever binds; gate math not counted; int8 rows against the int8 peak). % sgemm = GFLOP/s / "
              "OpenBLAS sgemm's rate, for reference."]
    lines += _int8_section(worker)
    if notes:
        lines += ["", "Notes (API gaps met while building the adapters):", ""] + [f"- {n}" for n in sorted(set(notes))]
    lines.append("")
    return lines


INT8_TARGETS = {"onnxruntime": 2.0, "torch-int8": 1.3}
DEEPBENCH_TITANXP_S = 59.3e-3
DEEPBENCH_2816_TITANXP_S = 350.6e-3  # DeepBench's published TitanXp figure for H=2816, B=1, T=1500


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
                             f"({'meets' if ratio >= target else 'misses'} {target}x; round by round "
                             f"{_paired_text(row, case['rows'][name])})")
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
    large = cases.get("deepbench-server-2816-recurrent")
    row = large["rows"].get("fastgru-int8", {}) if large else {}
    if _timed(row):
        lines += ["", f"DeepBench's largest GRU server shape (H=2816, B=1, T=1500, 23.8 MB of int8 W_hh), recurrent "
                  f"part: fastgru int8 **{format_seconds(row['median_s'])}** median, {format_seconds(row['min_s'])} "
                  f"best, against the TitanXp's {format_seconds(DEEPBENCH_2816_TITANXP_S)} "
                  f"({'under' if row['median_s'] < DEEPBENCH_2816_TITANXP_S else 'over'} it at the median)."
                  + _int8_stream_text(large, row, worker)]
    return lines


def _int8_stream_text(case: dict, row: dict, worker: dict) -> str:
    """How fast a batch-1 int8 row streamed its W_hh against the read loop over a buffer of that size
    (limits' read_int8, whose best method at the worker's thread count whh_read picked; "" where no
    compiled read loop was measured)."""
    read = worker["limits"].get("read_int8", {}).get(str(case["H"]), {})
    if not read.get("best_method", "").startswith("c-read"):
        return ""
    weights_gbs = roofline(case, row, worker, "int8")["weights_gbs"]
    return (f" Its W_hh streams at {weights_gbs:.3g} GB/s, {100 * weights_gbs / read['best_gbs']:.0f}% of "
            f"the read loop over a buffer its size ({read['best_gbs']:.3g} GB/s, {read['best_method']}, best sample).")


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
        palette = plt.get_cmap("tab10" if len(worker["engines"]) <= 10 else "tab20").colors
        color = {name: palette[i % len(palette)] for i, name in enumerate(worker["engines"])}
        for i, name in enumerate(engines):
            values = [c["flops"] / c["rows"][name]["median_s"] / 1e9 if _timed(c["rows"].get(name, {}))
                      else np.nan for c in cases]
            ax.bar(xs + (i - (len(engines) - 1) / 2) * width, values, width, label=name, color=color[name])
        fma, peak = worker["limits"]["fma"], fma_peak(worker)
        sgemm = worker["limits"]["sgemm"]["best_gflops"]
        if peak:
            ax.axhline(peak, color="k", linestyle="--", linewidth=1, label=f"FMA peak {fma['widest']}-bit {peak:.0f}")
        ax.axhline(sgemm, color="0.5", linestyle=":", linewidth=1, label=f"sgemm (reference) {sgemm:.0f}")
        ax.set_yscale("log")
        ax.set_ylim(top=max(sgemm, peak or 0) * 8)  # room for the legend above the bars
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
