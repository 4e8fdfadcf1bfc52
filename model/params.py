"""Estimator parameters the scikit-learn way, without importing scikit-learn.

The fitted models are pickled into every artifact, and unpickling a subclass of
``sklearn.base.BaseEstimator`` imports scikit-learn (about a second). The model classes take
their parameters from this mixin instead: ``get_params`` / ``set_params`` / ``clone`` and a
readable ``repr`` follow scikit-learn's convention (parameters stored as given by
``__init__``'s keyword arguments; fitted attributes end in ``_``).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Self

__all__ = ["Params"]


class Params:
    """``get_params``, ``set_params``, ``clone`` and ``repr`` from ``__init__``'s signature."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            name
            for name, parameter in signature.parameters.items()
            if name != "self" and parameter.kind is inspect.Parameter.KEYWORD_ONLY
        ]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        unknown = sorted(set(params) - set(self._param_names()))
        if unknown:
            raise ValueError(f"unknown parameter(s) of {type(self).__name__}: {', '.join(unknown)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def clone(self) -> Self:
        """A new, unfitted estimator with the same parameters (deep copies of them)."""
        return type(self)(**copy.deepcopy(self.get_params()))

    def __repr__(self) -> str:
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if defaults.get(name, inspect.Parameter.empty) != value
        ]
        return f"{type(self).__name__}({', '.join(changed)})"
