"""How close a timed call comes to the machine's limits: pure arithmetic on a case and the limits
measured in the same worker (limits.py), no timing.

A GRU call of T steps, batch B, hidden H, input I does two products per step:

- the input projection, 2*T*B*3H*I FLOPs over W_ih (3H x I): one GEMM over all T*B rows when T > 1
  (compute-bound), a matrix-vector product per step when T = 1 and B = 1 (bandwidth-bound);
- the recurrence, 2*T*B*3H*H FLOPs, reading all of W_hh (3H x H) once per step: at B = 1 one FMA
  per weight read, so bound by how fast the cache level holding W_hh delivers it. Where W_hh is
  larger than the L2s, up to an L2 per thread of it can still be there at the next step (fastgru
  alternates its block order for that): after the first step the roof reads that much at the L2's
  bandwidth and the rest from the level (``recurrence`` "at L2 + L3 read"). At T = 1 the same holds
  from one call to the next for W_ih and W_hh together (fastgru alternates the block order of
  consecutive one-step calls), and the benchmark times calls back to back: every call reads up to an
  L2 per thread of them at the L2's bandwidth (both parts "at L2 + L3 read"). "% read" stays the
  weights' GB/s over the level's read limit, so it can pass 100% there.

Each part's least possible time is max(FLOPs / FMA peak, weight bytes / read bandwidth of the level
its weights live in) (a roofline; activations and gate math are not counted, so the roof is a
lower bound on the time and a share of it is generous to the engine). The roof of the call is the
sum of its two parts; ``pct_roof`` = roof time / measured time.

The FMA peak is the widest vector unit's, at the worker's thread count; the level's bandwidth is the
read loop's at that thread count on a buffer resident in that level. The sgemm figure (OpenBLAS)
is reported beside them for reference only: it is one library's GEMM, not a limit of the machine.
int8 engines read 1-byte weights, and their compute limit is the int8 dot-product peak (fma_peak.c's
vpdpbusd loop where the CPU has AVX-512 VNNI, else its vpmaddubsw + vpmaddwd loop, the AVX2 table's
instructions; GOP/s counting a multiply and an add per byte product); where neither was measured they
get no compute roof.
"""

from __future__ import annotations

CACHE_LEVELS = ("L1", "L2", "L3")


def weight_bytes(precision: str) -> int:
    """Bytes per stored weight: 1 for int8 engines, 4 for float32 ones."""
    return 1 if precision == "int8" else 4


def working_set_bytes(seq_len: int, hidden: int, input_size: int, bytes_per_weight: int) -> int:
    """The weight bytes every step reads again: W_hh; at T = 1 the input projection is part of the
    step (there is no sequence to batch it over), so W_ih as well."""
    whh = 3 * hidden * hidden * bytes_per_weight
    return whh + (3 * hidden * input_size * bytes_per_weight if seq_len == 1 else 0)


def cache_level(nbytes: int, threads: int, caches: dict) -> str:
    """The level a buffer of ``nbytes`` read by ``threads`` threads (each its own slice, as fastgru
    splits W_hh's rows) lives in: L1 or L2 if each thread's slice fits one core's, L3 if the whole
    buffer fits the L3, else DRAM; "unknown" if the cache sizes are not known. Capacity only: a
    buffer that just fits still loses some lines to the rest of the working set."""
    if not caches.get("L2") and not caches.get("L3"):
        return "unknown"
    per_thread = nbytes / max(1, threads)
    if caches.get("L1d") and per_thread <= caches["L1d"]:
        return "L1"
    if caches.get("L2") and per_thread <= caches["L2"]:
        return "L2"
    if caches.get("L3") and nbytes <= caches["L3"]:
        return "L3"
    return "DRAM"


def level_probe_bytes(caches: dict, threads: int) -> dict[str, int | str]:
    """Total buffer bytes for measuring each level's read bandwidth with ``threads`` threads, or why
    a level is not measured. L1 and L2 (per core): each thread's slice is half of L1d / 0.6 of L2,
    resident with room to spare. L3 (shared): 4 x (threads x L2) so the buffer is well outside
    the L2s, capped at half the L3 so it stays resident; on this kind of Zen 5 (1 MB L2, 32 MB L3)
    4 MB for one thread and 8 MB for two. DRAM: 4 x L3, at least 64 MB."""
    out: dict[str, int | str] = {}
    l1, l2, l3 = caches.get("L1d"), caches.get("L2"), caches.get("L3")
    out["L1"] = int(0.5 * l1) * threads if l1 else "L1d size unknown"
    if not l2:
        out["L2"] = "L2 size unknown"
    elif l1 and 0.6 * l2 <= l1:
        out["L2"] = f"L2 ({l2} B) is not larger than L1d ({l1} B)"
    else:
        out["L2"] = int(0.6 * l2) * threads
    if not l3:
        out["L3"] = "L3 size unknown (or none)"
    else:
        total = min(l3 // 2, 4 * threads * (l2 or 0)) if l2 else l3 // 2
        if l2 and total < 1.5 * threads * l2:
            out["L3"] = (f"L3 ({l3 / 2**20:.0f} MB) too small for a buffer well outside {threads} thread(s)' "
                         f"L2 ({l2 / 2**20:.2f} MB each) and inside half the L3")
        else:
            out["L3"] = int(total)
    out["DRAM"] = max(4 * (l3 or l2 or 0), 64 << 20)
    return out


def level_limits(limits: dict) -> dict[str, float]:
    """{level: read GB/s at the worker's thread count} for the levels limits.measure measured."""
    return {level: entry["limit_gbs"] for level, entry in limits.get("levels", {}).items() if "limit_gbs" in entry}


def whh_reads(limits: dict) -> list[tuple[str, str, dict]]:
    """(precision, hidden, entry) of every W_hh-sized read limits.measure took: the float32 ones, then
    the int8-only shapes' (``read_int8``)."""
    return [(precision, hidden, entry)
            for precision, reads in (("float32", limits.get("read", {})), ("int8", limits.get("read_int8", {})))
            for hidden, entry in reads.items()]


def read_methods_text(entry: dict) -> str:
    """A W_hh-sized read's methods and their best GB/s (or why one was not measured), for one line."""
    return ", ".join(f"{name} {m['best_gbs']:.0f}" if "best_gbs" in m else f"{name}: {m['not_measured']}"
                     for name, m in entry["methods"].items())


def share(value: float | None, limit: float | None) -> float | None:
    """value as a percentage of limit; None where either is unknown."""
    if value is None or not limit:
        return None
    return 100.0 * value / limit


def roof(case: dict, median_s: float, precision: str, *, threads: int, caches: dict,
         fma_gflops: float | None, level_gbs: dict[str, float], sgemm_gflops: float | None = None,
         fallback_gbs: float | None = None, int8_gops: float | None = None) -> dict:
    """Every ratio of one timed row. ``case`` has T, B, H, I and flops; ``level_gbs`` maps a level
    (L1, L2, L3, DRAM) to its read bandwidth at ``threads`` threads; ``fallback_gbs`` (the best read
    of a W_hh-sized buffer by any method) stands in where the level's own figure is missing. An int8
    row's compute limit is ``int8_gops`` (the int8 loop's GOP/s), a float32 row's ``fma_gflops``;
    ``pct_fma`` is the share of whichever applies."""
    t, b, h, i = case["T"], case["B"], case["H"], case["I"]
    per_weight = weight_bytes(precision)
    parts = {"input projection": (2.0 * t * b * 3 * h * i, 3.0 * h * i * per_weight),
             "recurrence": (2.0 * t * b * 3 * h * h, 3.0 * t * h * h * per_weight)}
    working_set = working_set_bytes(t, h, i, per_weight)
    level = cache_level(working_set, threads, caches)
    bandwidth = level_gbs.get(level)
    bandwidth_what = f"{level} read"
    if not bandwidth and fallback_gbs:
        bandwidth, bandwidth_what = fallback_gbs, f"read of a W_hh-sized buffer ({level} not measured)"
    gflops = case["flops"] / median_s / 1e9
    weights_gbs = sum(nbytes for _, nbytes in parts.values()) / median_s / 1e9
    out = {
        "gflops": gflops,
        "pct_fma": share(gflops, int8_gops if precision == "int8" else fma_gflops),
        "pct_sgemm": share(gflops, sgemm_gflops),
        "working_set_bytes": working_set,
        "level": level,
        "level_gbs": bandwidth,
        "level_what": bandwidth_what,
        "weights_gbs": weights_gbs,
        "pct_read": share(weights_gbs, bandwidth),
        "roof_s": None, "pct_roof": None, "bounds": None, "roof_text": None,
    }
    compute, compute_what = (int8_gops, "int8 peak") if precision == "int8" else (fma_gflops, "FMA peak")
    if not compute or not bandwidth:
        missing = [what for what, value in ((compute_what, compute), (bandwidth_what, bandwidth)) if not value]
        out["roof_text"] = f"no roof: {' and '.join(missing)} not measured"
        return out
    roof_s, bounds = 0.0, {}
    for name, (flops, nbytes) in parts.items():
        compute_s, memory_s = flops / (compute * 1e9), nbytes / (bandwidth * 1e9)
        what = bandwidth_what
        if t == 1:
            memory_s, what = _resident_read_s(nbytes, working_set, level, bandwidth, bandwidth_what, threads,
                                              caches, level_gbs)
        elif name == "recurrence":
            memory_s, what = _recurrence_read_s(t, 3.0 * h * h * per_weight, level, bandwidth, bandwidth_what,
                                                threads, caches, level_gbs)
        roof_s += max(compute_s, memory_s)
        bounds[name] = compute_what if compute_s >= memory_s else what
    out.update(roof_s=roof_s, pct_roof=100.0 * roof_s / median_s, bounds=bounds,
               roof_text=describe_bounds(bounds))
    return out


def _resident_read_s(nbytes: float, working_set: float, level: str, bandwidth: float, bandwidth_what: str,
                     threads: int, caches: dict, level_gbs: dict[str, float]) -> tuple[float, str]:
    """The least time to read ``nbytes`` of a ``working_set`` (the weights one step or one call reads)
    that lives beyond the L2s, when up to one L2 per thread of that working set is still in the L2s
    from the step (or call) before, and what bounds it; where the working set lives in an L2 or L1
    anyway, or the L2 is not measured, all of it at ``bandwidth``."""
    l2, l2_gbs = caches.get("L2"), level_gbs.get("L2")
    if level not in ("L3", "DRAM") or not l2 or not l2_gbs or not working_set:
        return nbytes / (bandwidth * 1e9), bandwidth_what
    resident = min(1.0, threads * l2 / working_set) * nbytes
    return resident / (l2_gbs * 1e9) + (nbytes - resident) / (bandwidth * 1e9), f"L2 + {bandwidth_what}"


def _recurrence_read_s(steps: int, step_bytes: float, level: str, bandwidth: float, bandwidth_what: str,
                       threads: int, caches: dict, level_gbs: dict[str, float]) -> tuple[float, str]:
    """The least time ``steps`` steps can take to read a W_hh of ``step_bytes`` that lives beyond the
    L2s, and what bounds it: after the first step, up to one L2 per thread of it can still be in the
    L2s when the next step starts (fastgru alternates the order of its blocks from step to step for
    that), and only the rest has to come from ``level`` (_resident_read_s)."""
    if steps < 2:
        return steps * step_bytes / (bandwidth * 1e9), bandwidth_what
    later, what = _resident_read_s(step_bytes, step_bytes, level, bandwidth, bandwidth_what, threads, caches,
                                   level_gbs)
    return step_bytes / (bandwidth * 1e9) + (steps - 1) * later, what


def describe_bounds(bounds: dict[str, str]) -> str:
    """One phrase for which limit bounds each part: "all at FMA peak", "all at L2 read",
    "input projection at FMA peak + recurrence at L3 read"."""
    limits = set(bounds.values())
    if len(limits) == 1:
        return f"all at {limits.pop()}"
    return " + ".join(f"{part} at {limit}" for part, limit in bounds.items())
