"""fastgru in one run: export a PyTorch GRU the way users do, load the files with fastgru, check the
numbers against PyTorch and ONNX Runtime, and time all three side by side.

    make demo            (or: python examples/demo.py [--threads N])

The model is a speech front end's shape: 2 layers, 80 mel features in, 256 hidden units.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np

import fastgru

INPUT, HIDDEN, LAYERS = 80, 256, 2


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocations and lazy initialisation are not what is being compared
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def export(directory: str):
    """A seeded torch.nn.GRU saved as a state dict (.pt) and exported to ONNX, one GRU node per layer."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.GRU(INPUT, HIDDEN, num_layers=LAYERS).eval()
    pt_path = os.path.join(directory, "gru.pt")
    torch.save(model.state_dict(), pt_path)
    onnx_path = os.path.join(directory, "gru.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(10, 1, INPUT),), onnx_path, dynamo=False,
                          input_names=["x"], output_names=["y", "h_n"],
                          dynamic_axes={"x": {0: "T", 1: "B"}, "y": {0: "T", 1: "B"}})
    return model, pt_path, onnx_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for every engine (default 1)")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as directory:
        model, pt_path, onnx_path = export(directory)
        gru = fastgru.load(pt_path)
        gru.num_threads = args.threads
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        print(f"exported {pt_path.rsplit('/', 1)[1]} and {onnx_path.rsplit('/', 1)[1]}; loaded: {gru}")

        # 1. Same numbers: a batch of utterances of different lengths.
        rng = np.random.default_rng(0)
        T, B = 120, 8
        x = rng.standard_normal((T, B, INPUT)).astype(np.float32)
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0] = T
        output, h_n = gru(x, lengths=lengths)
        with torch.inference_mode():
            packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                                             enforce_sorted=False)
            torch_packed, torch_h_n = model(packed)
            torch_output, _ = torch.nn.utils.rnn.pad_packed_sequence(torch_packed, total_length=T)
        ort_output = session.run(None, {"x": x[:, :1]})[0]  # ORT's export has no lengths: full sequence, B=1
        print(f"\nmax |fastgru - torch| over {B} sequences of lengths {sorted(lengths.tolist())}:")
        print(f"  output {np.abs(output - torch_output.numpy()).max():.2e}   h_n {np.abs(h_n - torch_h_n.numpy()).max():.2e}")
        full, _ = gru(x[:, :1])
        print(f"max |fastgru - onnxruntime| on one full sequence: {np.abs(full - ort_output.reshape(full.shape)).max():.2e}")

        # 2. Timings, one engine after another on the same inputs (bench/ interleaves them properly).
        print(f"\nmedian time, {args.threads} thread(s); lower is better")
        print(f"{'shape':28s} {'fastgru':>10s} {'PyTorch':>10s} {'ONNX RT':>10s}  {'speed-up vs best peer':>22s}")
        stream = gru.stream(batch_size=1)
        for label, T, B, repeats in (("streaming step B=1 T=1", 1, 1, 500), ("utterance B=1 T=300", 300, 1, 20),
                                     ("batch B=16 T=300", 300, 16, 5)):
            x = rng.standard_normal((T, B, INPUT)).astype(np.float32)
            x_torch = torch.from_numpy(x)
            if T == 1:
                frame = x[0]
                ours = median_seconds(lambda: stream.step(frame), repeats)
            else:
                ours = median_seconds(lambda: gru(x), repeats)
            with torch.inference_mode():
                theirs = median_seconds(lambda: model(x_torch), repeats)
            onnx = median_seconds(lambda: session.run(None, {"x": x}), repeats)
            print(f"{label:28s} {ours * 1e3:8.3f}ms {theirs * 1e3:8.3f}ms {onnx * 1e3:8.3f}ms  "
                  f"{min(theirs, onnx) / ours:21.2f}x")
        print("\nFull benchmark (more shapes, threads, GFLOP/s, machine limits): make bench")


if __name__ == "__main__":
    main()
