"""Importing from PyTorch: nn.GRU / nn.GRUCell modules, modules containing GRUs, state dicts,
torch.save files and safetensors files (the latter loaded in a process where torch cannot be imported)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastgru
from conftest import torch_run

torch = pytest.importorskip("torch")
TOLERANCE = 1e-5

CONFIGS = [
    dict(),
    dict(num_layers=2),
    dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(bias=False),
    dict(num_layers=3, bias=False, batch_first=True),
]


def _id(config):
    return "-".join(f"{k}={v}" for k, v in config.items()) or "defaults"


def _ids(configs):
    return [_id(c) for c in configs]


def _module(seed=0, input_size=5, hidden_size=7, **config):
    torch.manual_seed(seed)
    return torch.nn.GRU(input_size, hidden_size, **config).eval()


def _inputs(module, rng, steps=6, batch=4):
    shape = (batch, steps, module.input_size) if module.batch_first else (steps, batch, module.input_size)
    x = rng.standard_normal(shape).astype(np.float32)
    directions = 2 if module.bidirectional else 1
    h0 = rng.standard_normal((module.num_layers * directions, batch, module.hidden_size)).astype(np.float32)
    return x, h0


def _assert_close(actual, expected, what=""):
    expected = expected.detach().numpy() if hasattr(expected, "detach") else np.asarray(expected)
    assert np.shape(actual) == expected.shape, what
    diff = np.max(np.abs(np.asarray(actual, np.float64) - expected), initial=0.0)
    assert diff <= TOLERANCE, f"{what}: max |difference| {diff:.3g}"


def _assert_matches_module(gru, module, rng, lengths=None):
    x, h0 = _inputs(module, rng)
    with torch.no_grad():
        expected, expected_h = torch_run(torch, module, torch.from_numpy(x), torch.from_numpy(h0), lengths)
    output, h_n = gru(x, h0, lengths)
    _assert_close(output, expected, "output")
    _assert_close(h_n, expected_h, "h_n")


@pytest.mark.parametrize("config", CONFIGS, ids=_ids(CONFIGS))
def test_module_matches_torch(rng, config):
    module = _module(**config)
    gru = fastgru.GRU.from_torch(module)
    assert isinstance(gru, fastgru.GRU)
    assert (gru.spec.num_layers, gru.spec.bidirectional, gru.spec.bias, gru.spec.batch_first) == (
        module.num_layers, module.bidirectional, module.bias, module.batch_first)
    _assert_matches_module(gru, module, rng)
    _assert_matches_module(gru, module, rng, lengths=np.array([6, 1, 3, 5]))


@pytest.mark.parametrize("config", CONFIGS, ids=_ids(CONFIGS))
def test_state_dict_infers_layers_directions_and_bias(rng, config):
    module = _module(**config)
    gru = fastgru.GRU.from_torch(module.state_dict(), batch_first=module.batch_first)
    assert gru.spec == fastgru.GRU.from_torch(module).spec
    _assert_matches_module(gru, module, rng)


def test_numpy_state_dict_and_float64(rng):
    module = _module(num_layers=2).double()
    state = {name: value.numpy() for name, value in module.state_dict().items()}
    gru = fastgru.GRU.from_torch(state)
    assert gru.spec.dtype == "float64"
    x = rng.standard_normal((5, 3, 5))
    with torch.no_grad():
        expected, _ = module(torch.from_numpy(x))
    np.testing.assert_allclose(gru(x)[0], expected.numpy(), atol=1e-12)


def test_gru_cell_imports_as_one_layer(rng):
    torch.manual_seed(1)
    cell = torch.nn.GRUCell(5, 7)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    h = torch.zeros(3, 7)
    with torch.no_grad():
        for step in x:
            h = cell(torch.from_numpy(step), h)
    for source in (cell, cell.state_dict()):
        _, h_n = fastgru.GRU.from_torch(source)(x)
        _assert_close(h_n[0], h, type(source).__name__)


class _Seq2Seq(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(3, 5)
        self.encoder = torch.nn.Module()
        self.encoder.rnn = torch.nn.GRU(5, 7, num_layers=2, bidirectional=True, batch_first=True)
        self.decoder = torch.nn.Module()
        self.decoder.rnn = torch.nn.GRU(5, 4)
        self.lstm = torch.nn.LSTM(5, 7)  # LSTM weights share the names; they must not be taken for a GRU


@pytest.mark.parametrize("prefix", ["encoder.rnn", "encoder.rnn."])
def test_prefix_picks_the_gru_inside_a_model(rng, prefix):
    model = _Seq2Seq().eval()
    for source in (model, model.state_dict()):
        gru = fastgru.GRU.from_torch(source, prefix=prefix, batch_first=True)
        _assert_matches_module(gru, model.encoder.rnn, rng)


@pytest.mark.parametrize("as_state_dict", [False, True], ids=["module", "state_dict"])
def test_ambiguous_model_error_lists_the_gru_prefixes(as_state_dict):
    model = _Seq2Seq()
    source = model.state_dict() if as_state_dict else model
    with pytest.raises(ValueError, match=r"several GRUs.*'encoder\.rnn\.'.*'decoder\.rnn\.'") as info:
        fastgru.GRU.from_torch(source)
    assert "lstm" not in str(info.value)
    with pytest.raises(ValueError, match=r"no GRU .*'nope\.?'.*GRU prefixes found.*encoder\.rnn\."):
        fastgru.GRU.from_torch(source, prefix="nope")


def test_lstm_state_dict_is_not_a_gru():
    with pytest.raises(ValueError, match="no GRU weights found"):
        fastgru.GRU.from_torch(torch.nn.LSTM(3, 4).state_dict())


def test_torch_save_file_loads_with_weights_only(rng, tmp_path):
    module = _module(num_layers=2, bidirectional=True)
    path = tmp_path / "gru.pt"
    torch.save(module.state_dict(), path)
    gru = fastgru.load(path)
    _assert_matches_module(gru, module, rng)
    checkpoint = tmp_path / "checkpoint.pth"  # a training checkpoint that nests the state dict
    torch.save({"epoch": 3, "model": {"rnn." + k: v for k, v in module.state_dict().items()}}, checkpoint)
    _assert_matches_module(fastgru.load(checkpoint, prefix="model.rnn"), module, rng)


def test_pickled_module_file_is_refused_by_weights_only(tmp_path):
    path = tmp_path / "whole_module.pt"
    torch.save(_module(), path)
    with pytest.raises(ValueError, match=rf"{path.name}.*weights_only"):
        fastgru.load(path)


def _safetensors_file(module, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("config", [dict(), dict(num_layers=2, bidirectional=True, bias=False)], ids=_id)
def test_safetensors_matches_torch(rng, tmp_path, config):
    module = _module(**config)
    gru = fastgru.load(_safetensors_file(module, tmp_path / "gru.safetensors"))
    _assert_matches_module(gru, module, rng)


def test_half_precision_safetensors_widen_exactly(tmp_path):
    from safetensors.torch import save_file

    module = _module()
    for dtype in (torch.float16, torch.bfloat16):
        path = tmp_path / f"{dtype}.safetensors"
        save_file({k: v.to(dtype) for k, v in module.state_dict().items()}, str(path))
        weights = fastgru.load(path).weights
        for name, value in module.state_dict().items():
            np.testing.assert_array_equal(weights[name], value.to(dtype).float().numpy(), err_msg=name)


def test_safetensors_loads_without_torch(rng, tmp_path):
    module = _module(num_layers=2, bidirectional=True)
    path = _safetensors_file(module, tmp_path / "gru.safetensors")
    x, h0 = _inputs(module, rng)
    with torch.no_grad():
        expected, expected_h = module(torch.from_numpy(x), torch.from_numpy(h0))
    np.savez(tmp_path / "io.npz", x=x, h0=h0, output=expected.numpy(), h_n=expected_h.numpy())
    script = textwrap.dedent(f"""
        import sys
        for name in ("torch", "safetensors", "keras", "tensorflow", "onnx"):
            sys.modules[name] = None  # any import of these now raises ImportError
        import numpy as np, fastgru
        data = np.load({str(tmp_path / 'io.npz')!r})
        output, h_n = fastgru.load({str(path)!r})(data["x"], data["h0"])
        assert np.abs(output - data["output"]).max() <= {TOLERANCE}
        assert np.abs(h_n - data["h_n"]).max() <= {TOLERANCE}
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ---------------------------------------------------------------------------------------------
# bad files and tensors: the error names the file and the tensor


def test_missing_tensor_names_file_and_tensor(tmp_path):
    from safetensors.torch import save_file

    state = _module(num_layers=2).state_dict()
    del state["weight_hh_l1"]
    path = tmp_path / "missing.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match=rf"{path.name}.*weight_hh_l1"):
        fastgru.load(path)


def test_misshaped_tensor_names_file_and_tensor(tmp_path):
    state = _module().state_dict()
    state["bias_hh_l0"] = torch.zeros(5)
    path = tmp_path / "misshaped.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"{path.name}.*'bias_hh_l0'.*shape"):
        fastgru.load(path)


@pytest.mark.parametrize("cut", [4, 40, -10], ids=["in_length", "in_header", "in_data"])
def test_truncated_safetensors_names_the_file(tmp_path, cut):
    path = _safetensors_file(_module(), tmp_path / "gru.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match=rf"{path.name}.*(truncated|not a safetensors|outside)"):
        fastgru.load(path)


def test_corrupted_and_foreign_files_name_the_file(tmp_path):
    pt = tmp_path / "garbage.pt"
    pt.write_bytes(b"\x80\x02 not really a pickle")
    with pytest.raises(ValueError, match="garbage.pt"):
        fastgru.load(pt)
    truncated = tmp_path / "truncated.pt"
    torch.save(_module().state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(ValueError, match="truncated.pt"):
        fastgru.load(truncated)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt.*unrecognised"):
        fastgru.load(text)
