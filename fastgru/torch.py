"""``fastgru.torch.GRU``: a drop-in ``torch.nn.GRU`` whose forward and backward run in fastgru's C core.

    from fastgru.torch import GRU
    rnn = GRU(input_size, hidden_size, num_layers=2, bidirectional=True, batch_first=True)
    output, h_n = rnn(x, h0)          # x a tensor or a PackedSequence, exactly as with nn.GRU
    output.sum().backward()           # gradients for x, h0 and every parameter, computed by fastgru

Same constructor, parameters, ``state_dict`` names, shapes and semantics as ``torch.nn.GRU`` (a state dict
loads into either), on the CPU, in float32 or float64. Not supported, with a clear error: ``dropout`` other
than 0, devices other than the CPU, other dtypes, and double backward (gradients of gradients).

Each forward packs the current parameters into a fastgru model (a copy of the weights into the core's
layout: O(number of weights), about the cost of one or two time steps), so optimisers may update the
parameters in place between calls as usual. The forward keeps a tape for the backward: per layer,
``T * B * D * 5 * H`` values (gate activations and the layer output), freed with the autograd graph.

This module imports torch; ``import fastgru`` alone does not.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from .model import GRU as _FastGRU
from .threads import resolve_num_threads
from .spec import GRUSpec

__all__ = ["GRU"]

_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


class _GRUFunction(torch.autograd.Function):
    """(x, h0, *weights) -> (output, h_n) through fastgru's forward; the backward through its BPTT."""

    @staticmethod
    def forward(ctx, spec: GRUSpec, names: tuple, num_threads: int, lengths, x, h0, *weights):
        arrays = {name: weight.detach().numpy() for name, weight in zip(names, weights)}
        model = _FastGRU.from_spec(spec, arrays, num_threads=num_threads, source="fastgru.torch.GRU parameters")
        h0_array = None if h0 is None else h0.detach().numpy()
        if not any(ctx.needs_input_grad):  # inference (torch.no_grad, or nothing requires grad): no tape
            output, h_n = model.forward(x.detach().numpy(), h0_array, lengths)
            return torch.from_numpy(output), torch.from_numpy(h_n)
        output, h_n, tape = model.forward(x.detach().numpy(), h0_array, lengths, return_tape=True)
        ctx.model, ctx.tape, ctx.names, ctx.has_h0 = model, tape, names, h0 is not None
        return torch.from_numpy(output), torch.from_numpy(h_n)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output, grad_h_n):
        grads = ctx.model.backward(ctx.tape, grad_output.detach().numpy(), grad_h_n.detach().numpy())
        grad_x = torch.from_numpy(grads["x"])
        grad_h0 = torch.from_numpy(grads["h0"]) if ctx.has_h0 else None
        return (None, None, None, None, grad_x, grad_h0, *(torch.from_numpy(grads[name]) for name in ctx.names))


class GRU(torch.nn.Module):
    """``torch.nn.GRU`` computed by fastgru (see the module docstring).

    Arguments are ``nn.GRU``'s: ``input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device=None, dtype=None``; ``num_threads`` (keyword only) sets the
    core's threads (default: the CPUs this process may use). Parameters are created and initialised in
    nn.GRU's order and way, so the same seed gives the same initial weights as ``nn.GRU``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None, *, num_threads: int | None = None):
        super().__init__()
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout should be a number in range [0, 1], got {dropout!r}")
        if dropout != 0:
            raise NotImplementedError(
                f"fastgru.torch.GRU does not implement dropout between layers (got dropout={dropout}); "
                "use torch.nn.GRU, or dropout=0 with nn.Dropout on the output")
        device = torch.device("cpu") if device is None else torch.device(device)
        if device.type != "cpu":
            raise NotImplementedError(f"fastgru.torch.GRU runs on the CPU only, got device={device}")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in _DTYPES:
            raise TypeError(f"fastgru.torch.GRU supports dtype torch.float32 or torch.float64, got {dtype}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.num_threads = num_threads
        directions = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else directions * hidden_size
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = [("weight_ih", (3 * hidden_size, layer_input)), ("weight_hh", (3 * hidden_size, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (3 * hidden_size,)), ("bias_hh", (3 * hidden_size,))]
                for kind, shape in shapes:
                    name = kind + suffix
                    setattr(self, name, torch.nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
                    self._flat_weights_names.append(name)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in [-1/sqrt(H), 1/sqrt(H)], parameter by parameter in nn.GRU's order."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            torch.nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, for code written for nn.GRU (fastgru packs the weights on every forward)."""

    @property
    def all_weights(self) -> list[list[torch.nn.Parameter]]:
        per = 4 if self.bias else 2
        weights = [getattr(self, name) for name in self._flat_weights_names]
        return [weights[i : i + per] for i in range(0, len(weights), per)]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    # ------------------------------------------------------------ forward

    def _spec(self, dtype: torch.dtype) -> GRUSpec:
        return GRUSpec(self.input_size, self.hidden_size, self.num_layers, self.bidirectional, self.batch_first,
                       self.bias, reset_after=True, dtype=_DTYPES[dtype])

    def forward(self, input, hx=None):
        """``(output, h_n)`` as ``nn.GRU.forward``: input (T, B, I) or (B, T, I) with batch_first, (T, I)
        unbatched, or a PackedSequence (then the output is a PackedSequence too); hx (L*D, B, H) or
        (L*D, H) unbatched, zeros when None."""
        weights = [getattr(self, name) for name in self._flat_weights_names]
        dtype = weights[0].dtype
        if any(w.dtype != dtype or w.device.type != "cpu" for w in weights) or dtype not in _DTYPES:
            raise TypeError("fastgru.torch.GRU parameters must all be CPU tensors of dtype float32 or float64 "
                            f"(got {sorted({str(w.dtype) for w in weights})} on {sorted({str(w.device) for w in weights})})")
        packed = isinstance(input, PackedSequence)
        if packed:
            padded, lengths = pad_packed_sequence(input, batch_first=self.batch_first)
            x, unbatched = padded, False
            lengths = lengths.numpy().astype(np.int64)
        else:
            if not isinstance(input, torch.Tensor):
                raise TypeError(f"input must be a Tensor or a PackedSequence, got {type(input).__name__}")
            if input.dim() not in (2, 3):
                raise ValueError(f"GRU: Expected input to be 2D or 3D, got {input.dim()}D instead")
            unbatched = input.dim() == 2
            x = input.unsqueeze(0 if self.batch_first else 1) if unbatched else input
            lengths = None
        self._check_tensor(x, "input", dtype)
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.shape[-1]}")
        batch = x.shape[0] if self.batch_first else x.shape[1]
        steps = x.shape[1] if self.batch_first else x.shape[0]
        if steps == 0:
            raise ValueError("fastgru.torch.GRU: the input has 0 time steps")
        directions = 2 if self.bidirectional else 1
        h_shape = (self.num_layers * directions, batch, self.hidden_size)
        if hx is not None:
            self._check_tensor(hx, "hx", dtype)
            if unbatched:
                if hx.dim() != 2:
                    raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor")
                hx = hx.unsqueeze(1)
            if tuple(hx.shape) != h_shape:
                raise RuntimeError(f"Expected hidden size {h_shape}, got {tuple(hx.shape)}")
            hx = hx.contiguous()
        threads = resolve_num_threads(self.num_threads)  # checked; None: fastgru.threads' order, read now
        output, h_n = _GRUFunction.apply(self._spec(dtype), tuple(self._flat_weights_names), threads, lengths,
                                         x.contiguous(), hx, *weights)
        if packed:
            return _repack(output, input, self.batch_first), h_n
        if unbatched:
            return output.squeeze(0 if self.batch_first else 1), h_n.squeeze(1)
        return output, h_n

    @staticmethod
    def _check_tensor(tensor, name: str, dtype) -> None:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a Tensor, got {type(tensor).__name__}")
        if tensor.device.type != "cpu":
            raise NotImplementedError(f"fastgru.torch.GRU runs on the CPU only; {name} is on {tensor.device}")
        if tensor.dtype != dtype:
            raise RuntimeError(f"{name} must have the parameters' dtype {dtype}, got {tensor.dtype}")


def _repack(output: torch.Tensor, like: PackedSequence, batch_first: bool) -> PackedSequence:
    """The padded output as a PackedSequence with ``like``'s batch sizes and orderings (as nn.GRU returns)."""
    sizes = like.batch_sizes.tolist()
    order = list(range(sizes[0])) if like.sorted_indices is None else like.sorted_indices.tolist()
    # Packed data lists time step t's first sizes[t] sequences (in sorted order), then t + 1's, ...
    times = torch.tensor([t for t, size in enumerate(sizes) for _ in range(size)], dtype=torch.int64)
    rows = torch.tensor([order[i] for size in sizes for i in range(size)], dtype=torch.int64)
    data = output[rows, times] if batch_first else output[times, rows]
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)
