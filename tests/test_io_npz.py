""".npz archives (np.savez, np.savez_compressed) through fastgru.load: torch's names load directly (with a
module prefix, or torch's short cell names w_ih/w_hh/b_ih/b_hh), names= renames any others, gates= reads
a hand-written cell, initial_state= a learned h0; the errors name the file and point to the constructors."""

from __future__ import annotations

import numpy as np
import pytest

import fastgru
from fastgru.io.load import sniff

X = np.random.default_rng(4).standard_normal((6, 3, 3)).astype(np.float32)


@pytest.fixture
def torch_gru(torch):
    torch.manual_seed(1)
    return torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)


def _arrays(module, rename=lambda name: name):
    return {rename(name): value.detach().numpy() for name, value in module.state_dict().items()}


def _expected(torch, module):
    with torch.no_grad():
        return [t.numpy() for t in module(torch.from_numpy(X))]


def _assert_matches(gru, expected):
    for actual, wanted in zip(gru(X), expected):
        np.testing.assert_allclose(actual, wanted, rtol=0, atol=1e-5)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["savez", "savez_compressed"])
@pytest.mark.parametrize("rename", ["torch", "module_prefix", "short_names"])
def test_torch_names_load_directly(torch, torch_gru, tmp_path, save, rename):
    renames = {
        "torch": lambda name: name,
        "module_prefix": lambda name: "encoder.rnn." + name,
        "short_names": lambda name: "enc_" + name.replace("weight_", "w_").replace("bias_", "b_"),
    }
    path = tmp_path / "gru.npz"
    save(path, **_arrays(torch_gru, renames[rename]))
    assert sniff(path) == "npz"
    gru = fastgru.load(path)
    assert gru.spec.num_layers == 2 and gru.spec.bidirectional
    _assert_matches(gru, _expected(torch, torch_gru))


def test_prefix_picks_one_gru_of_several(torch, tmp_path):
    torch.manual_seed(2)
    encoder, decoder = torch.nn.GRU(3, 4), torch.nn.GRU(3, 5)
    arrays = {**_arrays(encoder, lambda n: "enc_" + n.replace("weight_", "w_").replace("bias_", "b_")),
              **_arrays(decoder, lambda n: "dec." + n)}
    np.savez(tmp_path / "both.npz", **arrays)
    several = r"both.npz: several GRUs found, pass prefix= one of \[('enc_', 'dec.'|'dec.', 'enc_')\]"
    with pytest.raises(ValueError, match=several):
        fastgru.load(tmp_path / "both.npz")
    _assert_matches(fastgru.load(tmp_path / "both.npz", prefix="enc_"), _expected(torch, encoder))
    _assert_matches(fastgru.load(tmp_path / "both.npz", prefix="dec"), _expected(torch, decoder))


def test_names_rename_any_other_layout(torch, tmp_path):
    torch.manual_seed(3)
    module = torch.nn.GRU(3, 4)
    theirs = {"weight_ih_l0": "Wx", "weight_hh_l0": "Wh", "bias_ih_l0": "bx", "bias_hh_l0": "bh"}
    np.savez(tmp_path / "odd.npz", **{theirs[name]: value for name, value in _arrays(module).items()}, step=np.int64(9))
    with pytest.raises(ValueError) as info:
        fastgru.load(tmp_path / "odd.npz")
    message = str(info.value)
    for hint in ("odd.npz", "no GRU weights", "Wx (12, 3)", "names={'weight_ih_l0'", "GRU.from_arrays",
                 "GRU.from_cells", "gates="):
        assert hint in message, (hint, message)
    _assert_matches(fastgru.load(tmp_path / "odd.npz", names=theirs), _expected(torch, module))
    with pytest.raises(ValueError, match=r"odd.npz: no array\(s\) \['W_x'\] in the archive; arrays: \[Wx \(12, 3\)"):
        fastgru.load(tmp_path / "odd.npz", names={**theirs, "weight_ih_l0": "W_x"})
    with pytest.raises(ValueError, match=r"odd.npz: names= keys must be torch.nn.GRU's names.*\['w_ih'\]"):
        fastgru.load(tmp_path / "odd.npz", names={"w_ih": "Wx"})
    with pytest.raises(TypeError, match=r"pass prefix= or names=, not both"):
        fastgru.load(tmp_path / "odd.npz", names=theirs, prefix="x")
    with pytest.raises(TypeError, match=r"names must map torch's names to the archive's"):
        fastgru.load(tmp_path / "odd.npz", names=["Wx"])


def test_a_name_that_only_ends_like_a_short_name_is_not_one(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "x.npz", new_ih=rng.standard_normal((12, 3)), new_hh=rng.standard_normal((12, 4)))
    with pytest.raises(ValueError, match="no GRU weights"):
        fastgru.load(tmp_path / "x.npz")


def test_gates_load_a_hand_written_cell(torch, tmp_path):
    rng = np.random.default_rng(5)
    arrays = {f"{gate}_gate.weight": rng.standard_normal((4, 7)) * 0.5 for gate in "rzn"}
    arrays.update({f"{gate}_gate.bias": rng.standard_normal(4) * 0.5 for gate in "rzn"})
    arrays["h0"] = rng.uniform(-1, 1, (1, 1, 4))
    np.savez(tmp_path / "cell.npz", **arrays)
    options = dict(gates={gate: f"{gate}_gate" for gate in "rzn"}, concat="hx", reset_after=False,
                   update="z_takes_candidate", initial_state="h0")
    gru = fastgru.load(tmp_path / "cell.npz", **options)
    expected = fastgru.GRU.from_cells(arrays, **options)
    for actual, wanted in zip(gru(X), expected(X)):
        np.testing.assert_array_equal(actual, wanted)
    np.testing.assert_array_equal(gru.initial_state, arrays["h0"][:, 0])
    with pytest.raises(TypeError, match=r"option\(s\) \['concat'\] apply to hand-written cells only"):
        fastgru.load(tmp_path / "cell.npz", concat="hx")


def test_initial_state_by_name(torch, torch_gru, tmp_path):
    h0 = np.random.default_rng(6).uniform(-1, 1, (4, 1, 4)).astype(np.float32)
    np.savez(tmp_path / "gru.npz", **_arrays(torch_gru), h0=h0)
    assert fastgru.load(tmp_path / "gru.npz").initial_state is None
    gru = fastgru.load(tmp_path / "gru.npz", initial_state="h0")
    with torch.no_grad():
        expected = [t.numpy() for t in torch_gru(torch.from_numpy(X), torch.from_numpy(h0).expand(-1, 3, -1).contiguous())]
    _assert_matches(gru, expected)


def test_a_pickled_object_array_is_refused_not_unpickled(torch_gru, tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, **_arrays(torch_gru), config=np.array({"hidden": 4}, dtype=object))
    with pytest.raises(ValueError, match=r"pickled.npz: array 'config' is a pickled object array; fastgru reads "
                                         r"\.npz archives with allow_pickle=False"):
        fastgru.load(path)


def test_missing_and_misshaped_arrays_name_the_file_and_the_tensor(torch_gru, tmp_path):
    arrays = _arrays(torch_gru)
    del arrays["bias_hh_l1_reverse"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(ValueError, match=r"missing.npz: missing tensor\(s\) \['bias_hh_l1_reverse'\]"):
        fastgru.load(tmp_path / "missing.npz")
    arrays = _arrays(torch_gru)
    arrays["weight_ih_l1"] = arrays["weight_ih_l1"][:, :5]
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(ValueError, match=r"shape.npz: tensor 'weight_ih_l1' has shape \(12, 5\), expected \(12, 8\)"):
        fastgru.load(tmp_path / "shape.npz")


def test_files_that_are_not_npz_archives(tmp_path):
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    with pytest.raises(ValueError, match=r"single.npz: a single .npy array, not a .npz archive"):
        fastgru.load(tmp_path / "single.npz")
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(ValueError, match=r"empty.npz: no GRU weights in the archive"):
        fastgru.load(tmp_path / "empty.npz")


def test_a_misnamed_archive_loads_by_content(torch, torch_gru, tmp_path):
    np.savez(tmp_path / "weights.npz", **_arrays(torch_gru))
    misnamed = tmp_path / "weights.bin"
    misnamed.write_bytes((tmp_path / "weights.npz").read_bytes())
    assert sniff(misnamed) == "npz"
    _assert_matches(fastgru.load(misnamed), _expected(torch, torch_gru))
