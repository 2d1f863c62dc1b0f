"""Train a GRU on a delayed-copy task with fastgru's backward, next to torch.nn.GRU from the same seed.

    python examples/train_copy_task.py [--steps 300] [--delay 5]

(with fastgru installed, e.g. ``pip install -e ".[torch]"`` in the repository, as ``make demo`` does)

Task: a stream of random symbols (one-hot, 8 symbols, 30 steps per sequence); at every step the model
must output the symbol it saw `delay` steps earlier. A GRU must hold the last `delay` symbols in its
state, so the task is learned only through backpropagation through time (a feed-forward model on the
current input stays at chance: loss ln 8 = 2.08). Sequences have random lengths (packed, as real
batches do), so the run also exercises variable lengths.

Both runs start from the same weights (same seed, same parameter order) and see the same batches; the
only difference is the recurrent layer: ``torch.nn.GRU`` or ``fastgru.torch.GRU``, whose forward and
backward run in fastgru's C core. Their loss curves, printed side by side, agree to the printed digits
(the float32 rounding of the two engines differs, so over many more steps they would drift apart
slowly). The whole script takes a few seconds on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time

# fastgru's GEMMs go through scipy's OpenBLAS. Its own thread pool busy-waits between calls and, inside a
# torch process, fights torch's threads for the cores: with many small per-step GEMMs that costs 5x or
# more on a 2-core machine. One BLAS thread avoids it (set before numpy/scipy load; your value wins).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import fastgru.torch  # noqa: E402

SYMBOLS, STEPS, BATCH, HIDDEN = 8, 30, 32, 64


class DelayedCopy(torch.nn.Module):
    def __init__(self, rnn_class, delay):
        super().__init__()
        self.delay = delay
        self.rnn = rnn_class(SYMBOLS, HIDDEN, batch_first=True)
        self.head = torch.nn.Linear(HIDDEN, SYMBOLS)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, _ = self.rnn(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
        return self.head(output)


def batches(seed, delay, count):
    """The same `count` batches for every run: (one-hot x, lengths, targets with -100 where no target)."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        symbols = torch.randint(0, SYMBOLS, (BATCH, STEPS), generator=generator)
        lengths = torch.randint(delay + 5, STEPS + 1, (BATCH,), generator=generator)
        targets = torch.full_like(symbols, -100)  # ignored by cross_entropy
        targets[:, delay:] = symbols[:, :-delay]
        targets[torch.arange(STEPS)[None, :] >= lengths[:, None]] = -100
        yield torch.nn.functional.one_hot(symbols, SYMBOLS).float(), lengths, targets


def train(rnn_class, steps, delay, seed=0):
    torch.manual_seed(seed)
    model = DelayedCopy(rnn_class, delay)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses, accuracies = [], []
    start = time.perf_counter()
    for x, lengths, targets in batches(seed + 1, delay, steps):
        logits = model(x, lengths)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, SYMBOLS), targets.reshape(-1), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        valid = targets != -100
        accuracies.append((logits.argmax(-1)[valid] == targets[valid]).float().mean().item())
        losses.append(loss.item())
    return losses, accuracies, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps (default 300)")
    parser.add_argument("--delay", type=int, default=5, help="how many steps back to copy from (default 5)")
    parser.add_argument("--every", type=int, default=20, help="print every N steps")
    args = parser.parse_args()

    print(f"delayed copy: {SYMBOLS} symbols, delay {args.delay}, T<={STEPS}, batch {BATCH}, hidden {HIDDEN}, "
          f"{args.steps} Adam steps; chance loss {torch.log(torch.tensor(float(SYMBOLS))).item():.3f}")
    torch_losses, torch_acc, torch_seconds = train(torch.nn.GRU, args.steps, args.delay)
    fast_losses, fast_acc, fast_seconds = train(fastgru.torch.GRU, args.steps, args.delay)

    print(f"\n{'step':>6}  {'nn.GRU loss':>12}  {'fastgru loss':>12}  {'nn.GRU acc':>10}  {'fastgru acc':>11}")
    for step in list(range(0, args.steps, args.every)) + [args.steps - 1]:
        print(f"{step + 1:>6}  {torch_losses[step]:>12.5f}  {fast_losses[step]:>12.5f}  "
              f"{torch_acc[step]:>10.3f}  {fast_acc[step]:>11.3f}")
    print(f"\ntraining time: nn.GRU {torch_seconds:.1f} s, fastgru.torch.GRU {fast_seconds:.1f} s")
    learned = fast_acc[-1] > 0.95
    print("fastgru learned the task" if learned else "fastgru did not reach 95% accuracy: try --steps 600")


if __name__ == "__main__":
    main()
