"""Backward pass (BPTT) of a fastgru.GRU: the user-facing checks around the core's fg_backward.

The gradients are those of a scalar loss ``L`` given ``dL/d(output)`` and ``dL/d(h_n)``, for the forward
call that produced a :class:`fastgru.Tape`::

    output, h_n, tape = gru.forward(x, h0, lengths, return_tape=True)
    grads = gru.backward(tape, grad_output, grad_h_n)

``grads`` holds ``"x"`` (shaped like x), ``"h0"`` ((L*D, B, H), also when the forward had no h0: it is
then the gradient with respect to the initial state each row started from, zeros or the model's learned
``initial_state``; ``GRU.backward`` then adds ``"initial_state"``, its sum over the batch) and one array
per weight, named and shaped as in ``gru.weights`` (PyTorch's names, gate order r, z, n). Positions past a sequence's length, and masked
steps, receive no gradient from ``grad_output``: their output is the constant 0.

Memory: the tape holds, per layer, direction, time step and batch row, the activated r, z, n and the
recurrent candidate term (4*H values), plus each layer's output (D*H values per step and row):
``L * T * B * D * 5 * H`` elements of the model's dtype (``tape.nbytes``). The backward's scratch
workspace is about ``T * B * (7 * D * H + 2 * max(I, D * H))`` elements, reused between calls.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .runtime import _as_real_array, _thread_workspace


@dataclasses.dataclass
class Tape:
    """What a forward pass keeps for backward: the inputs as the core saw them and the core's tape
    (per layer: the r, z, n gate activations and the recurrent candidate term, 4*H values per step,
    batch row and direction, plus the layer's output; ``nbytes`` says how much)."""

    model: object  # the fastgru.GRU that recorded it (fastgru.model imports this module, not the reverse)
    x: np.ndarray
    h0: np.ndarray | None
    lengths: np.ndarray | None
    mask: np.ndarray | None
    data: np.ndarray
    initial_state_used: bool = False  # h0 was the model's learned initial state, not the caller's

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


def _checked_gradient(value, name: str, expected: tuple, dtype: np.dtype, layout: str):
    if value is None:
        return None
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = _as_real_array(value, name, dtype)
    if array.shape != expected:
        raise ValueError(f"{name} must have shape {layout} = {expected}, got {array.shape}")
    return array


def backward(gru, tape: Tape, grad_output=None, grad_h_n=None) -> dict[str, np.ndarray]:
    """Gradients for the forward call that produced ``tape`` (see the module docstring)."""
    if not isinstance(tape, Tape):
        raise TypeError(f"tape must be the Tape returned by forward(..., return_tape=True), got {type(tape).__name__}")
    if tape.model is not gru:
        raise ValueError("tape was recorded by a different GRU: call backward on the model whose forward made it")
    spec = gru.spec
    L, D, H = spec.num_layers, spec.num_directions, spec.hidden_size
    x = tape.x
    B, T = (x.shape[0], x.shape[1]) if spec.batch_first else (x.shape[1], x.shape[0])
    out_shape = (B, T, D * H) if spec.batch_first else (T, B, D * H)
    layout = "(B, T, D*H)" if spec.batch_first else "(T, B, D*H)"
    grad_output = _checked_gradient(grad_output, "grad_output", out_shape, gru.dtype, layout)
    grad_h_n = _checked_gradient(grad_h_n, "grad_h_n", (L * D, B, H), gru.dtype, "(num_layers*num_directions, B, H)")

    grads = {"x": np.empty(x.shape, dtype=gru.dtype), "h0": np.empty((L * D, B, H), dtype=gru.dtype)}
    shapes = spec.weight_shapes()
    per_direction = []
    for layer, suffix in spec.layer_keys():
        arrays = []
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            name = f"{kind}_l{layer}{suffix}"
            if name in shapes:
                grads[name] = np.empty(shapes[name], dtype=gru.dtype)
                arrays.append(grads[name])
            else:
                arrays.append(None)  # bias=False: the core skips the bias gradients
        per_direction.append(tuple(arrays))
    model = gru._model
    workspace = _thread_workspace(model.backward_workspace_bytes(T, B))
    model.backward(x, tape.h0, tape.lengths, tape.mask, spec.batch_first, tape.data, grad_output, grad_h_n,
                   grads["x"], grads["h0"], per_direction, workspace)
    return grads
