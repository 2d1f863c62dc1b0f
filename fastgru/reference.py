"""A plain float64 numpy GRU: the executable spec the tests hold the C core against.

Nothing here is fast on purpose. Every layer, direction and time step is an explicit loop, and the
formulas are those of docs/design.md ("The GRU" and "Backward"), written out once.

Semantics (PyTorch's, see ``fastgru.spec``):

- ``x`` is (T, B, I), or (B, T, I) when ``spec.batch_first``; ``h0`` and ``h_n`` are (L*D, B, H) with
  row ``layer * D + direction``; ``output`` is (T, B, D*H) (or batch-first).
- ``lengths`` (B,) in 1..T: outputs past a length are 0, ``h_n`` is the state at the last valid step,
  and the reverse direction starts at the last valid step.
- ``mask`` (T, B) bool, always time-major: where False the state is carried over unchanged and the
  output is 0. Direction 1 runs t = T-1..0 applying the mask at each t.

``lengths`` is implemented as the mask ``t < lengths[b]``: carrying the state over the padded tail
leaves ``h_n`` at the last valid step, and makes the reverse direction, which meets the padded tail
first, start from ``h0`` at the last valid step. So there is one code path for both.
"""

from __future__ import annotations

import numpy as np

from .spec import GATE_ACTIVATIONS, GRUSpec


# ---------------------------------------------------------------------------------------------
# gate functions


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _gate(spec: GRUSpec, a):
    """The gate activation of r and z, applied to an already clipped pre-activation."""
    params = GATE_ACTIVATIONS[spec.gate_activation]
    if params is None:
        return _sigmoid(a)
    alpha, beta = params
    return np.clip(alpha * a + beta, 0.0, 1.0)


def _gate_derivative(spec: GRUSpec, a, value):
    """d gate / d a at the clipped pre-activation ``a`` whose gate value is ``value``."""
    params = GATE_ACTIVATIONS[spec.gate_activation]
    if params is None:
        return value * (1.0 - value)
    alpha, beta = params
    inside = (alpha * a + beta > 0.0) & (alpha * a + beta < 1.0)
    return np.where(inside, alpha, 0.0)


def _clip(spec: GRUSpec, a):
    return a if spec.clip is None else np.clip(a, -spec.clip, spec.clip)


def _clip_derivative(spec: GRUSpec, a):
    """d clip(a) / d a: 1 inside [-clip, clip], 0 where the clamp is active."""
    if spec.clip is None:
        return np.ones_like(a)
    return ((a > -spec.clip) & (a < spec.clip)).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# argument handling


def _layer_weights(spec: GRUSpec, weights, layer: int, suffix: str):
    """(weight_ih, weight_hh, bias_ih, bias_hh) in float64; zero biases when ``spec.bias`` is False."""
    w_ih = np.asarray(weights[f"weight_ih_l{layer}{suffix}"], dtype=np.float64)
    w_hh = np.asarray(weights[f"weight_hh_l{layer}{suffix}"], dtype=np.float64)
    if spec.bias:
        b_ih = np.asarray(weights[f"bias_ih_l{layer}{suffix}"], dtype=np.float64)
        b_hh = np.asarray(weights[f"bias_hh_l{layer}{suffix}"], dtype=np.float64)
    else:
        b_ih = np.zeros(3 * spec.hidden_size)
        b_hh = np.zeros(3 * spec.hidden_size)
    return w_ih, w_hh, b_ih, b_hh


def _prepare(spec: GRUSpec, x, h0, lengths, mask):
    """Time-major float64 x, h0 (zeros if absent) and the (T, B) bool mask of valid steps."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x must be 3-d ({'B, T, I' if spec.batch_first else 'T, B, I'}), got shape {x.shape}")
    if spec.batch_first:
        x = x.transpose(1, 0, 2)
    steps, batch, features = x.shape
    if features != spec.input_size:
        raise ValueError(f"x must have {spec.input_size} features (last axis), got shape {x.shape}")

    state_shape = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
    if h0 is None:
        h0 = np.zeros(state_shape)
    else:
        h0 = np.asarray(h0, dtype=np.float64)
        if h0.shape != state_shape:
            raise ValueError(f"h0 must have shape {state_shape}, got {h0.shape}")

    if lengths is not None and mask is not None:
        raise ValueError("pass either lengths or mask, not both")
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (batch,) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"lengths must be {batch} integers, got {lengths!r}")
        if np.any(lengths < 1) or np.any(lengths > steps):
            raise ValueError(f"lengths must lie in 1..{steps}, got {lengths!r}")
        mask = np.arange(steps)[:, None] < lengths[None, :]
    elif mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (steps, batch) or mask.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array of shape {(steps, batch)}, got {mask.dtype} {mask.shape}")
    else:
        mask = np.ones((steps, batch), dtype=bool)
    return x, h0, mask


def _time_order(steps: int, direction: int):
    return range(steps) if direction == 0 else range(steps - 1, -1, -1)


# ---------------------------------------------------------------------------------------------
# one step


def _cell(spec: GRUSpec, w_ih, w_hh, b_ih, b_hh, x_t, h):
    """One GRU step for a batch: returns h' and everything the backward needs."""
    hidden = spec.hidden_size
    w_ir, w_iz, w_in = w_ih[:hidden], w_ih[hidden : 2 * hidden], w_ih[2 * hidden :]
    w_hr, w_hz, w_hn = w_hh[:hidden], w_hh[hidden : 2 * hidden], w_hh[2 * hidden :]
    b_ir, b_iz, b_in = b_ih[:hidden], b_ih[hidden : 2 * hidden], b_ih[2 * hidden :]
    b_hr, b_hz, b_hn = b_hh[:hidden], b_hh[hidden : 2 * hidden], b_hh[2 * hidden :]

    raw_r = x_t @ w_ir.T + b_ir + h @ w_hr.T + b_hr
    raw_z = x_t @ w_iz.T + b_iz + h @ w_hz.T + b_hz
    r = _gate(spec, _clip(spec, raw_r))
    z = _gate(spec, _clip(spec, raw_z))
    if spec.reset_after:
        # linear-before-reset: g_n = W_hn h + b_hn is computed first, then scaled by r
        g_n = h @ w_hn.T + b_hn
        raw_n = x_t @ w_in.T + b_in + r * g_n
    else:
        # reset-before: the reset gate scales the state before it meets W_hn
        g_n = (r * h) @ w_hn.T + b_hn
        raw_n = x_t @ w_in.T + b_in + g_n
    n = np.tanh(_clip(spec, raw_n))
    h_new = z * h + (1.0 - z) * n
    cache = dict(x=x_t, h=h, raw_r=raw_r, raw_z=raw_z, raw_n=raw_n, r=r, z=z, n=n, g_n=g_n)
    return h_new, cache


def _cell_backward(spec: GRUSpec, w_ih, w_hh, cache, dh_new):
    """Backward of ``_cell``: returns dh, dx and the per-step (dW_ih, dW_hh, db_ih, db_hh)."""
    hidden = spec.hidden_size
    h, r, z, n, g_n = cache["h"], cache["r"], cache["z"], cache["n"], cache["g_n"]

    dn = dh_new * (1.0 - z)
    dz = dh_new * (h - n)
    dh = dh_new * z
    da_n = dn * (1.0 - n * n) * _clip_derivative(spec, cache["raw_n"])
    if spec.reset_after:
        dr = da_n * g_n
        dg_n = da_n * r
    else:
        # with rh = r * h:  a_n = W_in x + b_in + W_hn rh + b_hn
        d_rh = da_n @ w_hh[2 * hidden :]
        dr = d_rh * h
        dh += d_rh * r
        dg_n = da_n
    da_r = dr * _gate_derivative(spec, _clip(spec, cache["raw_r"]), r) * _clip_derivative(spec, cache["raw_r"])
    da_z = dz * _gate_derivative(spec, _clip(spec, cache["raw_z"]), z) * _clip_derivative(spec, cache["raw_z"])

    d_gates_x = np.concatenate([da_r, da_z, da_n], axis=1)  # gradient of the input projection
    d_gates_h = np.concatenate([da_r, da_z, dg_n], axis=1)  # gradient of the recurrent projection
    dx = d_gates_x @ w_ih
    dw_ih = d_gates_x.T @ cache["x"]
    db_ih = d_gates_x.sum(axis=0)
    db_hh = d_gates_h.sum(axis=0)
    if spec.reset_after:
        dh += d_gates_h @ w_hh
        dw_hh = d_gates_h.T @ h
    else:
        # r and z rows multiply h; the n rows multiply r * h, whose share of dh is already in
        dh += d_gates_h[:, : 2 * hidden] @ w_hh[: 2 * hidden]
        dw_hh = np.concatenate([d_gates_h[:, : 2 * hidden].T @ h, dg_n.T @ (r * h)], axis=0)
    return dh, dx, dw_ih, dw_hh, db_ih, db_hh


# ---------------------------------------------------------------------------------------------
# whole sequences


def _run(spec: GRUSpec, weights, x, h0, mask):
    """Time-major forward over all layers and directions; also returns the per-step caches."""
    steps, batch, _ = x.shape
    hidden, directions = spec.hidden_size, spec.num_directions
    h_n = np.zeros((spec.num_layers * directions, batch, hidden))
    caches = {}  # (layer, direction) -> list of (t, cache), in the order the steps ran
    layer_input = x
    for layer in range(spec.num_layers):
        layer_output = np.zeros((steps, batch, directions * hidden))
        for direction in range(directions):
            suffix = "_reverse" if direction else ""
            w_ih, w_hh, b_ih, b_hh = _layer_weights(spec, weights, layer, suffix)
            h = h0[layer * directions + direction]
            caches[layer, direction] = []
            for t in _time_order(steps, direction):
                h_new, cache = _cell(spec, w_ih, w_hh, b_ih, b_hh, layer_input[t], h)
                valid = mask[t][:, None]
                h = np.where(valid, h_new, h)  # masked rows carry their state over
                layer_output[t, :, direction * hidden : (direction + 1) * hidden] = np.where(valid, h, 0.0)
                caches[layer, direction].append((t, cache))
            h_n[layer * directions + direction] = h
        layer_input = layer_output
    return layer_input, h_n, caches


def forward(spec: GRUSpec, weights, x, h0=None, lengths=None, mask=None):
    """Returns ``(output, h_n)`` in float64 with PyTorch's shapes (see the module docstring)."""
    x, h0, mask = _prepare(spec, x, h0, lengths, mask)
    output, h_n, _ = _run(spec, weights, x, h0, mask)
    if spec.batch_first:
        output = output.transpose(1, 0, 2)
    return np.ascontiguousarray(output), h_n


def backward(spec: GRUSpec, weights, x, h0=None, lengths=None, grad_output=None, grad_h_n=None, mask=None):
    """BPTT gradients of ``sum(output * grad_output) + sum(h_n * grad_h_n)``, in float64.

    Returns a dict with ``"x"`` (shaped like x), ``"h0"`` ((L*D, B, H), also when h0 was None) and
    one entry per weight name of ``spec``. Absent ``grad_output``/``grad_h_n`` count as zeros.
    Padded (masked) positions contribute nothing: their output is the constant 0.
    """
    x, h0, mask = _prepare(spec, x, h0, lengths, mask)
    steps, batch, _ = x.shape
    hidden, directions = spec.hidden_size, spec.num_directions
    _, _, caches = _run(spec, weights, x, h0, mask)

    if grad_output is None:
        grad_output = np.zeros((steps, batch, directions * hidden))
    else:
        grad_output = np.asarray(grad_output, dtype=np.float64)
        if spec.batch_first:
            grad_output = grad_output.transpose(1, 0, 2)
    grad_h_n = np.zeros_like(h0) if grad_h_n is None else np.asarray(grad_h_n, dtype=np.float64)

    grads = {}
    grad_h0 = np.zeros_like(h0)
    d_layer_output = grad_output  # gradient w.r.t. the output of the layer being processed
    for layer in reversed(range(spec.num_layers)):
        d_layer_input = np.zeros((steps, batch, spec.layer_input_size(layer)))
        for direction in range(directions):
            suffix = "_reverse" if direction else ""
            w_ih, w_hh, _, _ = _layer_weights(spec, weights, layer, suffix)
            dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
            db_ih, db_hh = np.zeros(3 * hidden), np.zeros(3 * hidden)
            dh = grad_h_n[layer * directions + direction].copy()
            for t, cache in reversed(caches[layer, direction]):
                valid = mask[t][:, None]
                d_out = d_layer_output[t, :, direction * hidden : (direction + 1) * hidden]
                dh_new = dh + np.where(valid, d_out, 0.0)
                dh_prev, dx, step_dw_ih, step_dw_hh, step_db_ih, step_db_hh = _cell_backward(
                    spec, w_ih, w_hh, cache, np.where(valid, dh_new, 0.0)
                )
                # masked rows were a plain copy of the state, so their gradient passes straight through
                dh = np.where(valid, dh_prev, dh)
                d_layer_input[t] += dx
                dw_ih += step_dw_ih
                dw_hh += step_dw_hh
                db_ih += step_db_ih
                db_hh += step_db_hh
            grad_h0[layer * directions + direction] = dh
            grads[f"weight_ih_l{layer}{suffix}"] = dw_ih
            grads[f"weight_hh_l{layer}{suffix}"] = dw_hh
            if spec.bias:
                grads[f"bias_ih_l{layer}{suffix}"] = db_ih
                grads[f"bias_hh_l{layer}{suffix}"] = db_hh
        d_layer_output = d_layer_input

    grad_x = d_layer_output.transpose(1, 0, 2) if spec.batch_first else d_layer_output
    result = {"x": np.ascontiguousarray(grad_x), "h0": grad_h0}
    result.update((name, grads[name]) for name in spec.weight_shapes())
    return result
