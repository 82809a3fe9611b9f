"""The input checks shared by every public entry point: one message for one mistake.

Every message starts with the argument's name, says what was expected and what was found (the first
offending entry), and ends with the fix. Checks run only on concrete values: under ``jit``/``vmap``
nothing is known about traced values, and the callers document what happens to bad values there.

* :func:`is_traced`, :func:`is_concrete`: whether any argument is a JAX tracer.
* :func:`codes`: integer codes ``0..size−1`` (class or group ids) as numpy, for eager code paths.
* :func:`jax_codes`: the same checks for code arrays that may be traced (``jaxsteer.nn``, maps,
  metrics); returns an int32 JAX array.
* :func:`sample_weight`: one non-negative finite weight per row.
* :func:`real_array`: numbers, not strings or objects.
* :func:`finite_rows`: a 2-D array without NaN/inf (strictly positive for log-normal families).
* :func:`labels`: arbitrary sortable labels encoded to codes in sorted order (estimators).
* :func:`cell_names` and :func:`cell`: class×group cells named by the user's own labels inside
  estimators (``class '>50K', group 'Female'``) and by their codes elsewhere (``class 1, group 0``).
* :func:`safe_div`: ``num / den`` where ``den > 0``, else 0, with finite gradients.
* :func:`renamed`, :func:`keyword_only`: deprecation paths for a renamed argument and for
  arguments that became keyword-only.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CodeDtypeError",
    "is_traced",
    "is_concrete",
    "codes",
    "jax_codes",
    "sample_weight",
    "real_array",
    "finite_rows",
    "labels",
    "cell_names",
    "cell",
    "cells",
    "safe_div",
    "renamed",
    "keyword_only",
]


class CodeDtypeError(ValueError, TypeError):
    """Codes of a non-integer dtype that cannot be checked or converted (a ``ValueError`` and, for
    callers that caught the earlier ``TypeError`` of :mod:`jaxsteer.metrics`, a ``TypeError``)."""


def is_traced(*xs) -> bool:
    """Whether any of ``xs`` (``None`` ignored) is a JAX tracer."""
    return any(isinstance(x, jax.core.Tracer) for x in xs if x is not None)


def is_concrete(*xs) -> bool:
    """Whether none of ``xs`` is a JAX tracer (``None`` counts as concrete)."""
    return not is_traced(*xs)


def safe_div(num, den):
    """``num / den`` where ``den > 0`` and 0 elsewhere; the gradient is finite everywhere."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


# -- integer codes -----------------------------------------------------------------------------------


def _hint(name: str) -> str:
    return f"Map labels to codes 0, 1, … with `uniq, {name} = np.unique(labels, return_inverse=True)`."


def _check_values(arr: np.ndarray, name: str, what: str, size, size_arg) -> np.ndarray:
    """Integer, non-negative and (with ``size``) in-range checks of a concrete 1-D array."""
    hint = _hint(name)
    kind = arr.dtype.kind
    if kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}: {what} codes must be integers; entry {i} is {arr[i].item()!r}. {hint}")
    elif kind not in "biu":
        raise CodeDtypeError(f"{name}: {what} codes must be integers, got dtype {arr.dtype}. {hint}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        i = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(f"{name}: {what} codes must be non-negative; entry {i} is {arr[i]}. {hint}")
    if size is not None and arr.size and arr.max() >= size:
        i = int(np.flatnonzero(arr >= size)[0])
        if size_arg is None:
            raise ValueError(
                f"{name}: {what} code {arr[i]} (entry {i}) is out of range; there are {size} {what}s, so codes "
                f"must lie in 0..{size - 1}."
            )
        raise ValueError(
            f"{name}: {what} code {arr[i]} (entry {i}) is out of range for {size_arg}={size}; codes must lie "
            f"in 0..{size - 1}. Increase {size_arg} or check the codes."
        )
    return arr


def _check_length(shape, name: str, what: str, n, rows_of: str) -> None:
    if len(shape) != 1:
        raise ValueError(f"{name}: expected a 1-D array of {what} codes, one per row of {rows_of}; got shape {shape}.")
    if n is not None and shape[0] != n:
        raise ValueError(f"{name}: has length {shape[0]} but {rows_of} has {n} rows; they must match.")


def codes(v, name: str, what: str, *, n: int | None = None, size: int | None = None,
          size_arg: str | None = None, rows_of: str = "X") -> np.ndarray:
    """Concrete integer codes as int64 numpy.

    Args:
        v: the codes (bool, integer, or floats holding whole numbers).
        name: the argument's name (``"y"``, ``"a"``); what: ``"class"`` or ``"group"``.
        n: the required length (rows of ``rows_of``), or None.
        size, size_arg: codes must be below ``size``, the value of the argument ``size_arg``.
    """
    arr = np.asarray(v)
    _check_length(arr.shape, name, what, n, rows_of)
    return _check_values(arr, name, what, size, size_arg)


def jax_codes(v, name: str, what: str, *, n: int | None = None, size: int | None = None,
              size_arg: str | None = None, rows_of: str = "X", ndim: int | None = 1) -> jax.Array:
    """Codes that may be traced, as an int32 JAX array; concrete ones are checked as in :func:`codes`.

    ``ndim=None`` accepts any shape (per-position group ids). Traced codes must have an integer or
    bool dtype; their values are not checked.
    """
    arr = v if is_traced(v) or isinstance(v, jax.Array) else np.asarray(v)
    if ndim == 1:
        _check_length(arr.shape, name, what, n, rows_of)
    elif ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array of {what} codes, got shape {arr.shape}.")
    if is_traced(arr):
        if not (jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == jnp.bool_):
            raise CodeDtypeError(
                f"{name}: {what} codes must be integers, got dtype {arr.dtype} (traced, so the values "
                f"cannot be checked). Convert with .astype(int) before the jitted call."
            )
        return arr.astype(jnp.int32)
    checked = _check_values(np.asarray(arr).reshape(-1), name, what, size, size_arg)
    return jnp.asarray(checked.reshape(arr.shape), dtype=jnp.int32)


# -- weights and features ----------------------------------------------------------------------------


def sample_weight(w, n: int, *, name: str = "sample_weight", rows_of: str = "X") -> np.ndarray:
    """Concrete weights as float64 numpy: shape ``(n,)``, real, finite, non-negative."""
    arr = np.asarray(w)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},) (one weight per row of {rows_of}), got {arr.shape}.")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected real numbers, got dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not np.all(finite):
        i = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name}: weights must be finite; entry {i} is {arr[i].item()!r}. Drop the row or fix its weight.")
    if np.any(arr < 0):
        i = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(
            f"{name}: weights must be non-negative; entry {i} is {arr[i].item()!r}. Drop the row or set its weight to 0."
        )
    return arr


def real_array(x, name: str):
    """``x`` unchanged if it is a JAX array or holds real numbers (bool, integer, float); an object
    array of numbers as float64 numpy; anything else (strings, dates, ``None``) is a ``ValueError``
    naming the argument and the first entry that is not a number."""
    if isinstance(x, (jax.Array, jax.core.Tracer)):
        return x
    arr = np.asarray(x)
    if arr.dtype.kind in "biuf":
        return x
    if arr.dtype.kind == "O":
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError):
            pass
    flat = arr.reshape(-1)
    bad = next((i for i, v in enumerate(flat.tolist()) if not _is_number(v)), 0)
    index = ", ".join(str(int(i)) for i in np.unravel_index(bad, arr.shape)) if arr.ndim else ""
    value = flat[bad].item() if hasattr(flat[bad], "item") else flat[bad] if arr.size else None
    where = f"; {name}[{index}] is {value!r}" if arr.size else ""
    raise ValueError(
        f"{name}: expected real numbers, got dtype {arr.dtype}{where}. Convert numbers stored as text with "
        f"{name}.astype(float); encode categories as numbers first (e.g. one-hot), or pass labels as y or a."
    )


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return v is not None


def finite_rows(X, name: str = "X", *, positive: bool = False) -> None:
    """A concrete 2-D array without NaN/inf; with ``positive`` (log-normal families) every entry > 0."""
    x = np.asarray(X)
    finite = np.isfinite(x)
    if not np.all(finite):
        r, c = (int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"{name}: row {r}, column {c} is {x[r, c].item()!r}; drop or impute rows with NaN or infinite values."
        )
    if positive and not np.all(x > 0):
        r, c = (int(i) for i in np.argwhere(x <= 0)[0])
        raise ValueError(
            f"{name}: lognormal=True fits a Gaussian to log {name}, so {name} must be strictly positive; "
            f"{name}[{r}, {c}] = {x[r, c].item()!r}. Use lognormal=False, or shift/clip the data to be positive."
        )


# -- labels ------------------------------------------------------------------------------------------


def labels(values, known: np.ndarray | None, name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode sortable labels to int32 codes in sorted order: ``(codes [n], categories)``.

    With ``known`` categories (after ``fit``), a value not among them raises a ``ValueError`` naming
    the argument, the value and the known categories.
    """
    if is_traced(values):
        raise ValueError(f"{name}: label encoding needs concrete values; call outside jit.")
    v = np.asarray(values)
    if v.ndim == 2 and 1 in v.shape:
        v = v.reshape(-1)
    if v.ndim != 1 or v.shape[0] != n:
        raise ValueError(
            f"{name}: expected a 1-D array of length {n} (one entry per row of X), got shape {np.shape(values)}."
        )
    if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
        i = int(np.flatnonzero(~np.isfinite(v))[0])
        raise ValueError(f"{name}: entry {i} is {v[i].item()!r}; drop rows with missing labels or fill them in.")
    if v.dtype.kind == "O":
        missing = [i for i, x in enumerate(v.tolist()) if x is None or (isinstance(x, float) and x != x)]
        if missing:
            raise ValueError(
                f"{name}: entry {missing[0]} is missing ({v[missing[0]]!r}); drop rows with missing labels or fill them in."
            )
    if known is None:
        try:
            cats, codes_ = np.unique(v, return_inverse=True)
        except TypeError as err:
            kinds = sorted({type(x).__name__ for x in v.tolist()})
            raise ValueError(
                f"{name}: labels must be mutually sortable, got a mix of {', '.join(kinds)}; convert them to one type "
                "(e.g. all strings)."
            ) from err
        return codes_.astype(np.int32).reshape(-1), cats
    try:
        pos = np.clip(np.searchsorted(known, v), 0, len(known) - 1)
        unseen = known[pos] != v
    except TypeError:  # not comparable with the fitted categories at all
        pos, unseen = np.zeros(v.shape, int), np.ones(v.shape, bool)
    if np.any(unseen):
        i = int(np.argmax(unseen))
        raise ValueError(
            f"{name}: value {v[i].item()!r} (entry {i}) was not seen in fit (known: {known.tolist()}); "
            "refit with every category or drop those rows."
        )
    return pos.astype(np.int32), known


# -- class×group cells -------------------------------------------------------------------------------

_CELL_NAMES: contextvars.ContextVar = contextvars.ContextVar("jaxsteer_cell_names", default=None)


@contextlib.contextmanager
def cell_names(classes, groups):
    """Name class×group cells by these labels (``classes[i]``, ``groups[g]``) in messages raised
    inside the block: estimators wrap their calls into code-based functions with it."""
    token = _CELL_NAMES.set((list(np.asarray(classes).tolist()), list(np.asarray(groups).tolist())))
    try:
        yield
    finally:
        _CELL_NAMES.reset(token)


def cell(i: int, g: int) -> str:
    """``"class 1, group 0"``, or with :func:`cell_names` ``"class '>50K', group 'Female'"``."""
    names = _CELL_NAMES.get()
    if names is None:
        return f"class {i}, group {g}"
    classes, groups = names
    c = repr(classes[i]) if i < len(classes) else str(i)
    a = repr(groups[g]) if g < len(groups) else str(g)
    return f"class {c}, group {a}"


def cells(bad: np.ndarray, text) -> str:
    """The first cell where ``bad [k, m]`` holds, described by ``text(i, g)``, and how many more."""
    i, g = (int(t) for t in np.argwhere(bad)[0])
    more = int(bad.sum()) - 1
    tail = f" (and {more} more cell{'s' if more > 1 else ''})" if more else ""
    return f"{cell(i, g)} {text(i, g)}{tail}"


# -- renamed arguments -------------------------------------------------------------------------------


def renamed(new, old, *, new_name: str, old_name: str, where: str, why: str = ""):
    """The value of an argument renamed from ``old_name`` to ``new_name``: the old keyword still
    works with a ``DeprecationWarning``; passing both is an error."""
    if old is None:
        return new
    if new is not None:
        raise TypeError(f"{where}: got both {new_name}= and its deprecated alias {old_name}=; pass only {new_name}=.")
    warnings.warn(
        f"{where}: the argument {old_name}= is renamed {new_name}={' (' + why + ')' if why else ''}; "
        f"{old_name}= will be removed in a future release.",
        DeprecationWarning,
        stacklevel=3,
    )
    return old


def keyword_only(n_positional: int):
    """Decorator: the parameters after the first ``n_positional`` are keyword-only; passing them by
    position still works, with a ``DeprecationWarning`` naming them."""

    def wrap(fn):
        names = list(inspect.signature(fn).parameters)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if len(args) > n_positional:
                extra = names[n_positional:len(args)]
                clash = [k for k in extra if k in kwargs]
                if clash:
                    raise TypeError(f"{fn.__name__}: got multiple values for {', '.join(clash)}.")
                warnings.warn(
                    f"{fn.__name__}: pass {', '.join(f'{k}=' for k in extra)} by keyword; positional use is "
                    "deprecated and will be removed in a future release.",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs.update(zip(extra, args[n_positional:]))
                args = args[:n_positional]
            return fn(*args, **kwargs)

        return wrapper

    return wrap
