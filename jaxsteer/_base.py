"""Scikit-learn-style plumbing shared by :class:`~jaxsteer.Steerer` and the baselines.

No dependency on scikit-learn: ``get_params`` / ``set_params`` read the constructor's signature,
fitted attributes end in ``_``, and using an unfitted estimator raises :class:`NotFittedError`.
Labels and groups may be any sortable values (ints, strings); they are encoded to codes
``0..k−1`` / ``0..m−1`` in sorted order (``classes_``, ``groups_``).

Estimators work in float64 whatever JAX's global ``jax_enable_x64`` flag says: the public methods
named in :data:`FLOAT64_METHODS` run inside ``jax.enable_x64(True)``. Fitted attributes hold float64
arrays; ``transform`` returns numpy float64 for numpy input and the input's dtype for JAX input.
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _validate

__all__ = ["NotFittedError", "BaseSteerer", "encode", "as_matrix", "like_input", "float64", "FLOAT64_METHODS"]

#: The estimator methods that :class:`BaseSteerer` subclasses run with float64 enabled.
FLOAT64_METHODS = (
    "fit", "partial_fit", "transform", "fit_transform", "inverse_transform", "sample_weight", "report", "with_map",
)


def float64(method):
    """Run ``method`` with float64 enabled (``jax.enable_x64(True)``), whatever the global flag says.

    Covariances of standardised tabular data have eigenvalues near 1e-4, below what float32 Cholesky
    factors and Newton steps resolve; estimators therefore always estimate and solve in float64.
    """
    if getattr(method, "_float64", False):
        return method

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return method(*args, **kwargs)

    wrapper._float64 = True
    return wrapper


class NotFittedError(ValueError, AttributeError):
    """Raised when a steerer is used before ``fit`` (a ``ValueError`` and an ``AttributeError``,
    as in scikit-learn)."""


def as_matrix(X, name: str = "X", d: int | None = None) -> jax.Array:
    """``X`` as a 2-D floating JAX array, with shape and finiteness checked (eagerly)."""
    if isinstance(X, jax.core.Tracer):
        arr = X
    else:
        arr = jnp.asarray(np.asarray(_validate.real_array(X, name)) if not isinstance(X, jax.Array) else X)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [n_samples, n_features], got shape {arr.shape}.")
    if d is not None and arr.shape[1] != d:
        raise ValueError(
            f"{name}: has {arr.shape[1]} features but the steerer was fitted with {d}; pass data with "
            f"the same columns as in fit."
        )
    if _validate.is_concrete(arr):
        _validate.finite_rows(arr, name)
    return arr


def encode(values, known: np.ndarray | None, name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode labels to int32 codes in sorted order: ``(codes [n], categories)``; with ``known``
    categories (after ``fit``) an unseen value raises a ``ValueError`` naming the argument."""
    return _validate.labels(values, known, name, n)


def like_input(out: jax.Array, X):
    """Return numpy for numpy (or list) input, JAX for JAX input (in the input's floating dtype)."""
    if isinstance(X, jax.Array):
        return out.astype(X.dtype) if jnp.issubdtype(X.dtype, jnp.floating) else out
    return np.asarray(out)


class BaseSteerer:
    """``get_params`` / ``set_params`` / ``repr`` from the constructor, fitted-state checks; the
    methods in :data:`FLOAT64_METHODS` of every subclass run in float64."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in FLOAT64_METHODS:
            method = cls.__dict__.get(name)
            if callable(method):
                setattr(cls, name, float64(method))

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters as a dict (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor parameters; unknown names raise ``ValueError``. Returns ``self``."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{key}: not a parameter of {type(self).__name__}; valid parameters: {valid}.")
            setattr(self, key, value)
        self._validate_params()
        return self

    def _validate_params(self) -> None:
        """Check option values (subclasses); raise ValueError naming the parameter."""

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        parts = []
        for name in self._param_names():
            default = sig.parameters[name].default
            value = getattr(self, name)
            if default is inspect.Parameter.empty or not _same(value, default):
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _check_fitted(self, attr: str = "n_features_in_") -> None:
        if not hasattr(self, attr):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(X, y, a) before using it."
            )


def _same(a, b) -> bool:
    try:
        return bool(a == b) if not isinstance(a, (np.ndarray, jax.Array)) else False
    except Exception:  # noqa: BLE001 - comparisons of exotic values
        return a is b
