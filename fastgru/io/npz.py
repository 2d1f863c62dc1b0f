"""NumPy ``.npz`` archives (``np.savez`` / ``np.savez_compressed``) of GRU weights, read with numpy alone.

An archive whose arrays carry ``torch.nn.GRU``'s state-dict names (``weight_ih_l0``, ...,
``bias_hh_l1_reverse``), with or without a module prefix (``rnn.weight_ih_l0``), loads directly, as a
state dict does in `fastgru.io.torch`. So do the short names of torch's cell functions, ``w_ih``, ``w_hh``,
``b_ih``, ``b_hh`` (optionally ``_l{k}``, ``_reverse``), after a prefix that ends in a separator
(``enc_w_ih``, ``decoder.w_hh``): they mean torch's layout and gate order too.

Options:

- ``prefix="enc_"`` picks one GRU when the archive holds several (``"rnn"`` finds ``rnn.weight_ih_l0``);
- ``names={"weight_ih_l0": "Wx", "weight_hh_l0": "Wh", "bias_ih_l0": "bx", "bias_hh_l0": "bh"}`` renames
  any other names: torch's name -> the archive's (only the arrays named are read);
- ``gates={"r": ..., "z": ..., "n": ...}`` (with ``concat``, ``reset_after``, ``update``, ...) reads a
  hand-written cell's per-gate arrays through `fastgru.io.cells.read_cells` (as ``GRU.from_cells`` does);
- ``batch_first``, ``dtype``, ``initial_state`` (the name of an array holding a learned h0) as for torch.

Arrays are loaded with ``allow_pickle=False``: an archive holding a pickled object array is refused, never
unpickled. `read_npz_gru` returns a `fastgru.io.common.GRUDescription`; ``fastgru.load`` builds the GRU.
"""

from __future__ import annotations

import os
import re
import zipfile

import numpy as np

from fastgru.io.cells import read_cells
from fastgru.io.common import GRUDescription
from fastgru.io.torch import gru_candidates, initial_state_tensor, spec_from_state_dict

# torch's short names for a cell's tensors (torch.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh)), after a prefix
# that is empty or ends in a separator, so that a name merely ending in "w_ih" is not taken for one.
_SHORT_NAME = re.compile(r"^(?P<prefix>(?:.*[._/-])?)(?P<kind>[wb]_(?:ih|hh))(?P<rest>(?:_l\d+)?(?:_reverse)?)$")
_LONG_KIND = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}
_TORCH_NAME = re.compile(r"^(weight|bias)_(ih|hh)_l\d+(_reverse)?$")


def read_npz(path) -> dict[str, np.ndarray]:
    """Every array of the archive by name, loaded with ``allow_pickle=False``; errors name the file."""
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error):  # neither a zip nor a .npy: numpy's last guess, a pickle, is refused
            raise ValueError(f"{path}: not a .npz archive (not a zip of .npy arrays; fastgru reads archives with "
                             f"allow_pickle=False and never unpickles a file)") from None
        raise ValueError(f"{path}: not a readable .npz archive ({error})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise ValueError(f"{path}: not a readable .npz archive ({type(error).__name__}: {error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not a .npz archive of named arrays")
    arrays = {}
    with archive:
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except ValueError as error:
                if "allow_pickle" in str(error):
                    raise ValueError(f"{path}: array {name!r} is a pickled object array; fastgru reads .npz archives "
                                     f"with allow_pickle=False and never unpickles them: save numeric arrays only"
                                     ) from None
                raise ValueError(f"{path}: array {name!r} is not readable ({error})") from None
            except MemoryError:
                raise
            except Exception as error:  # a damaged member: zlib.error, BadZipFile (CRC), EOFError, ...
                raise ValueError(f"{path}: array {name!r} is not readable ({type(error).__name__}: {error})") from None
    return arrays


def read_npz_gru(path, prefix: str | None = None, *, names: dict | None = None, gates=None,
                 batch_first: bool = False, dtype=None, initial_state=None, **cell_options) -> GRUDescription:
    """The `GRUDescription` of a ``.npz`` archive (see the module docstring for names and options)."""
    source = os.fspath(path)
    arrays = read_npz(path)
    if gates is not None:
        if prefix is not None or names is not None:
            raise TypeError(f"{source}: prefix/names select torch-named arrays; with gates= name each gate's arrays")
        return read_cells(arrays, gates=gates, batch_first=batch_first, dtype=dtype, initial_state=initial_state,
                          source=source, **cell_options)
    if cell_options:
        raise TypeError(f"{source}: option(s) {sorted(cell_options)} apply to hand-written cells only (with gates=)")
    if names is not None:
        if prefix is not None:
            raise TypeError(f"{source}: pass prefix= or names=, not both (names= gives each array's full name)")
        state = _renamed(arrays, names, source)
    else:
        state = _long_names(arrays)
    if not gru_candidates(state):
        raise ValueError(
            f"{source}: no GRU weights in the archive: looked for torch's names ('weight_ih_l0', 'weight_hh_l0', ..., "
            f"or 'w_ih', 'w_hh', 'b_ih', 'b_hh', under an optional prefix such as 'rnn.' or 'enc_'), with "
            f"weight_hh of shape (3H, H); arrays: {_listing(arrays)}. Rename them with names={{'weight_ih_l0': "
            f"<array name>, ...}}, load a hand-written cell's per-gate arrays with gates={{'r': ..., 'z': ..., "
            f"'n': ...}} (fastgru.GRU.from_cells), or build the model from the arrays with fastgru.GRU.from_arrays "
            f"(torch's layout) or fastgru.GRU.from_cells")
    spec, weights = spec_from_state_dict(state, prefix, batch_first=batch_first, dtype=dtype, source=source)
    return GRUDescription(spec, weights, source, initial_state_tensor(arrays, initial_state, source))


def _long_names(arrays: dict) -> dict:
    """The arrays with torch's short cell names (``enc_w_ih``) spelt out (``enc_weight_ih``)."""
    state = dict(arrays)
    for name, value in arrays.items():
        match = _SHORT_NAME.match(name)
        if match:
            long_name = match["prefix"] + _LONG_KIND[match["kind"]] + match["rest"]
            if long_name not in arrays:
                del state[name]
                state[long_name] = value
    return state


def _renamed(arrays: dict, names, source: str) -> dict:
    if not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in names.items()):
        raise TypeError(f"{source}: names must map torch's names to the archive's, e.g. "
                        f"{{'weight_ih_l0': 'enc_w_ih'}}, got {names!r}")
    bad = [name for name in names if not _TORCH_NAME.match(name)]
    if bad:
        raise ValueError(f"{source}: names= keys must be torch.nn.GRU's names ('weight_ih_l0', 'weight_hh_l0', "
                         f"'bias_ih_l0', 'bias_hh_l0', '..._reverse'), got {bad}")
    missing = [theirs for theirs in names.values() if theirs not in arrays]
    if missing:
        raise ValueError(f"{source}: no array(s) {missing} in the archive; arrays: {_listing(arrays)}")
    return {ours: arrays[theirs] for ours, theirs in names.items()}


def _listing(arrays: dict) -> str:
    shown = [f"{name} {tuple(value.shape)}" for name, value in list(arrays.items())[:20]]
    return "[" + ", ".join(shown) + (", ...]" if len(arrays) > 20 else "]")
