"""How much does int8 cost in accuracy? Train small PyTorch GRUs on two real sequence tasks, quantize them
with fastgru and with PyTorch's dynamic int8, and compare outputs and task metrics with float32.

    python examples/int8_accuracy.py            (about a minute on 2 cores; needs torch)

Tasks (synthetic data, so the script needs nothing but torch):
- noisy delayed recall (classification): one-hot symbols plus Gaussian noise; at step t, name the
  symbol of step t - 3. The noise keeps the accuracy well below 100%, so it can move.
- sine forecasting (regression): a sum of two sines with random frequencies and phases, plus noise;
  predict the next value. Metric: mean squared error.
Each model is trained with Adam, then evaluated on fresh sequences of 300 steps (longer than training).
The numbers are in docs/int8.md; tests/test_int8.py asserts bounds on a smaller copy of the first task.
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np

import fastgru


def delayed_recall(rng, steps, batch, symbols=6, noise=0.45):
    labels = rng.integers(0, symbols, size=(steps, batch))
    x = (np.eye(symbols)[labels] + noise * rng.standard_normal((steps, batch, symbols))).astype(np.float32)
    return x, labels


def sines(rng, steps, batch):
    t = np.arange(steps + 1)[:, None]
    freq = rng.uniform(0.05, 0.3, size=(2, batch))
    phase = rng.uniform(0, 2 * np.pi, size=(2, batch))
    signal = np.sin(freq[0] * t + phase[0]) + 0.5 * np.sin(freq[1] * t + phase[1])
    signal = signal + 0.05 * rng.standard_normal(signal.shape)
    return signal[:-1, :, None].astype(np.float32), signal[1:].astype(np.float32)


TASKS = {
    # name: (data, input size, output size, loss, metric name)
    "delayed recall": (delayed_recall, 6, 6, "cross_entropy", "accuracy %"),
    "sine forecast": (sines, 1, 1, "mse", "MSE"),
}
DELAY = 3


def train(torch, task, hidden, layers, steps, seed=0):
    data, inputs, outputs, loss_name, _ = TASKS[task]
    torch.manual_seed(seed)
    gru = torch.nn.GRU(inputs, hidden, num_layers=layers)
    head = torch.nn.Linear(hidden, outputs)
    optimizer = torch.optim.Adam([*gru.parameters(), *head.parameters()], lr=1e-2)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x, target = data(rng, 32, 32)
        prediction = head(gru(torch.from_numpy(x))[0])
        if loss_name == "cross_entropy":
            loss = torch.nn.functional.cross_entropy(prediction[DELAY:].reshape(-1, outputs),
                                                     torch.from_numpy(target[:-DELAY]).reshape(-1))
        else:
            loss = torch.nn.functional.mse_loss(prediction[..., 0], torch.from_numpy(target))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return gru.eval(), head


def metric(task, states, head_weight, head_bias, target):
    prediction = states @ head_weight.T + head_bias
    if TASKS[task][3] == "cross_entropy":
        return 100 * np.mean(prediction.argmax(-1)[DELAY:] == target[:-DELAY])
    return float(np.mean((prediction[..., 0] - target) ** 2))


def evaluate(torch, task, gru, head):
    x, target = TASKS[task][0](np.random.default_rng(1), 300, 64)
    with torch.no_grad():
        float32 = gru(torch.from_numpy(x))[0].numpy().astype(np.float64)
        holder = torch.nn.Module()
        holder.gru = gru
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch_int8 = torch.ao.quantization.quantize_dynamic(holder, {torch.nn.GRU}, dtype=torch.qint8).gru
        outputs = {"torch dynamic int8": torch_int8(torch.from_numpy(x))[0].numpy().astype(np.float64)}
    model = fastgru.GRU.from_torch(gru)
    outputs["fastgru int8"] = model.quantize("int8")(x)[0].astype(np.float64)
    outputs["fastgru int8, 7-bit weights"] = model.quantize("int8", weight_bits=7)(x)[0].astype(np.float64)
    weight, bias = head.weight.detach().numpy(), head.bias.detach().numpy()
    rows = [("float32", 0.0, 0.0, metric(task, float32, weight, bias, target))]
    for name, output in outputs.items():
        error = np.abs(output - float32)
        rows.append((name, error.max(), np.sqrt(np.mean(error ** 2)), metric(task, output, weight, bias, target)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="Adam steps per model")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print("| task | model | engine | max abs error vs float32 | RMS error | metric | metric change |")
    print("|---|---|---|---|---|---|---|")
    for task in TASKS:
        for hidden, layers in ((64, 1), (128, 2)):
            gru, head = train(torch, task, hidden, layers, args.steps)
            rows = evaluate(torch, task, gru, head)
            name = TASKS[task][4]
            reference = rows[0][3]
            for engine, max_error, rms, value in rows:
                change = value - reference
                change_text = (f"{change:+.2f} points" if name.endswith("%")
                               else f"{100 * change / reference:+.2f}%")
                print(f"| {task} | H={hidden} L={layers} | {engine} | {max_error:.3g} | {rms:.2g} | "
                      f"{name} {value:.4g} | {'-' if engine == 'float32' else change_text} |", flush=True)


if __name__ == "__main__":
    main()
