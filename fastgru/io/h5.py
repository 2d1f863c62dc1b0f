"""HDF5 through h5py, with errors that name the file: the container of Keras' weights (``.h5``,
``.weights.h5``, and the ``model.weights.h5`` inside a ``.keras`` archive)."""

from __future__ import annotations


class open_h5:
    """h5py.File whose errors name the file (a truncated or non-HDF5 file raises OSError inside h5py)."""

    def __init__(self, file, label):
        self.file, self.label = file, label

    def __enter__(self):
        import h5py

        try:
            self.handle = h5py.File(self.file, "r")
        except OSError as error:
            raise ValueError(f"{self.label}: not a readable HDF5 file ({error})") from None
        return self.handle

    def __exit__(self, *exc):
        self.handle.close()


def text(value) -> str:
    """An HDF5 string attribute (bytes or str) as str."""
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def attribute_list(group, name) -> list[str]:
    """A list attribute of strings; Keras splits long ones into name0, name1, ... (HDF5's 64 KB header
    limit)."""
    if name in group.attrs:
        return [text(n) for n in group.attrs[name]]
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values += [text(n) for n in group.attrs[f"{name}{chunk}"]]
        chunk += 1
    return values
