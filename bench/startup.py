"""Cold start: `import X`, then load a saved GRU and run it once, in a fresh process per engine.

    python bench/startup.py [--quick] [--repeat 3] [--hidden 512] [--seq-len 100]

For each engine a new interpreter runs: ``import X`` (timed), then load the model the way a user
of X ships it and run one inference on B=1, T=100, H=I=512 (timed), then reports its peak resident
memory (VmHWM, see EPILOGUE; it includes the interpreter). The
baseline rows are a bare interpreter and ``import numpy``. Files come from one torch.nn.GRU:
torch loads a ``state_dict`` (.pt) into ``nn.GRU``, ONNX Runtime a one-node .onnx file, fastgru
its own file (``GRU.save`` / ``fastgru.load``), or the .npz of the state dict if it has none.
Medians over --repeat runs, after one uncounted warm-up run per engine that fills the OS file cache
and the bytecode cache. Thread variables are left as the user's environment has them.

Every module loads from bytecode, as after ``pip install`` (which compiles a wheel's modules when it
installs them): the children run with PYTHONDONTWRITEBYTECODE removed and PYTHONPYCACHEPREFIX set to
a temporary folder, which the warm-up run fills. Without it, an environment that sets
PYTHONDONTWRITEBYTECODE (this project's does) compiles an editable checkout's sources on every start:
on a Zen 3 that added about 40 ms to fastgru's import, and nothing to the installed peers'.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# Each child prints one JSON line; {d} is the folder with the model files, {T}, {H} the shape.
PRELUDE = "import time, resource, json\nt0 = time.perf_counter()\n"
# Peak RSS from /proc/self/status VmHWM: ru_maxrss would also count the parent's memory that the
# child inherited across fork() before exec (Linux carries the old hiwater mark over exec).
EPILOGUE = (
    "try:\n"
    "    rss = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] / 1024\n"
    "except OSError:\n"
    "    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
    "print(json.dumps({'import_s': t1 - t0, 'load_s': tl - t1, 'first_call_s': t2 - tl,"
    " 'peak_rss_mb': rss}))\n")
CHILDREN = {
    "python (bare)": "t1 = tl = t2 = time.perf_counter()\n",
    "numpy": "import numpy\nt1 = tl = t2 = time.perf_counter()\n",
    "fastgru": (
        "import fastgru\n"
        "t1 = time.perf_counter()\n"
        "import numpy as np, os\n"
        "path = '{d}/gru.fastgru'\n"
        "if os.path.exists(path):\n"
        "    gru = fastgru.load(path)\n"
        "else:\n"
        "    gru = fastgru.GRU.from_arrays(dict(np.load('{d}/gru.npz')))\n"
        "tl = time.perf_counter()\n"
        "gru(np.random.default_rng(0).standard_normal(({T}, 1, {H}), dtype=np.float32))\n"
        "t2 = time.perf_counter()\n"),
    "torch": (
        "import torch\n"
        "t1 = time.perf_counter()\n"
        "gru = torch.nn.GRU({H}, {H})\n"
        "gru.load_state_dict(torch.load('{d}/gru.pt'))\n"
        "tl = time.perf_counter()\n"
        "with torch.inference_mode():\n"
        "    gru(torch.randn({T}, 1, {H}))\n"
        "t2 = time.perf_counter()\n"),
    "onnxruntime": (
        "import onnxruntime\n"
        "t1 = time.perf_counter()\n"
        "import numpy as np\n"
        "session = onnxruntime.InferenceSession('{d}/gru.onnx', providers=['CPUExecutionProvider'])\n"
        "tl = time.perf_counter()\n"
        "session.run(None, {{'X': np.random.default_rng(0).standard_normal(({T}, 1, {H}), dtype=np.float32),"
        " 'initial_h': np.zeros((1, 1, {H}), np.float32)}})\n"
        "t2 = time.perf_counter()\n"),
}


def write_models(folder: Path, hidden: int) -> str:
    """Writes the model in each engine's format; returns what fastgru will load."""
    import numpy as np
    import torch

    import engines

    torch.manual_seed(0)
    module = torch.nn.GRU(hidden, hidden)
    torch.save(module.state_dict(), folder / "gru.pt")
    np.savez(folder / "gru.npz", **{k: v.numpy() for k, v in module.state_dict().items()})
    (folder / "gru.onnx").write_bytes(engines.onnx_gru_model(module, hidden))
    try:
        import fastgru

        fastgru.GRU.from_torch(module).save(str(folder / "gru.fastgru"))
        return "fastgru file (GRU.save)"
    except Exception as exc:  # noqa: BLE001 - fall back to the npz
        return f"npz state dict (GRU.save unavailable: {type(exc).__name__}: {exc})"


def child_env(pycache: Path) -> dict:
    """The children's environment: the user's, with bytecode written to and read from `pycache`."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def run_child(code: str, env: dict) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one run each, small model")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--out", default=str(common.BENCH_DIR / "results"))
    args = p.parse_args()
    repeat, hidden = (1, 64) if args.quick else (args.repeat, args.hidden)

    import numpy as np

    rows = {}
    load_before = common.loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        fastgru_format = write_models(Path(tmp), hidden)
        env = child_env(Path(tmp) / "pycache")
        for name, body in CHILDREN.items():
            code = PRELUDE + body.format(d=tmp, T=args.seq_len, H=hidden) + EPILOGUE
            run_child(code, env)  # warm-up: file cache and bytecode
            runs = [run_child(code, env) for _ in range(repeat)]
            good = [r for r in runs if "error" not in r]
            if not good:
                rows[name] = runs[0]
                continue
            rows[name] = {k: float(np.median([r[k] for r in good])) for k in good[0]}

    fmt = common.format_seconds
    lines = ["# Cold start: import + first inference, fresh process each", "",
             f"Model: one-layer GRU, I=H={hidden}, first call B=1 T={args.seq_len}; medians of {repeat} "
             f"run(s) after a warm-up, modules from bytecode; fastgru loads: {fastgru_format}. Peak RSS "
             "includes the interpreter. "
             f"CPU: {common.cpu_info()['model']}; 1-minute load average before/after: {load_before} / "
             f"{common.loadavg()} (above ~1: other processes competing, timings unreliable).", "",
             "| what | import | load model | first call | import + load + first call | whole process | peak RSS |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | |")
            continue
        lines.append(f"| {name} | {fmt(r['import_s'])} | {fmt(r['load_s'])} | {fmt(r['first_call_s'])} | "
                     f"{fmt(r['import_s'] + r['load_s'] + r['first_call_s'])} | {fmt(r['process_s'])} | "
                     f"{r['peak_rss_mb']:.0f} MB |")
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
