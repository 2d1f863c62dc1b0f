"""WrappedGRU: a fastgru.GRU called with another framework's conventions (KerasGRU, OnnxGRU)."""

from __future__ import annotations


class WrappedGRU:
    """Holds the plain model in ``.gru``; subclasses define ``__call__`` (the framework's calling
    convention) and ``call_config`` (what fastgru's own file stores so that the wrapper comes back)."""

    def __init__(self, gru):
        self.gru = gru

    @property
    def spec(self):
        return self.gru.spec

    @property
    def weights(self) -> dict:
        return self.gru.weights

    def call_config(self) -> dict:
        raise NotImplementedError

    def save(self, path) -> None:
        """Writes fastgru's own file (`fastgru.io.native`), calling convention included."""
        from fastgru.io.native import save

        save(self, path)

    def __reduce__(self):
        # the same bytes as save() (see fastgru.GRU.__reduce__)
        from fastgru.io.native import dumps, loads

        return loads, (dumps(self),)

    # copy and deepcopy copy the wrapper's attributes (deepcopy's GRU shares its packed weights, see
    # fastgru.GRU.__deepcopy__) instead of rebuilding the model from its bytes as pickle does.
    def __copy__(self):
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo):
        import copy

        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone
