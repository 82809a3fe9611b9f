"""Estimating a class×group :class:`GaussianFamily` from labelled data ``(X, y, a)``.

The estimator is built on mergeable sufficient statistics, so that data can arrive in batches
(streaming) or be split across devices and hosts (sharding)::

    stats = SuffStats.zeros(k, m, d)
    for X, y, a in batches:                 # any batch sizes, any order
        stats = update(stats, X, y, a)      # jittable
    fam = to_family(stats)                  # Ledoit–Wolf shrinkage by default

    fam = fit_family(X, y, a)               # the same, in one shot, with input validation

Per class×group cell ``(i, a)`` a :class:`SuffStats` holds the total sample weight ``W``, the
weighted mean ``μ``, the centred scatter ``S = Σ w (x − μ)(x − μ)ᵀ`` (the "M2" of Welford's
algorithm), and the two scalar/vector moments that the Ledoit–Wolf shrinkage intensity needs:
``third = Σ w ‖x − μ‖² (x − μ)`` (a ``d``-vector) and ``fourth = Σ w ‖x − μ‖⁴``. All of them are
*centred* at the cell mean and combined with the pairwise (Chan–Golub–LeVeque / West / Pébay)
update, so no raw sums of powers ever appear and large offsets in ``X`` cost no precision.

Merging two parts ``A``, ``B`` with ``W = W_A + W_B``, ``Δ = μ_B − μ_A``: the merged mean is
``μ = μ_A + (W_B/W) Δ``, and each part is re-centred at ``μ`` by ``δ = μ − μ_part``
(``Σ w u = 0`` about its own mean) with

    S'      = S + W δδᵀ
    third'  = third − 2 S δ − tr(S) δ − W ‖δ‖² δ
    fourth' = fourth − 4 δ·third + 4 δᵀSδ + 2 tr(S) ‖δ‖² + W ‖δ‖⁴

before the two re-centred parts are added. ``merge`` is therefore exact in exact arithmetic,
commutative and associative, and numerically stable in floating point.

Weights are *frequency* weights: a weight-3 row counts as three identical rows, so a weighted fit
equals the unweighted fit on rows repeated by integer weights (covariance ``S / (W − ddof)``, as
``np.cov(..., fweights=w)``). ``n_rows`` counts the rows with positive weight and is only used to
detect cells too small to estimate a covariance.

**Ledoit–Wolf and streaming.** Because ``third`` and ``fourth`` are merged exactly, the
Ledoit–Wolf intensity is available on the streaming path too: ``to_family(stats)`` after any
sequence of ``update``/``merge`` gives the same intensity and covariance as the one-shot fit (and as
scikit-learn's ``sklearn.covariance.ledoit_wolf`` on each cell's rows) up to rounding.

Class labels and group memberships are integer codes ``0..k−1`` and ``0..m−1``; map arbitrary labels
with ``np.unique``::

    classes, y = np.unique(labels, return_inverse=True)
    groups, a = np.unique(group_names, return_inverse=True)
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _linalg, _validate
from jaxsteer.family import GaussianFamily

__all__ = [
    "SuffStats",
    "update",
    "merge",
    "from_data",
    "ledoit_wolf_intensity",
    "to_family",
    "fit_family",
]

_HI = jax.lax.Precision.HIGHEST


class SuffStats(NamedTuple):
    """Mergeable, centred sufficient statistics of ``X`` per class×group cell (a pytree).

    Fields (``k`` classes, ``m`` groups, ``d`` features):
        count: ``[k, m]`` total sample weight ``W = Σ w`` of the cell.
        mean: ``[k, m, d]`` weighted mean ``μ = Σ w x / W`` (zero for an empty cell).
        scatter: ``[k, m, d, d]`` weighted centred scatter ``S = Σ w (x − μ)(x − μ)ᵀ`` (M2).
        n_rows: ``[k, m]`` integer number of rows with positive weight (the unweighted row count
            when no weights are used).
        third: ``[k, m, d]`` ``Σ w ‖x − μ‖² (x − μ)``; needed only to merge ``fourth``.
        fourth: ``[k, m]`` ``Σ w ‖x − μ‖⁴``; the fourth-moment term of the Ledoit–Wolf intensity.

    Build with :meth:`zeros`, :func:`from_data` or :func:`update`, combine with :func:`merge`, and
    turn into a family with :func:`to_family`.

    Example:
        >>> from jaxsteer.estimate import SuffStats
        >>> stats = SuffStats.zeros(2, 3, 4)
        >>> stats.scatter.shape
        (2, 3, 4, 4)
    """

    count: jax.Array
    mean: jax.Array
    scatter: jax.Array
    n_rows: jax.Array
    third: jax.Array
    fourth: jax.Array

    @classmethod
    def zeros(cls, num_classes: int, num_groups: int, d: int, dtype=None) -> "SuffStats":
        """Empty statistics for ``num_classes`` classes, ``num_groups`` groups and ``d`` features.

        ``dtype`` is the floating dtype of the statistics (default: JAX's default float, float64
        when x64 is enabled); every :func:`update` computes in this dtype.

        Example:
            >>> import jax.numpy as jnp
            >>> from jaxsteer.estimate import SuffStats
            >>> SuffStats.zeros(2, 2, 3, dtype=jnp.float32).mean.shape
            (2, 2, 3)
        """
        dtype = jnp.zeros((), dtype).dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"dtype: statistics need a floating dtype, got {dtype}.")
        k, m = int(num_classes), int(num_groups)
        z = lambda *s: jnp.zeros((k, m) + s, dtype)  # noqa: E731
        return cls(
            count=z(),
            mean=z(d),
            scatter=z(d, d),
            n_rows=jnp.zeros((k, m), dtype=int),
            third=z(d),
            fourth=z(),
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(k, m, d)``."""
        return tuple(self.mean.shape[-3:])


# -- validation -----------------------------------------------------------------------------------


def _as_X(X, dtype=None) -> jax.Array:
    X = jnp.asarray(_validate.real_array(X, "X"))
    if X.ndim != 2:
        raise ValueError(
            f"X: expected a 2-D array of shape [n, d] (rows × features), got shape {X.shape}. "
            "Reshape a single feature with X[:, None]."
        )
    if X.shape[1] == 0:
        raise ValueError(f"X: needs at least one feature column, got shape {X.shape}.")
    if dtype is None:
        dtype = X.dtype if jnp.issubdtype(X.dtype, jnp.floating) else jnp.zeros((), None).dtype
    return X.astype(dtype)


def _parse_shrinkage(shrinkage):
    """``None`` | ``"ledoit_wolf"`` | array-like of intensities in [0, 1] (scalar or per cell)."""
    if shrinkage is None:
        return None
    if isinstance(shrinkage, str):
        if shrinkage.lower().replace("-", "_") in ("ledoit_wolf", "lw"):
            return "ledoit_wolf"
        raise ValueError(
            f"shrinkage: unknown method {shrinkage!r}; use 'ledoit_wolf', a float in [0, 1], or None."
        )
    if isinstance(shrinkage, bool):
        raise ValueError("shrinkage: expected 'ledoit_wolf', a float in [0, 1], or None; got a bool.")
    try:
        s = jnp.asarray(shrinkage)
    except TypeError as err:
        raise ValueError(
            f"shrinkage: expected 'ledoit_wolf', a float in [0, 1], or None; got {shrinkage!r}."
        ) from err
    if not (jnp.issubdtype(s.dtype, jnp.floating) or jnp.issubdtype(s.dtype, jnp.integer)):
        raise ValueError(f"shrinkage: expected 'ledoit_wolf', a float in [0, 1], or None; got {shrinkage!r}.")
    if _validate.is_concrete(s):
        sn = np.asarray(s)
        if not np.all(np.isfinite(sn)) or np.any(sn < 0) or np.any(sn > 1):
            raise ValueError(
                f"shrinkage: a shrinkage intensity must lie in [0, 1] (0 = sample covariance, 1 = "
                f"(tr Σ / d)·I); got {shrinkage!r}."
            )
    return s


# -- statistics -----------------------------------------------------------------------------------


#: Largest ``n·k·m·d`` (elements of the spread rows) for which a batch's scatter matrices are one
#: matrix product; above it, one product per cell (``lax.map``) keeps the memory at ``O(n·d)``.
BLOCK_SCATTER_MAX = 1 << 22


@functools.partial(jax.jit, static_argnums=(4, 5))
def _batch_stats(X, y, a, w, k: int, m: int) -> SuffStats:
    """Statistics of one batch, centred at the batch's per-cell means (no validation)."""
    n, d = X.shape
    dtype = X.dtype
    y = jnp.asarray(y).astype(jnp.int32)
    a = jnp.asarray(a).astype(jnp.int32)
    w = jnp.ones((n,), dtype) if w is None else jnp.asarray(w).astype(dtype)
    valid = (y >= 0) & (y < k) & (a >= 0) & (a < m)
    cell = jnp.where(valid, y * m + a, 0)
    onehot = (cell[:, None] == jnp.arange(k * m)[None, :]) & valid[:, None]  # [n, C]
    ow = onehot.astype(dtype) * w[:, None]
    count = jnp.sum(ow, axis=0)  # [C]
    n_rows = jnp.sum(onehot & (w > 0)[:, None], axis=0).astype(jnp.zeros((), int).dtype)
    mean = _validate.safe_div(jnp.einsum("nc,nd->cd", ow, X, precision=_HI), count[:, None])
    # Corrected two-pass: re-centre once at the residual mean, so the centring error is O(eps²).
    u = X - mean[cell]
    mean = mean + _validate.safe_div(jnp.einsum("nc,nd->cd", ow, u, precision=_HI), count[:, None])
    u = X - mean[cell]
    if n * k * m * d <= BLOCK_SCATTER_MAX:
        # Every cell at once, as one product: the rows spread into per-cell column blocks [n, C·d]
        # (each row is non-zero in its own cell's block only) times u.
        spread = (ow[:, :, None] * u[:, None, :]).reshape(n, k * m * d)
        scatter = jnp.einsum("nc,nj->cj", spread, u, precision=_HI).reshape(k * m, d, d)
    else:
        # One cell at a time (lax.map, not a Python loop): memory O(n·d) instead of O(n·k·m·d).
        scatter = jax.lax.map(lambda col: jnp.einsum("n,ni,nj->ij", col, u, u, precision=_HI), ow.T)
    sq = jnp.sum(u * u, axis=-1)
    third = jnp.einsum("nc,nd->cd", ow, sq[:, None] * u, precision=_HI)
    fourth = jnp.einsum("nc,n->c", ow, sq * sq, precision=_HI)
    r = lambda x: x.reshape((k, m) + x.shape[1:])  # noqa: E731
    return SuffStats(
        count=r(count),
        mean=r(mean),
        scatter=_linalg.sym(r(scatter)),
        n_rows=r(n_rows),
        third=r(third),
        fourth=r(fourth),
    )


def _recentre(s: SuffStats, delta: jax.Array):
    """Scatter, third and fourth of part ``s`` about ``μ_s + δ`` (``δ`` of shape ``[k, m, d]``)."""
    W = s.count
    Sd = jnp.einsum("...ij,...j->...i", s.scatter, delta, precision=_HI)
    trS = jnp.trace(s.scatter, axis1=-2, axis2=-1)
    dd = jnp.sum(delta * delta, axis=-1)
    scatter = s.scatter + W[..., None, None] * delta[..., :, None] * delta[..., None, :]
    third = s.third - 2.0 * Sd - (trS + W * dd)[..., None] * delta
    fourth = (
        s.fourth
        - 4.0 * jnp.sum(delta * s.third, axis=-1)
        + 4.0 * jnp.sum(delta * Sd, axis=-1)
        + 2.0 * trS * dd
        + W * dd * dd
    )
    return scatter, third, fourth


@jax.jit
def merge(s1: SuffStats, s2: SuffStats) -> SuffStats:
    """Statistics of the union of two data sets (pairwise Chan/West/Pébay update).

    Commutative and associative up to rounding, so batches may be merged in any order or tree,
    e.g. across devices after ``jax.lax.all_gather``. Shapes ``[k, m, ...]`` of both must match
    (leading batch axes broadcast).

    Example:
        >>> import numpy as np
        >>> from jaxsteer.estimate import SuffStats, from_data, merge, to_family, update
        >>> rng = np.random.default_rng(0)
        >>> X, y, a = rng.normal(size=(200, 3)), rng.integers(0, 2, 200), rng.integers(0, 2, 200)
        >>> s = merge(from_data(X[:100], y[:100], a[:100], 2, 2),
        ...           from_data(X[100:], y[100:], a[100:], 2, 2))
        >>> whole = from_data(X, y, a, 2, 2)
        >>> bool(np.allclose(s.scatter, whole.scatter, atol=1e-4)), s.count.tolist() == whole.count.tolist()
        (True, True)
    """
    W = s1.count + s2.count
    diff = s2.mean - s1.mean
    f2 = _validate.safe_div(s2.count, W)[..., None]
    f1 = _validate.safe_div(s1.count, W)[..., None]
    mean = s1.mean + f2 * diff
    sc1, t1, q1 = _recentre(s1, f2 * diff)
    sc2, t2, q2 = _recentre(s2, -f1 * diff)
    return SuffStats(
        count=W,
        mean=mean,
        scatter=_linalg.sym(sc1 + sc2),
        n_rows=s1.n_rows + s2.n_rows,
        third=t1 + t2,
        fourth=q1 + q2,
    )


def update(stats: SuffStats, X, y, a, sample_weight=None) -> SuffStats:
    """Add one batch of rows to ``stats``.

    Args:
        stats: current statistics, fields ``[k, m, ...]``.
        X: ``[n, d]`` features (cast to the statistics' dtype). For a log-normal model pass
            ``log X``.
        y: ``[n]`` integer class codes in ``0..k−1``.
        a: ``[n]`` integer group codes in ``0..m−1``.
        sample_weight: optional ``[n]`` non-negative frequency weights (default 1).

    Returns:
        ``merge(stats, from_data(X, y, a, k, m, sample_weight))``.

    Jittable (``jax.jit(update)``); no Python loop over cells. On concrete inputs the codes,
    finiteness of ``X`` and the weights are validated (``ValueError``); under ``jit`` nothing is
    checked, rows with out-of-range codes are silently ignored and NaNs propagate.

    Example:
        >>> import numpy as np
        >>> from jaxsteer.estimate import SuffStats, from_data, merge, to_family, update
        >>> rng = np.random.default_rng(0)
        >>> X, y, a = rng.normal(size=(200, 3)), rng.integers(0, 2, 200), rng.integers(0, 2, 200)
        >>> stats = SuffStats.zeros(2, 2, X.shape[1])
        >>> for Xb, yb, ab in zip(np.array_split(X, 5), np.array_split(y, 5), np.array_split(a, 5)):
        ...     stats = update(stats, Xb, yb, ab)
        >>> int(stats.n_rows.sum()), stats.mean.shape
        (200, (2, 2, 3))
    """
    k, m, d = stats.mean.shape[-3:]
    X = _as_X(X, stats.mean.dtype)
    if X.shape[1] != d:
        raise ValueError(f"X: has {X.shape[1]} features but stats were built for d={d}.")
    if _validate.is_concrete(X, y, a, sample_weight):
        n = X.shape[0]
        _validate.finite_rows(X)
        y = _validate.codes(y, "y", "class", n=n, size=k, size_arg="num_classes")
        a = _validate.codes(a, "a", "group", n=n, size=m, size_arg="num_groups")
        if sample_weight is not None:
            sample_weight = _validate.sample_weight(sample_weight, n)
    return merge(stats, _batch_stats(X, y, a, sample_weight, k, m))


def from_data(X, y, a, num_classes: int | None = None, num_groups: int | None = None, sample_weight=None, *,
              k: int | None = None, m: int | None = None) -> SuffStats:
    """Statistics of one data set: ``update(SuffStats.zeros(num_classes, num_groups, d), X, y, a, sample_weight)``.

    Args:
        X: ``[n, d]`` features; y: ``[n]`` class codes ``0..num_classes−1``; a: ``[n]`` group codes
        ``0..num_groups−1``; num_classes, num_groups: numbers of classes and groups (static, required);
        sample_weight: ``[n]`` or None. k, m: deprecated aliases of num_classes, num_groups.

    Returns:
        :class:`SuffStats` with fields ``[k, m, ...]`` in ``X``'s floating dtype.

    Example:
        >>> import numpy as np
        >>> from jaxsteer.estimate import SuffStats, from_data, merge, to_family, update
        >>> rng = np.random.default_rng(0)
        >>> X, y, a = rng.normal(size=(200, 3)), rng.integers(0, 2, 200), rng.integers(0, 2, 200)
        >>> stats = from_data(X, y, a, num_classes=2, num_groups=3)   # group 2 is empty: its count is 0
        >>> stats.count[:, 2].tolist()
        [0.0, 0.0]
        >>> fam = to_family(from_data(X, y, a, 2, 2), shrinkage=None)
        >>> fam.covs.shape
        (2, 2, 3, 3)
    """
    num_classes = _validate.renamed(num_classes, k, new_name="num_classes", old_name="k", where="from_data",
                                    why="the names used throughout jaxsteer")
    num_groups = _validate.renamed(num_groups, m, new_name="num_groups", old_name="m", where="from_data",
                                   why="the names used throughout jaxsteer")
    if num_classes is None or num_groups is None:
        raise TypeError("from_data: pass num_classes and num_groups (they fix the shapes of the statistics).")
    X = _as_X(X)
    return update(SuffStats.zeros(num_classes, num_groups, X.shape[1], X.dtype), X, y, a, sample_weight)


# -- statistics → family --------------------------------------------------------------------------


@jax.jit
def ledoit_wolf_intensity(stats: SuffStats) -> jax.Array:
    """Ledoit–Wolf optimal shrinkage intensity towards ``(tr Σ / d)·I`` per cell, ``[k, m]``.

    Follows scikit-learn's ``ledoit_wolf_shrinkage(X_cell)`` (``assume_centered=False``): with the
    maximum-likelihood covariance ``Σ = S / W``, ``μ = tr Σ / d``,

        β = (fourth / W − ‖Σ‖²_F) / (d W),   δ = ‖Σ − μ I‖²_F / d,   intensity = min(β, δ) / δ,

    and ``0`` for ``d = 1``, empty or constant cells. Works on streamed/merged statistics (the
    fourth-moment term is merged exactly). Jittable.

    Example:
        >>> import numpy as np
        >>> from jaxsteer.estimate import SuffStats, from_data, merge, to_family, update
        >>> rng = np.random.default_rng(0)
        >>> X, y, a = rng.normal(size=(200, 3)), rng.integers(0, 2, 200), rng.integers(0, 2, 200)
        >>> from jaxsteer.estimate import ledoit_wolf_intensity
        >>> s = ledoit_wolf_intensity(from_data(X, y, a, 2, 2))   # one intensity per cell
        >>> s.shape, bool(((s >= 0) & (s <= 1)).all())
        ((2, 2), True)
    """
    d = stats.mean.shape[-1]
    W = stats.count
    if d == 1:
        return jnp.zeros_like(W)
    sig = _validate.safe_div(stats.scatter, W[..., None, None])
    tr = jnp.trace(sig, axis1=-2, axis2=-1)
    fro2 = jnp.sum(sig * sig, axis=(-2, -1))
    beta = _validate.safe_div(_validate.safe_div(stats.fourth, W) - fro2, d * W)
    delta = (fro2 - tr * tr / d) / d
    beta = jnp.minimum(beta, delta)
    return jnp.clip(_validate.safe_div(beta, delta), 0.0, 1.0)


def _to_family(stats: SuffStats, shrink, lognormal: bool, ddof, who: str) -> GaussianFamily:
    k, m, d = stats.mean.shape[-3:]
    dtype = stats.mean.dtype
    if stats.count.ndim != 2:
        raise ValueError(f"stats: expected unbatched statistics with count [k, m], got {stats.count.shape}.")
    W = stats.count
    cov = stats.scatter / (W - ddof)[..., None, None]
    if shrink is None:
        s = jnp.zeros_like(W)
    elif isinstance(shrink, str):
        s = ledoit_wolf_intensity(stats)
    else:
        s = jnp.broadcast_to(jnp.asarray(shrink, dtype), W.shape)
    if _validate.is_concrete(*stats, s, ddof):
        nr = np.asarray(stats.n_rows)
        if np.any(nr < 2):
            raise ValueError(
                f"{who}: "
                + _validate.cells(nr < 2, lambda i, g: f"has {nr[i, g]} row{'' if nr[i, g] == 1 else 's'}")
                + "; every class×group cell needs at least 2 rows (with positive weight) to estimate a "
                "covariance. Collect more data, merge rare classes/groups, or drop the empty cell "
                "(num_classes/num_groups)."
            )
        Wn = np.asarray(W)
        if np.any(Wn - ddof <= 0):
            raise ValueError(
                "sample_weight: "
                + _validate.cells(Wn - ddof <= 0, lambda i, g: f"has total weight {Wn[i, g]:.4g} ≤ ddof={ddof}")
                + ". Weights are frequency weights (covariance = scatter / (Σw − ddof)); rescale them "
                "so that each cell's total exceeds ddof, or pass ddof=0."
            )
        trS = np.trace(np.asarray(stats.scatter), axis1=-2, axis2=-1)
        if np.any(trS <= 0):
            raise ValueError(
                "X: "
                + _validate.cells(trS <= 0, lambda i, g: "has zero variance (all its rows are identical)")
                + "; no covariance can be estimated. Add jitter or drop the cell."
            )
        sn = np.asarray(s)
        singular = (sn == 0) & (nr <= d)
        if np.any(singular):
            raise ValueError(
                "shrinkage: "
                + _validate.cells(
                    singular,
                    lambda i, g: f"has {nr[i, g]} rows for d={d} features, so its sample covariance "
                    f"(rank ≤ {nr[i, g] - 1}) is singular",
                )
                + (". Ledoit–Wolf estimated no shrinkage for it: pass a float in (0, 1], or collect more rows."
                   if isinstance(shrink, str) else ". Use shrinkage='ledoit_wolf' or a float in (0, 1].")
            )
    target = (jnp.trace(cov, axis1=-2, axis2=-1) / d)[..., None, None] * jnp.eye(d, dtype=dtype)
    cov = (1.0 - s)[..., None, None] * cov + s[..., None, None] * target
    priors = W / jnp.sum(W)
    return GaussianFamily(priors=priors, means=stats.mean, covs=_linalg.sym(cov), lognormal=lognormal)


def to_family(stats: SuffStats, *, shrinkage="ledoit_wolf", lognormal: bool = False, ddof=1) -> GaussianFamily:
    """The (shrunk) Gaussian family of the statistics.

    ``priors = count / Σ count``, ``means = mean`` and, per cell, the sample covariance
    ``Σ = scatter / (count − ddof)`` (frequency-weight convention: ``count`` is the total weight, so
    with weights this equals ``np.cov(X_cell.T, fweights=w, ddof=ddof)``), shrunk as
    ``(1 − s) Σ + s (tr Σ / d) I``.

    Args:
        stats: :class:`SuffStats` with fields ``[k, m, ...]``.
        shrinkage: ``"ledoit_wolf"`` (default): ``s`` = :func:`ledoit_wolf_intensity` per cell, which
            is available on streamed and merged statistics as well; with ``ddof=0`` the covariance
            equals scikit-learn's ``ledoit_wolf(X_cell)[0]``, with ``ddof=1`` it is that times
            ``W / (W − 1)``. A float (or ``[k, m]`` array) ``s`` in ``[0, 1]``: fixed intensity.
            ``None``: the sample covariance.
        lognormal: mark the family log-normal (the statistics must then be of ``log X``).
        ddof: delta degrees of freedom of the covariance (default 1, unbiased).

    Raises:
        ValueError: on concrete statistics, for a cell with fewer than 2 rows, total weight not above
            ``ddof``, zero variance, or ``n_rows ≤ d`` without shrinkage (singular covariance); for
            an unknown shrinkage string or an intensity outside ``[0, 1]``.

    Jittable with ``shrinkage``, ``lognormal`` and ``ddof`` static, e.g.
    ``jax.jit(functools.partial(to_family, shrinkage=0.1))``; under ``jit`` nothing is validated.

    Example:
        >>> import numpy as np
        >>> from jaxsteer.estimate import SuffStats, from_data, merge, to_family, update
        >>> rng = np.random.default_rng(0)
        >>> X, y, a = rng.normal(size=(200, 3)), rng.integers(0, 2, 200), rng.integers(0, 2, 200)
        >>> fam = to_family(from_data(X, y, a, 2, 2), shrinkage=0.1)
        >>> fam.covs.shape
        (2, 2, 3, 3)
    """
    return _to_family(stats, _parse_shrinkage(shrinkage), lognormal, ddof, who="stats")


def fit_family(
    X,
    y,
    a,
    *,
    shrinkage="ledoit_wolf",
    lognormal: bool = False,
    sample_weight=None,
    num_classes: int | None = None,
    num_groups: int | None = None,
    ddof=1,
) -> GaussianFamily:
    """Fit a class×group Gaussian (or log-normal) family to labelled data in one shot.

    Equivalent to ``to_family(from_data(X', y, a, k, m, sample_weight), shrinkage=..., ...)`` with
    ``X' = log X`` when ``lognormal``, plus eager validation of every input.

    Args:
        X: ``[n, d]`` features; strictly positive when ``lognormal``.
        y: ``[n]`` integer class codes ``0..k−1``.
        a: ``[n]`` integer group codes ``0..m−1``. Map arbitrary labels (strings, floats) to codes
            with ``classes, y = np.unique(labels, return_inverse=True)`` (and likewise for groups);
            ``classes[i]`` is then the label of class ``i``.
        shrinkage: ``"ledoit_wolf"`` (default), a float in ``[0, 1]``, or ``None``; see
            :func:`to_family`.
        lognormal: fit a Gaussian to ``log X`` and return a log-normal family.
        sample_weight: optional ``[n]`` non-negative frequency weights.
        num_classes, num_groups: ``k`` and ``m``; default ``max(code) + 1``. Required under ``jit``.
        ddof: covariance delta degrees of freedom (default 1).

    Returns:
        :class:`GaussianFamily` with ``priors [k, m]`` (weighted cell frequencies), ``means
        [k, m, d]`` and ``covs [k, m, d, d]``.

    Raises:
        ValueError: naming the argument, for ``X`` not 2-D or containing NaN/inf, non-positive ``X``
            with ``lognormal``, ``y``/``a`` of the wrong length, negative, non-integer or
            out-of-range codes, negative weights, a cell with fewer than 2 rows, ``n ≤ d`` in a cell
            without shrinkage, an unknown shrinkage string or an intensity outside ``[0, 1]``.

    Example:
        >>> import jax
        >>> from jaxsteer import GaussianFamily, fit_family
        >>> fam = GaussianFamily.univariate(priors=[[0.3, 0.2], [0.2, 0.3]], means=[[0., 1.], [2., 2.5]],
        ...                                 stds=[[1., 1.], [1., 2.]])
        >>> x, y, a = fam.sample(jax.random.PRNGKey(0), 10_000)
        >>> fit = fit_family(x, y, a)                     # Ledoit–Wolf shrinkage (none at d = 1)
        >>> fit = fit_family(x, y, a, shrinkage=None)     # plain sample covariances
        >>> [round(float(v), 1) for v in fit.means[:, :, 0].ravel()]   # close to [0, 1, 2, 2.5]
        [0.0, 1.0, 2.0, 2.5]
    """
    shrink = _parse_shrinkage(shrinkage)
    X = _as_X(X)
    n = X.shape[0]
    concrete = _validate.is_concrete(X, y, a, sample_weight)
    for name, val in (("num_classes", num_classes), ("num_groups", num_groups)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1):
            raise ValueError(f"{name}: expected a positive integer or None, got {val!r}.")
    if concrete:
        _validate.finite_rows(X, positive=lognormal)
        y = _validate.codes(y, "y", "class", n=n, size=num_classes, size_arg="num_classes")
        a = _validate.codes(a, "a", "group", n=n, size=num_groups, size_arg="num_groups")
        if n == 0:
            raise ValueError("X: has no rows; at least 2 rows per class×group cell are needed.")
        k = int(y.max()) + 1 if num_classes is None else int(num_classes)
        m = int(a.max()) + 1 if num_groups is None else int(num_groups)
        if sample_weight is not None:
            sample_weight = _validate.sample_weight(sample_weight, n)
    else:
        if num_classes is None or num_groups is None:
            raise ValueError(
                "num_classes: under jit the numbers of classes and groups cannot be inferred from the "
                "data; pass num_classes= and num_groups= explicitly."
            )
        k, m = int(num_classes), int(num_groups)
    Z = jnp.log(X) if lognormal else X
    stats = _batch_stats(Z, y, a, sample_weight, k, m)
    return _to_family(stats, shrink, lognormal, ddof, who="y, a")
