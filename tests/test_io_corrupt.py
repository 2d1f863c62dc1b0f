"""Truncated and corrupted weight files of every format fastgru.load reads: each damaged file
either still loads into a working model (a flipped byte inside a weight is a different, valid weight) or
raises a ValueError whose message names the file. Never a crash, a hang, or another exception type.

The files are written here by the real writers (torch.save, safetensors, Keras, onnx, GRU.save), then
damaged deterministically: cut at several lengths, header zeroed, single bytes flipped across the file,
noise appended, replaced by another format's bytes."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch needs no TensorFlow

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastgru  # noqa: E402
from conftest import random_weights  # noqa: E402
from fastgru.spec import GRUSpec  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

SPEC = GRUSpec(5, 6, 2, True, dtype="float32")
X = np.random.default_rng(1).standard_normal((4, 2, 5)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the clean files


def _write_native(path):
    fastgru.GRU.from_spec(SPEC, random_weights(SPEC, np.random.default_rng(0))).save(path)


def _torch_module():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch, torch.nn.GRU(5, 6, num_layers=2, bidirectional=True)


def _write_torch_zip(path):
    torch, module = _torch_module()
    torch.save(module.state_dict(), path)


def _write_torch_legacy(path):
    torch, module = _torch_module()
    torch.save(module.state_dict(), path, _use_new_zipfile_serialization=False)


def _write_safetensors(path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    _, module = _torch_module()
    safetensors_torch.save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))


def _write_npz(path):
    _, module = _torch_module()
    np.savez(path, **{name: value.numpy() for name, value in module.state_dict().items()})


def _write_npz_compressed(path):
    _, module = _torch_module()
    np.savez_compressed(path, **{name: value.numpy() for name, value in module.state_dict().items()})


def _keras_model():
    """Two stacked Bidirectional GRUs: fastgru imports them as one 2-layer bidirectional GRU."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((None, 5)),
        keras.layers.Bidirectional(keras.layers.GRU(6, return_sequences=True), name="bi1"),
        keras.layers.Bidirectional(keras.layers.GRU(6, return_sequences=True), name="bi2"),
    ])


def _write_keras(path):
    _keras_model().save(path)


def _write_keras_weights(path):
    model = _keras_model()
    model.save_weights(path)


def _write_onnx(path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    arrays = {"W": rng.uniform(-1, 1, (2, 18, 5)), "R": rng.uniform(-1, 1, (2, 18, 6)), "B": rng.uniform(-1, 1, (2, 36))}
    node = helper.make_node("GRU", ["X", "W", "R", "B"], ["Y", "Y_h"], name="gru", hidden_size=6,
                            direction="bidirectional", linear_before_reset=1)
    graph = helper.make_graph(
        [node], "gru", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("Y", "Y_h")],
        [numpy_helper.from_array(value.astype(np.float32), name) for name, value in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.save(model, str(path))


# name: (file name, writer, options for fastgru.load)
FORMATS = {
    "native": ("model.fastgru", _write_native, {}),
    "torch_zip": ("model.pt", _write_torch_zip, {}),
    "torch_legacy": ("legacy.pt", _write_torch_legacy, {}),
    "safetensors": ("model.safetensors", _write_safetensors, {}),
    "keras": ("model.keras", _write_keras, {}),
    "keras_weights_h5": ("model.weights.h5", _write_keras_weights, {"layer": "bi1"}),
    "keras_legacy_h5": ("legacy.h5", _write_keras, {}),
    "onnx": ("model.onnx", _write_onnx, {}),
    "npz": ("model.npz", _write_npz, {}),
    "npz_compressed": ("compressed.npz", _write_npz_compressed, {}),
}


@pytest.fixture(scope="module")
def clean_files(tmp_path_factory):
    """Each format's clean file, written once: {format: bytes}."""
    directory = tmp_path_factory.mktemp("clean")
    files = {}
    for name, (file_name, writer, _) in FORMATS.items():
        path = directory / file_name
        try:
            writer(path)
        except pytest.skip.Exception:
            continue
        files[name] = path.read_bytes()
    return files


# ---------------------------------------------------------------------------------------------
# the damage


def _flip(position):
    def damage(data):
        at = min(int(position * len(data)), len(data) - 1)
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    return damage


DAMAGES = {
    "empty": lambda data: b"",
    "one_byte": lambda data: data[:1],
    "eight_bytes": lambda data: data[:8],
    "cut_at_64": lambda data: data[:64],
    "cut_at_10pc": lambda data: data[: len(data) // 10],
    "cut_at_half": lambda data: data[: len(data) // 2],
    "cut_at_90pc": lambda data: data[: len(data) * 9 // 10],
    "last_byte_missing": lambda data: data[:-1],
    "header_zeroed": lambda data: bytes(64) + data[64:],
    "first_kb_zeroed": lambda data: bytes(min(1024, len(data))) + data[1024:],
    "all_zeros": lambda data: bytes(len(data)),
    "noise_after_magic": lambda data: data[:8] + np.random.default_rng(8).integers(
        0, 256, len(data) - 8, dtype=np.uint8).tobytes(),
    "noise_appended": lambda data: data + b"\x00garbage\xff" * 10,
    **{f"flip_at_{p:02d}pc": _flip(p / 100) for p in (0, 1, 3, 7, 12, 20, 30, 45, 60, 75, 90, 99)},
    "text": lambda data: b"this is not a model\n" * 10,
}

def _cases():
    for format_name in FORMATS:
        for damage in DAMAGES:
            yield pytest.param(format_name, damage, id=f"{format_name}-{damage}")


@pytest.mark.parametrize("format_name, damage", list(_cases()))
def test_damaged_file_loads_or_raises_value_error_naming_it(clean_files, tmp_path, format_name, damage):
    if format_name not in clean_files:
        pytest.skip(f"cannot write {format_name} files here")
    file_name, _, options = FORMATS[format_name]
    path = tmp_path / file_name
    path.write_bytes(DAMAGES[damage](clean_files[format_name]))
    try:
        model = fastgru.load(path, **options)
    except ValueError as error:
        assert path.name in str(error), f"the message does not name the file: {error}"
        return
    # it loaded: the damage hit a weight (or bytes nobody reads); the model must still run
    gru = getattr(model, "gru", model)
    x = X if not gru.batch_first else X.swapaxes(0, 1)
    with np.errstate(all="ignore"):
        output, h_n = gru(x)
    assert output.shape[-1] == gru.spec.num_directions * gru.spec.hidden_size


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_clean_file_loads(clean_files, tmp_path, format_name):
    if format_name not in clean_files:
        pytest.skip(f"cannot write {format_name} files here")
    file_name, _, options = FORMATS[format_name]
    path = tmp_path / file_name
    path.write_bytes(clean_files[format_name])
    gru = getattr(fastgru.load(path, **options), "gru", None) or fastgru.load(path, **options)
    assert gru.hidden_size == 6


@pytest.mark.parametrize("file_name", ["model.pt", "model.safetensors", "model.keras", "model.h5", "model.onnx",
                                       "model.fastgru", "model"])
def test_missing_file_raises_naming_it(tmp_path, file_name):
    path = tmp_path / file_name
    with pytest.raises(OSError) as info:
        fastgru.load(path)
    assert file_name in str(info.value)


def test_directory_raises_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match=tmp_path.name):
        fastgru.load(tmp_path)


@pytest.mark.parametrize("source, target", [("onnx", "model.pt"), ("native", "model.onnx"), ("torch_zip", "model.keras"),
                                            ("keras", "model.safetensors"), ("safetensors", "model.h5"),
                                            ("npz", "model.pt"), ("native", "model.npz")])
def test_a_file_with_another_formats_extension_loads_by_content(clean_files, tmp_path, source, target):
    """fastgru.load goes by content first: a misnamed file still loads, or fails naming the file."""
    if source not in clean_files:
        pytest.skip(f"cannot write {source} files here")
    path = tmp_path / target
    path.write_bytes(clean_files[source])
    try:
        model = fastgru.load(path, **FORMATS[source][2])
    except ValueError as error:
        assert path.name in str(error)
        return
    assert getattr(model, "gru", model).hidden_size == 6


# ---------------------------------------------------------------------------------------------
# the known bugs, each built on purpose rather than found by a flipped byte


def _raises_value_error_naming(path, **options):
    with pytest.raises(ValueError) as info:
        fastgru.load(path, **options)
    assert path.name in str(info.value), f"the message does not name the file: {info.value}"


def test_zip_with_a_member_name_that_is_not_utf8(tmp_path):
    import zipfile

    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:  # a non-ASCII name sets the UTF-8 flag
        archive.writestr("\u00e9/data.pkl", b"\x80\x02}q\x00.")
    data = path.read_bytes().replace("\u00e9".encode(), b"\xc3\x28")  # no longer valid UTF-8
    path.write_bytes(data)
    _raises_value_error_naming(path)


@pytest.fixture
def legacy_h5(clean_files, tmp_path):
    if "keras_legacy_h5" not in clean_files:
        pytest.skip("cannot write Keras files here")
    path = tmp_path / "legacy.h5"
    path.write_bytes(clean_files["keras_legacy_h5"])
    return path


def test_legacy_h5_with_a_config_that_is_not_json(legacy_h5):
    import h5py

    with h5py.File(legacy_h5, "r+") as store:
        store.attrs["model_config"] = '{"class_name": "Sequential", "config": {'
    _raises_value_error_naming(legacy_h5)


def test_legacy_h5_with_a_layer_config_missing_its_class(legacy_h5):
    import h5py

    with h5py.File(legacy_h5, "r+") as store:
        store.attrs["model_config"] = '{"class_name": "Sequential", "config": {"layers": [{"config": {}}]}}'
    _raises_value_error_naming(legacy_h5)


def test_onnx_string_attribute_that_is_not_utf8(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    path = tmp_path / "model.onnx"
    _write_onnx(path)
    model = onnx.load(str(path))
    for attribute in model.graph.node[0].attribute:
        if attribute.name == "direction":
            attribute.s = b"bidirectio\x91al"
    onnx.save(model, str(path))
    _raises_value_error_naming(path)
