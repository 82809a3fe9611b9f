"""Fairness and accuracy metrics of a classifier's predictions on data (MATH §5), in JAX.

Every function takes label arrays of integer codes, shape ``[n]``:

* ``y_true`` — true classes in ``[0, num_classes)``,
* ``y_pred`` — predicted classes in ``[0, num_classes)``,
* ``a`` — group (sensitive attribute) codes in ``[0, num_groups)``,
* ``sample_weight`` — optional non-negative weights ``[n]`` (every count becomes a sum of weights),

and returns JAX arrays. Any number of groups and classes; the binary metrics take a ``positive``
class (default ``1``) and treat every other code as negative, so they also give one-vs-rest rates of
a multi-class problem. Everything is jittable and ``vmap``-able (map over a leading axis for batches).

Static sizes:
    ``num_groups`` and ``num_classes`` fix the shapes of the results, so they must be Python ints
    under ``jax.jit`` (close over them or mark them static). Left as ``None`` on concrete inputs they
    are inferred as ``max(code) + 1``; on traced inputs that raises a ``ValueError`` asking for them.

Validation:
    Shapes are checked always (a ``ValueError`` naming the argument); on concrete inputs, codes out
    of range, negative or non-finite weights also raise ``ValueError``. Under ``jit`` values cannot be
    checked: a sample whose code is out of range then gets weight zero (it is ignored).

Empty cells (a group with no members, a class absent from a group, all weights zero):
    * a per-group rate whose denominator is zero is reported as ``0`` (never NaN), like scikit-learn's
      ``zero_division=0``;
    * a gap ``max_a − min_a`` is taken over the *populated* groups only (positive denominator) and is
      ``0`` when fewer than two groups are populated — an empty cell carries no evidence of
      unfairness;
    * :func:`rms_tpr_gap` averages over the classes that have at least two populated groups
      (``0`` if there is none).

With every cell populated the values equal fairlearn's ``demographic_parity_difference``,
``equal_opportunity_difference`` and ``equalized_odds_difference`` (``agg="worst_case"``,
``method="between_groups"``) and its ``MetricFrame`` of ``true_positive_rate`` /
``false_positive_rate`` by group (tested in ``tests/test_metrics.py``).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsteer import metrics
    >>> y = jnp.array([0, 1, 1, 0, 1, 1]); yhat = jnp.array([0, 1, 0, 0, 1, 1])
    >>> a = jnp.array([0, 0, 0, 1, 1, 1])
    >>> float(metrics.equal_opportunity_difference(y, yhat, a))   # TPR 0.5 in group 0, 1.0 in group 1
    0.5
    >>> f = jax.jit(lambda y, p, a: metrics.equalized_odds_difference(y, p, a, num_groups=2))
    >>> float(f(y, yhat, a))                                      # FPR 0 in both groups
    0.5
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _validate

__all__ = [
    "accuracy",
    "confusion_matrices",
    "selection_rates",
    "demographic_parity_difference",
    "true_positive_rates",
    "false_positive_rates",
    "equal_opportunity_difference",
    "equalized_odds_difference",
    "tpr_gaps",
    "rms_tpr_gap",
]


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def _is_tracer(x) -> bool:
    return _validate.is_traced(x)


_KINDS = {"y_true": "class", "y_pred": "class", "y": "class", "a": "group"}


def _labels(x, name: str, fname: str) -> jax.Array:
    return _validate.jax_codes(x, name, _KINDS.get(name, "class"), rows_of="the other label arrays")


def _same_length(fname: str, **arrays) -> int:
    shapes = {k: v.shape for k, v in arrays.items()}
    n = {s[0] for s in shapes.values()}
    if len(n) != 1:
        desc = ", ".join(f"{k} {s}" for k, s in shapes.items())
        raise ValueError(f"{fname}: label arrays must have the same shape [n]; got {desc}.")
    return n.pop()


def _weights(sample_weight, n: int, fname: str) -> jax.Array:
    if sample_weight is None:
        return jnp.ones((n,), dtype=jnp.result_type(float))
    if _is_tracer(sample_weight):
        w = jnp.asarray(sample_weight)
        if w.shape != (n,):
            raise ValueError(f"sample_weight: expected shape ({n},) (one weight per label), got {w.shape}.")
        return w if jnp.issubdtype(w.dtype, jnp.floating) else w.astype(jnp.result_type(float))
    w = _validate.sample_weight(sample_weight, n, rows_of="the labels")
    return jnp.asarray(w, dtype=jnp.result_type(float))


def _size(size, codes, name: str, arg: str, fname: str) -> int:
    """A static number of codes: ``size`` if given, else ``max(codes) + 1`` from concrete arrays."""
    if size is None:
        if any(_is_tracer(c) for c in codes):
            raise ValueError(
                f"{fname}: {arg} must be given (a Python int) when the labels are traced, e.g. "
                f"under jax.jit: it fixes the shape of the result. Pass {arg}=... ."
            )
        sizes = [int(np.max(np.asarray(c))) + 1 for c in codes if c.shape[0] > 0]
        if not sizes:
            raise ValueError(f"{fname}: cannot infer {arg} from empty label arrays; pass {arg}.")
        return max(max(sizes), 1)
    if _is_tracer(size) or not isinstance(size, (int, np.integer)) or isinstance(size, bool):
        raise ValueError(
            f"{fname}: {arg} must be a Python int (static under jit; use static_argnames or close "
            f"over it); got {type(size).__name__}."
        )
    if int(size) < 1:
        raise ValueError(f"{fname}: {arg} must be positive; got {size}.")
    return int(size)


def _check_range(x, size: int, name: str, arg: str, fname: str) -> None:
    if not _is_tracer(x):
        _validate.jax_codes(x, name, _KINDS.get(name, "class"), size=size, size_arg=arg)


def _fairlearn_groups(a, sensitive_features, method, fname: str):
    """The group codes of a metric called in jaxsteer's form (``a``) or fairlearn's (``sensitive_features=``)."""
    if method != "between_groups":
        raise ValueError(
            f"{fname}: method={method!r} is not supported; jaxsteer computes fairlearn's default "
            "method='between_groups' (max − min over groups)."
        )
    if sensitive_features is None:
        if a is None:
            raise TypeError(f"{fname}: missing the group codes a (or fairlearn's keyword sensitive_features=).")
        return a
    if a is not None:
        raise TypeError(f"{fname}: got both group codes a and sensitive_features=; pass one of them.")
    if _is_tracer(sensitive_features) or isinstance(sensitive_features, jax.Array):
        return sensitive_features
    sf = np.asarray(sensitive_features)
    if sf.dtype.kind in "biu":
        return sf
    return _validate.labels(sf, None, "sensitive_features", sf.shape[0] if sf.ndim else -1)[0]


def _positive(positive, fname: str):
    if _is_tracer(positive):
        return positive
    p = np.asarray(positive)
    if p.ndim != 0 or not np.issubdtype(p.dtype, np.integer) or int(p) < 0:
        raise ValueError(f"{fname}: positive must be a non-negative integer class code; got {positive!r}.")
    return int(p)


def _binary_inputs(y_true, y_pred, a, num_groups, positive, sample_weight, fname: str):
    """Validated ``(y_true == positive, y_pred == positive)`` codes, groups, weights and ``m``."""
    y_pred = _labels(y_pred, "y_pred", fname)
    a = _labels(a, "a", fname)
    arrays = dict(y_pred=y_pred, a=a)
    if y_true is not None:
        y_true = _labels(y_true, "y_true", fname)
        arrays = dict(y_true=y_true, **arrays)
    n = _same_length(fname, **arrays)
    m = _size(num_groups, [a], "a", "num_groups", fname)
    _check_range(a, m, "a", "num_groups", fname)
    positive = _positive(positive, fname)
    w = _weights(sample_weight, n, fname)
    valid = y_pred >= 0  # negative codes can only reach here under jit: ignored, like the others
    if y_true is not None:
        valid = valid & (y_true >= 0)
    w = jnp.where(valid, w, 0)
    yt = None if y_true is None else (y_true == positive).astype(jnp.int32)
    yp = (y_pred == positive).astype(jnp.int32)
    return yt, yp, a, w, m


def _multi_inputs(y_true, y_pred, a, num_classes, num_groups, sample_weight, fname: str):
    y_true = _labels(y_true, "y_true", fname)
    y_pred = _labels(y_pred, "y_pred", fname)
    a = _labels(a, "a", fname)
    n = _same_length(fname, y_true=y_true, y_pred=y_pred, a=a)
    k = _size(num_classes, [y_true, y_pred], "y", "num_classes", fname)
    m = _size(num_groups, [a], "a", "num_groups", fname)
    _check_range(y_true, k, "y_true", "num_classes", fname)
    _check_range(y_pred, k, "y_pred", "num_classes", fname)
    _check_range(a, m, "a", "num_groups", fname)
    w = _weights(sample_weight, n, fname)
    return y_true, y_pred, a, w, k, m


# ---------------------------------------------------------------------------------------------
# kernels (static sizes)
# ---------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("k", "m"))
def _counts(y, p, a, w, k: int, m: int) -> jax.Array:
    """Weighted counts ``[m, k, k]``: ``Σ_n w_n 1{a_n = g, y_n = i, p_n = j}`` at ``[g, i, j]``.

    A sample with a code out of range gets weight zero (only possible under jit).
    """
    ok = (a >= 0) & (a < m) & (y >= 0) & (y < k) & (p >= 0) & (p < k)
    code = jnp.where(ok, (a * k + y) * k + p, 0)
    c = jnp.zeros((m * k * k,), w.dtype).at[code].add(jnp.where(ok, w, 0))
    return c.reshape(m, k, k)


def _gap(rates, support, axis: int = -1):
    """``max − min`` along ``axis`` over entries with ``support > 0``; 0 if fewer than two."""
    pop = support > 0
    hi = jnp.max(jnp.where(pop, rates, -jnp.inf), axis=axis)
    lo = jnp.min(jnp.where(pop, rates, jnp.inf), axis=axis)
    enough = jnp.sum(pop, axis=axis) >= 2
    return jnp.where(enough, jnp.where(enough, hi, 0) - jnp.where(enough, lo, 0), 0)


def _binary_counts(yt, yp, a, w, m):
    """``[m, 2, 2]`` counts of (truth is positive, prediction is positive) per group."""
    if yt is None:
        yt = jnp.zeros_like(yp)
    return _counts(yt, yp, a, w, 2, m)


# ---------------------------------------------------------------------------------------------
# public metrics
# ---------------------------------------------------------------------------------------------


def accuracy(y_true, y_pred, sample_weight=None) -> jax.Array:
    """(Weighted) fraction of correct predictions, ``Σ w 1{ŷ = y} / Σ w``.

    Args:
        y_true, y_pred: ``[n]`` integer class codes.
        sample_weight: optional ``[n]`` non-negative weights.

    Returns:
        Scalar; ``0`` when the total weight is zero.

    Raises:
        ValueError: shape mismatch, empty arrays, negative codes or invalid weights (concrete).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer.metrics import accuracy
        >>> float(accuracy(jnp.array([0, 1, 1, 2]), jnp.array([0, 1, 2, 2])))
        0.75
        >>> float(accuracy(jnp.array([0, 1]), jnp.array([0, 0]), sample_weight=jnp.array([3.0, 1.0])))
        0.75
    """
    fname = "accuracy"
    y_true = _labels(y_true, "y_true", fname)
    y_pred = _labels(y_pred, "y_pred", fname)
    n = _same_length(fname, y_true=y_true, y_pred=y_pred)
    if n == 0:
        raise ValueError(f"{fname}: empty label arrays.")
    w = _weights(sample_weight, n, fname)
    return _validate.safe_div(jnp.sum(jnp.where(y_true == y_pred, w, 0)), jnp.sum(w))


def confusion_matrices(
    y_true, y_pred, a, *, num_classes=None, num_groups=None, sample_weight=None, normalize=True
) -> jax.Array:
    """Per-group confusion matrices, ``[m, k, k]`` with ``[a, i, j] = P(ŷ = j | Y = i, A = a)``.

    The same convention as ``jaxsteer.ideal.bayes_rates_1d(...)["confusion"]``, so rates measured on
    data and exact rates of a model line up.

    Args:
        y_true, y_pred: ``[n]`` class codes in ``[0, num_classes)``.
        a: ``[n]`` group codes in ``[0, num_groups)``.
        num_classes, num_groups: static sizes (inferred from concrete inputs when ``None``).
        sample_weight: optional ``[n]`` non-negative weights.
        normalize: ``True`` — rows normalised to rates (an empty row ``(a, i)`` is all zeros);
            ``False`` — the (weighted) counts.

    Returns:
        ``[num_groups, num_classes, num_classes]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer.metrics import confusion_matrices
        >>> C = confusion_matrices(jnp.array([0, 1, 1]), jnp.array([0, 1, 0]), jnp.array([0, 0, 1]))
        >>> C.shape, C.tolist()      # group 1 has no class-0 row: all zeros
        ((2, 2, 2), [[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 0.0]]])
    """
    y_true, y_pred, a, w, k, m = _multi_inputs(
        y_true, y_pred, a, num_classes, num_groups, sample_weight, "confusion_matrices"
    )
    c = _counts(y_true, y_pred, a, w, k, m)
    if not normalize:
        return c
    return _validate.safe_div(c, jnp.sum(c, axis=-1, keepdims=True))


@_validate.keyword_only(2)
def selection_rates(y_pred, a, *, num_groups=None, positive=1, sample_weight=None) -> jax.Array:
    """``P(ŷ = positive | A = a)`` for every group, ``[num_groups]``.

    Args:
        y_pred: ``[n]`` predicted codes (any code other than ``positive`` counts as negative).
        a: ``[n]`` group codes in ``[0, num_groups)``.
        num_groups: static number of groups (inferred from a concrete ``a`` when ``None``).
        positive: the positive class code.
        sample_weight: optional ``[n]`` non-negative weights.

    Returns:
        ``[num_groups]``; an empty group gets ``0``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer.metrics import selection_rates
        >>> selection_rates(jnp.array([1, 0, 1, 1]), jnp.array([0, 0, 1, 1]), num_groups=2).tolist()
        [0.5, 1.0]
    """
    _, yp, a, w, m = _binary_inputs(None, y_pred, a, num_groups, positive, sample_weight,
                                    "selection_rates")
    c = _binary_counts(None, yp, a, w, m)[:, 0, :]  # [m, pred]
    return _validate.safe_div(c[:, 1], jnp.sum(c, axis=-1))


def demographic_parity_difference(
    y_pred, a=None, *, num_groups=None, positive=1, sample_weight=None, sensitive_features=None,
    method: str = "between_groups",
) -> jax.Array:
    """ΔDP: ``max_a − min_a`` of ``P(ŷ = positive | A = a)`` over the non-empty groups.

    Args:
        y_pred: ``[n]`` predicted codes.
        a: ``[n]`` group codes in ``[0, num_groups)``.
        num_groups: static number of groups (required under jit).
        positive: the positive class code.
        sample_weight: optional ``[n]`` non-negative weights.
        sensitive_features, method: fairlearn's form,
            ``demographic_parity_difference(y_true, y_pred, sensitive_features=groups)``: the two
            positional arguments are then ``y_true`` (unused by ΔDP) and ``y_pred``, and
            ``sensitive_features`` may hold any labels (encoded in sorted order when concrete).
            Only fairlearn's default ``method="between_groups"`` is computed.

    Returns:
        Scalar in ``[0, 1]``; ``0`` when fewer than two groups are populated.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer.metrics import demographic_parity_difference
        >>> float(demographic_parity_difference(jnp.array([1, 0, 1, 1]), jnp.array([0, 0, 1, 1])))
        0.5
        >>> y_pred = [1, 0, 1, 1]                     # fairlearn's call form, any group labels
        >>> float(demographic_parity_difference(None, y_pred, sensitive_features=["F", "F", "M", "M"]))
        0.5
    """
    fname = "demographic_parity_difference"
    if sensitive_features is not None:  # fairlearn: (y_true, y_pred, *, sensitive_features)
        if a is None:
            raise TypeError(f"{fname}: with sensitive_features=, pass (y_true, y_pred) as fairlearn does.")
        y_pred, a = a, None
    a = _fairlearn_groups(a, sensitive_features, method, fname)
    _, yp, a, w, m = _binary_inputs(None, y_pred, a, num_groups, positive, sample_weight, fname)
    c = _binary_counts(None, yp, a, w, m)[:, 0, :]
    n = jnp.sum(c, axis=-1)
    return _gap(_validate.safe_div(c[:, 1], n), n)


def _tpr_fpr(y_true, y_pred, a, num_groups, positive, sample_weight, fname):
    """``(tpr [m], positives [m], fpr [m], negatives [m])`` of the binarised problem."""
    yt, yp, a, w, m = _binary_inputs(y_true, y_pred, a, num_groups, positive, sample_weight, fname)
    c = _binary_counts(yt, yp, a, w, m)  # [m, truth, pred]
    pos = jnp.sum(c[:, 1, :], axis=-1)
    neg = jnp.sum(c[:, 0, :], axis=-1)
    return _validate.safe_div(c[:, 1, 1], pos), pos, _validate.safe_div(c[:, 0, 1], neg), neg


@_validate.keyword_only(3)
def true_positive_rates(
    y_true, y_pred, a, *, num_groups=None, positive=1, sample_weight=None
) -> jax.Array:
    """``TPR_a = P(ŷ = positive | Y = positive, A = a)`` for every group, ``[num_groups]``.

    With multi-class labels this is the one-vs-rest TPR (recall) of class ``positive``.

    Args:
        y_true, y_pred: ``[n]`` class codes (codes other than ``positive`` are negatives).
        a: ``[n]`` group codes in ``[0, num_groups)``.
        num_groups: static number of groups (inferred from a concrete ``a`` when ``None``).
        positive: the positive class code.
        sample_weight: optional ``[n]`` non-negative weights.

    Returns:
        ``[num_groups]``; a group without positives gets ``0``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer.metrics import true_positive_rates
        >>> true_positive_rates(jnp.array([1, 1, 1, 0]), jnp.array([1, 0, 1, 1]),
        ...                     jnp.array([0, 0, 1, 1]), num_groups=2).tolist()
        [0.5, 1.0]
    """
    return _tpr_fpr(y_true, y_pred, a, num_groups, positive, sample_weight, "true_positive_rates")[0]


@_validate.keyword_only(3)
def false_positive_rates(
    y_true, y_pred, a, *, num_groups=None, positive=1, sample_weight=None
) -> jax.Array:
    """``FPR_a = P(ŷ = positive | Y ≠ positive, A = a)`` for every group, ``[num_groups]``.

    Args:
        y_true, y_pred: ``[n]`` class codes (codes other than ``positive`` are negatives).
        a: ``[n]`` group codes in ``[0, num_groups)``.
        num_groups: static number of groups (inferred from a concrete ``a`` when ``None``).
        positive: the positive class code.
        sample_weight: optional ``[n]`` non-negative weights.

    Returns:
        ``[num_groups]``; a group without negatives gets ``0``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer.metrics import false_positive_rates
        >>> false_positive_rates(jnp.array([0, 0, 1, 0]), jnp.array([1, 0, 1, 0]),
        ...                      jnp.array([0, 0, 1, 1]), num_groups=2).tolist()
        [0.5, 0.0]
    """
    return _tpr_fpr(y_true, y_pred, a, num_groups, positive, sample_weight, "false_positive_rates")[2]


def equal_opportunity_difference(
    y_true, y_pred, a=None, *, num_groups=None, positive=1, sample_weight=None, sensitive_features=None,
    method: str = "between_groups",
) -> jax.Array:
    """ΔEO: ``max_a − min_a`` of ``TPR_a`` over the groups that have positives.

    Args:
        y_true, y_pred: ``[n]`` class codes.
        a: ``[n]`` group codes in ``[0, num_groups)``.
        num_groups: static number of groups (required under jit).
        positive: the positive class code.
        sample_weight: optional ``[n]`` non-negative weights.
        sensitive_features, method: fairlearn's form, ``equal_opportunity_difference(y_true, y_pred,
            sensitive_features=groups)`` (any labels, encoded in sorted order when concrete); only
            ``method="between_groups"``.

    Returns:
        Scalar; ``0`` when fewer than two groups have positives.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer.metrics import equal_opportunity_difference
        >>> float(equal_opportunity_difference(jnp.array([1, 1, 1, 0]), jnp.array([1, 0, 1, 1]),
        ...                                    jnp.array([0, 0, 1, 1])))    # TPRs 0.5 and 1
        0.5
    """
    fname = "equal_opportunity_difference"
    a = _fairlearn_groups(a, sensitive_features, method, fname)
    tpr, pos, _, _ = _tpr_fpr(y_true, y_pred, a, num_groups, positive, sample_weight, fname)
    return _gap(tpr, pos)


def equalized_odds_difference(
    y_true, y_pred, a=None, *, num_groups=None, positive=1, sample_weight=None, sensitive_features=None,
    method: str = "between_groups", agg: str = "worst_case",
) -> jax.Array:
    """Equalized-odds difference: ``max(TPR gap, FPR gap)`` (fairlearn's ``agg="worst_case"``).

    Each gap is ``max_a − min_a`` over the groups with a positive denominator (positives for TPR,
    negatives for FPR), ``0`` when fewer than two such groups.

    Args:
        y_true, y_pred: ``[n]`` class codes.
        a: ``[n]`` group codes in ``[0, num_groups)``.
        num_groups: static number of groups (required under jit).
        positive: the positive class code.
        sample_weight: optional ``[n]`` non-negative weights.
        sensitive_features, method: fairlearn's form, ``equalized_odds_difference(y_true, y_pred,
            sensitive_features=groups)`` (any labels, encoded in sorted order when concrete); only
            ``method="between_groups"``.
        agg: ``"worst_case"`` (the larger gap) or ``"mean"`` (their mean), as in fairlearn.

    Returns:
        Scalar in ``[0, 1]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer.metrics import equalized_odds_difference
        >>> y, y_pred, a = jnp.array([1, 0, 1, 0]), jnp.array([1, 1, 1, 0]), jnp.array([0, 0, 1, 1])
        >>> float(equalized_odds_difference(y, y_pred, a))                # TPR gap 0, FPR gap 1
        1.0
        >>> float(equalized_odds_difference(y, y_pred, a, agg="mean"))    # their mean
        0.5
    """
    fname = "equalized_odds_difference"
    a = _fairlearn_groups(a, sensitive_features, method, fname)
    if agg not in ("worst_case", "mean"):
        raise ValueError(f"{fname}: agg must be 'worst_case' or 'mean' (as in fairlearn), got {agg!r}.")
    tpr, pos, fpr, neg = _tpr_fpr(y_true, y_pred, a, num_groups, positive, sample_weight, fname)
    gaps = _gap(tpr, pos), _gap(fpr, neg)
    return jnp.maximum(*gaps) if agg == "worst_case" else 0.5 * (gaps[0] + gaps[1])


def _class_tprs(y_true, y_pred, a, num_classes, num_groups, sample_weight, fname):
    y_true, y_pred, a, w, k, m = _multi_inputs(y_true, y_pred, a, num_classes, num_groups,
                                               sample_weight, fname)
    c = _counts(y_true, y_pred, a, w, k, m)  # [m, k, k]
    support = jnp.sum(c, axis=-1)  # [m, k]
    tpr = _validate.safe_div(jnp.diagonal(c, axis1=-2, axis2=-1), support)  # [m, k]
    return tpr, support


@_validate.keyword_only(3)
def tpr_gaps(y_true, y_pred, a, *, num_classes=None, num_groups=None, sample_weight=None) -> jax.Array:
    """Per-class TPR gaps ``[num_classes]``: ``max_a − min_a`` of ``P(ŷ = i | Y = i, A = a)``.

    For two groups ``gap_i = |TPR_i,0 − TPR_i,1|``; for more groups the max − min over groups
    (the worst pair). Only groups in which class ``i`` occurs enter ``gap_i``; with fewer than two,
    ``gap_i = 0``.

    Args:
        y_true, y_pred: ``[n]`` class codes in ``[0, num_classes)``.
        a: ``[n]`` group codes in ``[0, num_groups)``.
        num_classes, num_groups: static sizes (required under jit).
        sample_weight: optional ``[n]`` non-negative weights.

    Returns:
        ``[num_classes]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer.metrics import tpr_gaps
        >>> tpr_gaps(jnp.array([0, 1, 2, 0, 1, 2]), jnp.array([0, 1, 1, 0, 1, 2]),
        ...          jnp.array([0, 0, 0, 1, 1, 1]), num_classes=3, num_groups=2).tolist()
        [0.0, 0.0, 1.0]
    """
    tpr, support = _class_tprs(y_true, y_pred, a, num_classes, num_groups, sample_weight, "tpr_gaps")
    return _gap(tpr, support, axis=0)


@_validate.keyword_only(3)
def rms_tpr_gap(y_true, y_pred, a, *, num_classes=None, num_groups=None, sample_weight=None) -> jax.Array:
    """RMS TPR gap ``sqrt(mean_i gap_i²)`` of the per-class gaps of :func:`tpr_gaps`.

    With two groups this is the ``GAP^RMS = √(mean_i (TPR_i,a − TPR_i,a')²)`` of the Bios / INLP /
    LEACE literature; with more groups ``gap_i`` is the max − min over groups (a worst-pair
    generalisation). The mean runs over the classes that occur in at least two groups (a class
    absent from the data, or from all groups but one, carries no evidence and would only dilute the
    mean); ``0`` when there is no such class.

    Args:
        y_true, y_pred: ``[n]`` class codes in ``[0, num_classes)``.
        a: ``[n]`` group codes in ``[0, num_groups)``.
        num_classes, num_groups: static sizes (required under jit).
        sample_weight: optional ``[n]`` non-negative weights.

    Returns:
        Scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer.metrics import rms_tpr_gap
        >>> gap = rms_tpr_gap(jnp.array([0, 1, 2, 0, 1, 2]), jnp.array([0, 1, 1, 0, 1, 2]),
        ...                   jnp.array([0, 0, 0, 1, 1, 1]), num_classes=3, num_groups=2)
        >>> round(float(gap), 4)                          # sqrt((0 + 0 + 1) / 3)
        0.5774
    """
    tpr, support = _class_tprs(y_true, y_pred, a, num_classes, num_groups, sample_weight,
                               "rms_tpr_gap")
    gaps = _gap(tpr, support, axis=0)
    used = jnp.sum(support > 0, axis=0) >= 2
    return jnp.sqrt(_validate.safe_div(jnp.sum(jnp.where(used, gaps**2, 0)), jnp.sum(used)))
