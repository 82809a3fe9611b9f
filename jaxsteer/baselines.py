"""Baselines with the same interface as :class:`~jaxsteer.Steerer` (MATH §6).

* :class:`MeanMatching` — shift every group so that its mean equals the reference group's;
* :class:`MiMiC` — the group-level Gaussian W2 (Monge) map from each group's (shrunk) mean and
  covariance onto the reference group's (label-free mean *and* covariance matching);
* :class:`LEACE` — least-squares concept erasure (Belrose et al. 2023): one affine map, the same for
  every group, after which no linear classifier predicts the group better than a constant;
* :class:`Reweighing` — Kamiran–Calders weights ``w = P(A=a) P(Y=i) / P(Y=i, A=a)``; the features are
  left unchanged.

All of them follow the :class:`~jaxsteer.Steerer` conventions: ``fit(X, y, a, sample_weight=None)``,
``transform(X, a, y=None)``, ``fit_transform``, ``inverse_transform`` (where the map is invertible),
``sample_weight(y, a)`` (all ones for methods that do not reweight), fitted attributes ending in
``_`` (``classes_``, ``groups_``, ``n_features_in_``, ...), labels and groups of any sortable type,
numpy in → numpy out and JAX in → JAX out, and a short :meth:`report`. The label-free maps
(mean matching, MiMiC, LEACE) accept ``y=None`` in ``fit``; ``classes_`` is then ``None``.

Example:
    >>> import numpy as np
    >>> from jaxsteer.baselines import LEACE, MeanMatching, Reweighing
    >>> rng = np.random.default_rng(0)
    >>> y, a = rng.integers(0, 2, 400), rng.choice(["F", "M"], 400)
    >>> X = rng.normal(size=(400, 3)) + 0.8 * y[:, None] + (a == "F")[:, None]
    >>> mm = MeanMatching().fit(X, y, a)
    >>> Xs = mm.transform(X, a)                       # every group now has the reference's mean
    >>> type(Xs).__name__, np.allclose(Xs[a == "F"].mean(0), Xs[a == "M"].mean(0), atol=1e-4)
    ('ndarray', True)
    >>> Xe = LEACE().fit_transform(X, y, a)           # group linearly erased
    >>> np.allclose(Xe[a == "F"].mean(0), Xe[a == "M"].mean(0), atol=1e-4)
    True
    >>> w = Reweighing().fit(X, y, a).sample_weight(y, a)
    >>> w.shape
    (400,)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _linalg, _validate
from jaxsteer._base import BaseSteerer, as_matrix, encode, like_input
from jaxsteer.estimate import fit_family
from jaxsteer.maps import AffineMap, w2_map

__all__ = ["MeanMatching", "MiMiC", "LEACE", "Reweighing"]

_HI = jax.lax.Precision.HIGHEST


# -- shared plumbing ---------------------------------------------------------------------------------


def _length(v) -> int:
    return int(np.shape(v)[0]) if np.ndim(v) >= 1 else 0


def _group_totals(ac: np.ndarray, w: np.ndarray | None, m: int) -> np.ndarray:
    return np.bincount(ac, weights=w, minlength=m).astype(np.float64)


def _weighted_group_means(X: jax.Array, ac: np.ndarray, w: np.ndarray | None, m: int) -> jax.Array:
    """Weighted mean of each group, ``[m, d]`` (two-pass: the second pass corrects the rounding)."""
    wj = jnp.ones(X.shape[0], X.dtype) if w is None else jnp.asarray(w, X.dtype)
    onehot = (jnp.asarray(ac)[:, None] == jnp.arange(m)[None, :]).astype(X.dtype) * wj[:, None]
    tot = jnp.sum(onehot, axis=0)[:, None]
    mean = jnp.matmul(onehot.T, X, precision=_HI) / tot
    resid = X - mean[jnp.asarray(ac)]
    return mean + jnp.matmul(onehot.T, resid, precision=_HI) / tot


class _Baseline(BaseSteerer):
    """Input handling shared by the baselines (fit-time encoding, transform-time checks)."""

    _needs_labels = False  # Reweighing needs y

    def _fit_inputs(self, X, y, a, sample_weight):
        """Validate and encode ``fit`` inputs; sets ``classes_``, ``groups_``, ``n_features_in_``."""
        self._validate_params()
        Xa = as_matrix(X)
        n, d = Xa.shape
        if n == 0 or d == 0:
            raise ValueError(f"X: needs at least one row and one feature, got shape {Xa.shape}.")
        if a is None:
            raise ValueError(f"a: {type(self).__name__}.fit needs the group of every row (a is None).")
        ac, groups = encode(a, None, "a", n)
        if len(groups) < 2:
            raise ValueError(f"a: found a single group {groups.tolist()}; a baseline needs at least 2 groups.")
        if y is None:
            if self._needs_labels:
                raise ValueError(f"y: {type(self).__name__} needs the class labels (y is None).")
            yc, classes = None, None
        else:
            yc, classes = encode(y, None, "y", n)
            if self._needs_labels and len(classes) < 2:
                raise ValueError(f"y: found a single class {classes.tolist()}; reweighing needs at least 2 classes.")
        w = None if sample_weight is None else _validate.sample_weight(sample_weight, n)
        tot = _group_totals(ac, w, len(groups))
        if np.any(tot <= 0):
            g = int(np.flatnonzero(tot <= 0)[0])
            raise ValueError(f"sample_weight: group {groups[g].item()!r} has zero total weight.")
        self.classes_, self.groups_ = classes, groups
        self.n_features_in_ = d
        return Xa, yc, ac, w

    def _reference_code(self, ac: np.ndarray) -> int:
        groups = self.groups_
        if self.reference is None:
            return int(np.argmax(np.bincount(ac, minlength=len(groups))))
        try:
            hits = np.flatnonzero(groups == np.asarray(self.reference, dtype=groups.dtype))
        except (TypeError, ValueError):
            hits = np.array([], dtype=int)
        if hits.size != 1:
            raise ValueError(f"reference: {self.reference!r} is not a group in a (groups: {groups.tolist()}).")
        return int(hits[0])

    def _check_y(self, y, n: int) -> np.ndarray | None:
        if y is None:
            return None
        if self.classes_ is None:
            return encode(y, None, "y", n)[0]  # shape check only: fitted without labels
        return encode(y, self.classes_, "y", n)[0]

    def _group_map_apply(self, X, a, y, affine_map: AffineMap):
        self._check_fitted()
        Xa = as_matrix(X, d=self.n_features_in_).astype(affine_map.A.dtype)
        n = Xa.shape[0]
        if a is None:
            raise ValueError(f"a: {type(self).__name__} applies a map per group; pass the group of every row.")
        ac, _ = encode(a, self.groups_, "a", n)
        self._check_y(y, n)
        return like_input(affine_map.apply(Xa, jnp.asarray(ac)), X)

    def fit_transform(self, X, y, a, sample_weight=None):
        """``fit(X, y, a, sample_weight)`` then ``transform(X, a, y)``."""
        return self.fit(X, y, a, sample_weight=sample_weight).transform(X, a, y)

    def sample_weight(self, y, a) -> np.ndarray:
        """Per-row training weights, ``[n]``: all ones (this method does not reweight)."""
        self._check_fitted()
        if a is None and y is None:
            raise ValueError("a: pass the groups (or labels) of the rows to weight.")
        n = _length(a if a is not None else y)
        if a is not None:
            encode(a, self.groups_, "a", n)
        self._check_y(y, n)
        return np.ones(n)

    def _header(self) -> str:
        classes = "none (fitted without y)" if self.classes_ is None else f"{len(self.classes_)} {self.classes_.tolist()}"
        return (
            f"  data: d={self.n_features_in_} features, classes {classes}, "
            f"m={len(self.groups_)} groups {self.groups_.tolist()}"
        )


# -- mean matching -----------------------------------------------------------------------------------


class _GroupMapBaseline(_Baseline):
    """A baseline whose steering is one fitted affine map per group (``group_map_``)."""

    def transform(self, X, a, y=None):
        """Map each row with its group's map ``group_map_`` (``y`` is ignored). Numpy in → numpy out."""
        self._check_fitted()
        return self._group_map_apply(X, a, y, self.group_map_)

    def inverse_transform(self, X, a, y=None):
        """Undo :meth:`transform`."""
        self._check_fitted()
        return self._group_map_apply(X, a, y, self.group_map_.inverse())


class MeanMatching(_GroupMapBaseline):
    """Shift every group so that its mean equals the reference group's: ``x ↦ x + μ_ref − μ_a``.

    Args:
        reference: the group *label* whose mean every group is moved to; ``None`` (default) picks
            the most frequent group.

    Fitted attributes:
        classes_ (``None`` if fitted without ``y``), groups_, n_features_in_.
        means_: ``[m, d]`` (weighted) group means.
        group_map_: :class:`~jaxsteer.maps.AffineMap` ``[m]`` with identity linear parts.
        reference_: the reference group label.

    Example:
        >>> import numpy as np
        >>> from jaxsteer.baselines import MeanMatching
        >>> X = np.array([[0., 0.], [2., 0.], [10., 1.], [12., 1.]])
        >>> a = ["F", "F", "M", "M"]
        >>> mm = MeanMatching(reference="F").fit(X, None, a)      # labels are not needed
        >>> mm.reference_, mm.transform(X, a).tolist()            # group M moved by μ_F − μ_M = (−10, −1)
        ('F', [[0.0, 0.0], [2.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
        >>> mm.inverse_transform(mm.transform(X, a), a).tolist()
        [[0.0, 0.0], [2.0, 0.0], [10.0, 1.0], [12.0, 1.0]]
    """

    def __init__(self, reference=None):
        self.reference = reference

    def fit(self, X, y, a, sample_weight=None) -> "MeanMatching":
        """Estimate the group means (``y`` is not used and may be ``None``). Returns ``self``."""
        Xa, _, ac, w = self._fit_inputs(X, y, a, sample_weight)
        ref = self._reference_code(ac)
        m, d = len(self.groups_), Xa.shape[1]
        means = _weighted_group_means(Xa, ac, w, m)
        self.means_ = means
        self.reference_ = self.groups_[ref].item()
        self._ref = ref
        self.group_map_ = AffineMap(jnp.broadcast_to(jnp.eye(d, dtype=Xa.dtype), (m, d, d)), means[ref] - means)
        return self

    def report(self) -> str:
        """A plain-text summary: the reference group and each group's shift length."""
        self._check_fitted()
        shift = np.linalg.norm(np.asarray(self.group_map_.b), axis=-1)
        cells = ", ".join(f"{g.item()!r}: {s:.4g}" for g, s in zip(self.groups_, shift))
        return "\n".join(
            [
                f"MeanMatching(reference={self.reference!r})",
                self._header() + f", reference group {self.reference_!r}",
                f"  shift ‖μ_ref − μ_a‖ per group: {cells}",
            ]
        )


# -- MiMiC -------------------------------------------------------------------------------------------


def _check_shrinkage(shrinkage) -> None:
    if shrinkage is None:
        return
    if isinstance(shrinkage, str):
        if shrinkage.lower().replace("-", "_") not in ("ledoit_wolf", "lw"):
            raise ValueError(f"shrinkage: unknown method {shrinkage!r}; use 'ledoit_wolf', a float in [0, 1], or None.")
        return
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, (int, float, np.integer, np.floating)):
        raise ValueError(f"shrinkage: expected 'ledoit_wolf', a float in [0, 1], or None; got {shrinkage!r}.")
    if not (0.0 <= float(shrinkage) <= 1.0):
        raise ValueError(f"shrinkage: an intensity must lie in [0, 1]; got {shrinkage!r}.")


class MiMiC(_GroupMapBaseline):
    """Group-level mean and covariance matching: the W2 map from each group's Gaussian to the reference's.

    Each group ``a`` is fitted with one Gaussian ``N(μ_a, Σ_a)`` (classes pooled, so no labels are
    needed) and moved by the Monge map ``x ↦ μ_ref + M_a (x − μ_a)``,
    ``M_a = Σ_a^{-1/2}(Σ_a^{1/2} Σ_ref Σ_a^{1/2})^{1/2} Σ_a^{-1/2}`` (:func:`~jaxsteer.maps.w2_map`);
    the reference group's map is the identity.

    Args:
        reference: the group *label* that stays fixed; ``None`` (default) picks the most frequent.
        shrinkage: covariance shrinkage of :func:`~jaxsteer.fit_family` (``"ledoit_wolf"``
            (default), a float in ``[0, 1]`` or ``None``).

    Fitted attributes:
        classes_ (``None`` if fitted without ``y``), groups_, n_features_in_.
        means_: ``[m, d]``; covs_: ``[m, d, d]`` the (shrunk) group moments.
        group_map_: :class:`~jaxsteer.maps.AffineMap` ``[m]``.
        reference_: the reference group label.

    Example:
        >>> import numpy as np
        >>> from jaxsteer.baselines import MiMiC
        >>> rng = np.random.default_rng(0)
        >>> a = np.repeat(["F", "M"], 500)
        >>> X = rng.normal(size=(1000, 2)) * np.where(a == "F", 1.0, 3.0)[:, None] + (a == "M")[:, None]
        >>> mi = MiMiC(reference="F", shrinkage=None).fit(X, None, a)
        >>> Xs = mi.transform(X, a)                   # group M now has F's mean and covariance
        >>> np.allclose(Xs[a == "M"].mean(0), X[a == "F"].mean(0), atol=1e-4)
        True
        >>> np.allclose(np.cov(Xs[a == "M"].T), np.cov(X[a == "F"].T), atol=1e-3)
        True
        >>> mi.w2_distances().shape                   # the map's root-mean-square displacement per group
        (2,)
    """

    def __init__(self, reference=None, shrinkage="ledoit_wolf"):
        self.reference = reference
        self.shrinkage = shrinkage
        self._validate_params()

    def _validate_params(self) -> None:
        _check_shrinkage(self.shrinkage)

    def fit(self, X, y, a, sample_weight=None) -> "MiMiC":
        """Estimate each group's mean and (shrunk) covariance (``y`` may be ``None``). Returns ``self``."""
        Xa, _, ac, w = self._fit_inputs(X, y, a, sample_weight)
        ref = self._reference_code(ac)
        m, d = len(self.groups_), Xa.shape[1]
        rows = np.bincount(ac, weights=None if w is None else (w > 0).astype(float), minlength=m)
        if np.any(rows < 2):
            g = int(np.flatnonzero(rows < 2)[0])
            raise ValueError(
                f"a: group {self.groups_[g].item()!r} has {int(rows[g])} row(s) with positive weight; MiMiC "
                "needs at least 2 per group to estimate a covariance."
            )
        fam = fit_family(
            Xa, np.zeros_like(ac), ac, shrinkage=self.shrinkage, sample_weight=w, num_classes=1, num_groups=m
        )
        means, covs = fam.means[0], fam.covs[0]
        T = w2_map(means, covs, means[ref], covs[ref][None])
        # The reference group's map is exactly the identity (not the identity up to rounding).
        A = T.A.at[ref].set(jnp.eye(d, dtype=T.A.dtype))
        b = T.b.at[ref].set(0.0)
        self.means_, self.covs_ = means, covs
        self.reference_ = self.groups_[ref].item()
        self._ref = ref
        self.group_map_ = AffineMap(A, b)
        return self

    def w2_distances(self) -> np.ndarray:
        """``W2(N(μ_a, Σ_a), N(μ_ref, Σ_ref))`` per group, ``[m]``: the map's root-mean-square displacement."""
        self._check_fitted()
        A, b = np.asarray(self.group_map_.A), np.asarray(self.group_map_.b)
        mu, S = np.asarray(self.means_), np.asarray(self.covs_)
        eye = np.eye(self.n_features_in_)
        shift = np.einsum("gij,gj->gi", A, mu) + b - mu
        D = A - eye
        sq = np.sum(shift**2, axis=-1) + np.einsum("gij,gjk,gik->g", D, S, D)
        return np.sqrt(np.maximum(sq, 0.0))

    def report(self) -> str:
        """A plain-text summary: the reference group and each group's W2 distance to it."""
        self._check_fitted()
        cells = ", ".join(f"{g.item()!r}: {s:.4g}" for g, s in zip(self.groups_, self.w2_distances()))
        return "\n".join(
            [
                f"MiMiC(reference={self.reference!r}, shrinkage={self.shrinkage!r})",
                self._header() + f", reference group {self.reference_!r}",
                f"  W2 distance to the reference per group: {cells}",
            ]
        )


# -- LEACE -------------------------------------------------------------------------------------------


def _default_tol(d: int, dtype) -> float:
    return 10.0 * max(d, 10) * float(jnp.finfo(dtype).eps)


def _psd_pinv_sqrt(S: jax.Array, tol: float):
    """``(S^{1/2}, (S^{1/2})⁺, rank)`` of a symmetric PSD ``S`` that may be singular.

    Eigenvalues at or below ``tol · max eigenvalue`` count as zero (rounding-level directions of a
    rank-deficient covariance); both roots vanish on them, so ``(S^{1/2})⁺ S^{1/2}`` is the
    orthogonal projection onto the kept eigenspace.
    """
    lam, V = jnp.linalg.eigh(_linalg.sym(S))
    top = jnp.max(jnp.abs(lam))
    keep = lam > tol * top
    safe = jnp.where(keep, lam, 1.0)
    root = jnp.where(keep, jnp.sqrt(safe), 0.0)
    inv_root = jnp.where(keep, 1.0 / jnp.sqrt(safe), 0.0)
    Vt = V.T
    return (
        jnp.matmul(V * root, Vt, precision=_HI),
        jnp.matmul(V * inv_root, Vt, precision=_HI),
        int(jnp.sum(keep)),
    )


def _range_projection(B: jax.Array, scale: jax.Array, tol: float):
    """Orthogonal projection onto ``colspan(B)`` and its rank; singular values ≤ ``tol · scale`` are dropped.

    ``scale`` must bound the singular values in exact arithmetic (for ``B = W Σ_xz``,
    ``√tr Σ_zz``), so that a ``B`` that is zero up to rounding (no linear information to erase)
    has rank 0 rather than a projection onto noise.
    """
    U, s, _ = jnp.linalg.svd(B, full_matrices=False)
    keep = s > tol * scale
    Uk = U * keep.astype(U.dtype)
    return jnp.matmul(Uk, Uk.T, precision=_HI), int(jnp.sum(keep))


class LEACE(_Baseline):
    """Least-squares concept erasure of the group (Belrose et al. 2023, "LEACE").

    With ``μ`` the mean and ``Σ_xx`` the covariance of ``X``, ``z`` the centred one-hot group
    indicator and ``Σ_xz`` the cross-covariance, ``W = (Σ_xx^{1/2})⁺`` (whitening), ``W⁺ = Σ_xx^{1/2}``
    and ``P`` the orthogonal projection onto ``colspan(W Σ_xz)``, the eraser is

        ``x ↦ x − W⁺ P W (x − μ)``,

    the same affine map for every group. Afterwards ``Cov(x', z) = 0``: every group has the same mean,
    so no linear classifier predicts the group better than a constant (in any convex loss); and among
    all affine maps with that property it moves the data least, ``E‖x − x'‖²`` minimal. Not
    invertible (it removes ``rank P ≤ m − 1`` directions).

    Args:
        tol: relative cutoff below which eigenvalues of ``Σ_xx`` (and singular values of
            ``W Σ_xz``) count as zero, for rank-deficient data; ``None`` (default) uses
            ``10 · max(d, 10) · eps`` of the data's dtype.

    Fitted attributes:
        classes_ (``None`` if fitted without ``y``), groups_, n_features_in_.
        mean_: ``[d]`` mean of ``X``.
        eraser_: :class:`~jaxsteer.maps.AffineMap` (unbatched) ``x ↦ A x + b``, ``A = I − W⁺PW``.
        rank_: the number of erased directions (``rank P``); cov_rank_: the rank of ``Σ_xx`` used.
        mean_sq_edit_: ``E‖x − x'‖²`` on the (weighted) training data.

    Example:
        >>> import numpy as np
        >>> from jaxsteer.baselines import LEACE
        >>> rng = np.random.default_rng(0)
        >>> a = rng.choice(["F", "M", "X"], 600)
        >>> X = rng.normal(size=(600, 4)) + (a == "F")[:, None] - (a == "X")[:, None]
        >>> X_test = rng.normal(size=(5, 4))
        >>> le = LEACE().fit(X, None, a)        # labels are not needed
        >>> le.rank_                            # m − 1 directions erased
        2
        >>> Xe, Xe_test = le.transform(X), le.transform(X_test)   # nor are groups at transform time
        >>> np.allclose(Xe[a == "F"].mean(0), Xe[a == "X"].mean(0), atol=1e-4)
        True
    """

    def __init__(self, tol=None):
        self.tol = tol
        self._validate_params()

    def _validate_params(self) -> None:
        if self.tol is not None:
            if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float, np.integer, np.floating)):
                raise ValueError(f"tol: expected a float in [0, 1) or None, got {self.tol!r}.")
            if not (0.0 <= float(self.tol) < 1.0):
                raise ValueError(f"tol: expected a float in [0, 1) or None, got {self.tol!r}.")

    def fit(self, X, y, a, sample_weight=None) -> "LEACE":
        """Estimate the (weighted) moments and build the eraser (``y`` may be ``None``). Returns ``self``."""
        Xa, _, ac, w = self._fit_inputs(X, y, a, sample_weight)
        n, d = Xa.shape
        m = len(self.groups_)
        dtype = Xa.dtype
        tol = _default_tol(d, dtype) if self.tol is None else float(self.tol)
        wj = jnp.ones(n, dtype) if w is None else jnp.asarray(w, dtype)
        p = wj / jnp.sum(wj)
        mu = jnp.matmul(p, Xa, precision=_HI)
        mu = mu + jnp.matmul(p, Xa - mu, precision=_HI)
        Xc = Xa - mu
        # Centred one-hot of the group; its columns sum to zero, so the last one is redundant.
        Z = (jnp.asarray(ac)[:, None] == jnp.arange(m)[None, :]).astype(dtype)
        Zc = (Z - jnp.matmul(p, Z, precision=_HI))[:, : m - 1]
        Xw = Xc * p[:, None]
        Sxx = _linalg.sym(jnp.matmul(Xw.T, Xc, precision=_HI))
        Sxz = jnp.matmul(Xw.T, Zc, precision=_HI)
        Zw = Zc * p[:, None]
        z_scale = jnp.sqrt(jnp.sum(Zw * Zc))  # √tr Σ_zz ≥ ‖W Σ_xz‖ (the joint covariance is PSD)
        root, white, cov_rank = _psd_pinv_sqrt(Sxx, tol)
        P, rank = _range_projection(jnp.matmul(white, Sxz, precision=_HI), z_scale, tol)
        E = jnp.matmul(jnp.matmul(root, P, precision=_HI), white, precision=_HI)  # W⁺ P W
        A = jnp.eye(d, dtype=dtype) - E
        b = jnp.matmul(E, mu, precision=_HI)
        self.mean_ = mu
        self.eraser_ = AffineMap(A, b)
        self.rank_ = rank
        self.cov_rank_ = cov_rank
        self.mean_sq_edit_ = float(jnp.trace(jnp.matmul(jnp.matmul(E, Sxx, precision=_HI), E.T, precision=_HI)))
        return self

    def transform(self, X, a=None, y=None):
        """Erase the group from ``X`` (the same map for every row; ``a`` and ``y`` are only checked)."""
        self._check_fitted()
        Xa = as_matrix(X, d=self.n_features_in_).astype(self.eraser_.A.dtype)
        n = Xa.shape[0]
        if a is not None:
            encode(a, self.groups_, "a", n)
        self._check_y(y, n)
        return like_input(self.eraser_.apply(Xa), X)

    def fit_transform(self, X, y, a, sample_weight=None):
        """``fit(X, y, a, sample_weight)`` then ``transform(X)``."""
        return self.fit(X, y, a, sample_weight=sample_weight).transform(X, a, y)

    def inverse_transform(self, X, a=None, y=None):
        """Not available: erasure removes directions, so it has no inverse."""
        raise NotImplementedError(
            "LEACE is not invertible: the eraser x ↦ x − W⁺PW(x − μ) projects out rank P directions, "
            "so the erased information cannot be recovered."
        )

    def report(self) -> str:
        """A plain-text summary: erased rank and the mean squared edit."""
        self._check_fitted()
        return "\n".join(
            [
                f"LEACE(tol={self.tol!r})",
                self._header(),
                f"  erased {self.rank_} direction(s) (covariance rank {self.cov_rank_} of {self.n_features_in_}); "
                f"mean squared edit E‖x − x'‖² = {self.mean_sq_edit_:.4g} on the training data",
            ]
        )


# -- reweighing --------------------------------------------------------------------------------------


class Reweighing(_Baseline):
    """Kamiran–Calders reweighing: ``w = P(A=a) P(Y=i) / P(Y=i, A=a)``; the features are unchanged.

    With these weights the (weighted) joint law of ``(Y, A)`` factorises, ``P̃(Y, A) = P(Y) P(A)``,
    while both marginals are kept. Probabilities are (``sample_weight``-weighted) frequencies.

    Fitted attributes:
        classes_, groups_, n_features_in_.
        joint_: ``[k, m]`` ``P(Y=i, A=a)``.
        weights_: ``[k, m]`` the weight of each class × group cell.

    Example:
        >>> import numpy as np
        >>> from sklearn.linear_model import LogisticRegression
        >>> from jaxsteer.baselines import Reweighing
        >>> y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
        >>> a = np.array(["F", "F", "F", "F", "M", "M", "M", "M"])
        >>> X = np.arange(8.0)[:, None]
        >>> rw = Reweighing().fit(X, y, a)
        >>> rw.weights_.round(3).tolist()          # rows: classes 0, 1; columns: groups F, M
        [[0.667, 2.0], [2.0, 0.667]]
        >>> w = rw.sample_weight(y, a)
        >>> clf = LogisticRegression().fit(X, y, sample_weight=w)
        >>> [float(w[(y == i) & (a == g)].sum()) for i in (0, 1) for g in ("F", "M")]   # Y ⟂ A under w
        [2.0, 2.0, 2.0, 2.0]
    """

    _needs_labels = True

    def __init__(self):
        pass

    def fit(self, X, y, a, sample_weight=None) -> "Reweighing":
        """Count the (weighted) class × group frequencies. Returns ``self``."""
        _, yc, ac, w = self._fit_inputs(X, y, a, sample_weight)
        k, m = len(self.classes_), len(self.groups_)
        counts = np.bincount(yc * m + ac, weights=w, minlength=k * m).astype(np.float64).reshape(k, m)
        joint = counts / counts.sum()
        if np.any(joint <= 0):
            i, g = (int(t) for t in np.argwhere(joint <= 0)[0])
            raise ValueError(
                f"y, a: class {self.classes_[i].item()!r} has no rows (with positive weight) in group "
                f"{self.groups_[g].item()!r}; reweighing cannot make Y and A independent with an empty cell."
            )
        self.joint_ = joint
        self.weights_ = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True) / joint
        return self

    def transform(self, X, a, y=None):
        """The identity on ``X`` (checked against the fit; ``a`` and ``y`` are validated)."""
        self._check_fitted()
        Xa = as_matrix(X, d=self.n_features_in_)
        n = Xa.shape[0]
        if a is not None:
            encode(a, self.groups_, "a", n)
        self._check_y(y, n)
        return like_input(Xa, X)

    inverse_transform = transform

    def sample_weight(self, y, a) -> np.ndarray:
        """Per-row weights ``P(A=a) P(Y=y) / P(Y=y, A=a)``, ``[n]``."""
        self._check_fitted()
        if y is None:
            raise ValueError("y: reweighing weights depend on the class label; pass y.")
        n = _length(y)
        yc, _ = encode(y, self.classes_, "y", n)
        ac, _ = encode(a, self.groups_, "a", n)
        return self.weights_[yc, ac]

    def report(self) -> str:
        """A plain-text summary: the weight of each class × group cell."""
        self._check_fitted()
        lines = ["Reweighing()", self._header(), "  weights P(A)P(Y)/P(Y, A) (class × group):"]
        for i, c in enumerate(self.classes_):
            cells = ", ".join(f"{g.item()!r}: {self.weights_[i, j]:.4g}" for j, g in enumerate(self.groups_))
            lines.append(f"    class {c.item()!r}: {cells}")
        return "\n".join(lines)
