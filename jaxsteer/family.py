"""Class×group Gaussian (and log-normal) families: ``θ = (q, μ, Σ)``.

A :class:`GaussianFamily` holds the joint priors ``q[i, a] = P(Y=i, A=a)``, the subgroup means
``μ[i, a]`` and covariances ``Σ[i, a]`` of ``X | Y=i, A=a``. Class axis first, group axis second,
any leading batch axes::

    priors [..., k, m]    means [..., k, m, d]    covs [..., k, m, d, d]

A log-normal family stores the parameters of ``log X``; KL divergences and Bayes rules are invariant
under the bijection ``log``, so every solver result for a log-normal family is the Gaussian result on
``log X`` (see MATH §1).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _linalg, _validate

__all__ = ["GaussianFamily"]

#: Relative asymmetry ``max|Σ − Σᵀ| / max|Σ|`` tolerated (and then symmetrised away).
SYMMETRY_RTOL = 1e-6
#: Priors must sum to one within this absolute tolerance (they are then renormalised exactly).
PRIOR_SUM_ATOL = 1e-6


def _pd_floor(dtype, d: int) -> float:
    """Smallest accepted ratio of smallest to largest covariance eigenvalue."""
    return 100.0 * d * float(np.finfo(dtype).eps)


@jax.tree_util.register_pytree_node_class
class GaussianFamily:
    """A class×group Gaussian family ``θ = (q, μ, Σ)`` with optional leading batch axes.

    Args:
        priors: ``[..., k, m]`` joint probabilities ``P(Y=i, A=a)``; non-negative, summing to 1
            over the last two axes (within ``1e-6``; renormalised exactly).
        means: ``[..., k, m, d]`` subgroup means of ``X`` (of ``log X`` when ``lognormal``).
        covs: ``[..., k, m, d, d]`` subgroup covariances; symmetric (relative asymmetry up to
            ``1e-6`` is symmetrised away) and positive definite (smallest eigenvalue above
            ``100·d·eps`` times the largest).
        lognormal: if true the family describes ``X = exp(Z)`` with ``Z`` Gaussian of these
            parameters.
        validate: check the arrays when they are concrete (the default). Tracers are never checked.

    Raises:
        ValueError: naming the argument, for mismatched shapes, non-finite values, negative priors
            or priors not summing to one, and covariances that are not symmetric positive definite.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer import GaussianFamily
        >>> fam = GaussianFamily(
        ...     priors=jnp.array([[0.3, 0.2], [0.2, 0.3]]),
        ...     means=jnp.zeros((2, 2, 3)),
        ...     covs=jnp.broadcast_to(jnp.eye(3), (2, 2, 3, 3)))
        >>> fam.k, fam.m, fam.d
        (2, 2, 3)
    """

    def __init__(self, priors, means, covs, *, lognormal: bool = False, validate: bool = True):
        priors = jnp.asarray(_validate.real_array(priors, "priors"))
        means = jnp.asarray(_validate.real_array(means, "means"))
        covs = jnp.asarray(_validate.real_array(covs, "covs"))
        dtype = jnp.result_type(priors, means, covs, jnp.float32)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.float32
        priors, means, covs = (x.astype(dtype) for x in (priors, means, covs))
        _check_shapes(priors, means, covs)
        if validate and _validate.is_concrete(priors, means, covs):
            priors, covs = _check_values(priors, means, covs)
        self.priors = priors
        self.means = means
        self.covs = covs
        self.lognormal = bool(lognormal)

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def univariate(cls, priors, means, stds, *, lognormal: bool = False) -> "GaussianFamily":
        """A one-dimensional family from ``priors [..., k, m]``, ``means [..., k, m]``, ``stds [..., k, m]``.

        Example:
            >>> from jaxsteer import GaussianFamily
            >>> fam = GaussianFamily.univariate(
            ...     priors=[[0.3, 0.2], [0.2, 0.3]], means=[[0., 1.], [2., 2.5]], stds=[[1., 1.], [1., 2.]])
            >>> fam.covs[1, 1].tolist()          # [k, m, d, d]: the variance 2² of class 1, group 1
            [[4.0]]
        """
        stds = jnp.asarray(stds)
        means = jnp.asarray(means)
        if _validate.is_concrete(stds) and not bool(jnp.all(stds > 0)):
            raise ValueError(
                "stds: every standard deviation must be positive and finite; got "
                f"min={float(jnp.min(stds))}. Replace zero-variance subgroups or add a small jitter."
            )
        return cls(
            priors=priors,
            means=means[..., None],
            covs=(stds**2)[..., None, None],
            lognormal=lognormal,
        )

    @classmethod
    def lognormal_family(cls, priors, means, covs) -> "GaussianFamily":
        """A log-normal family: ``X = exp(Z)`` elementwise with ``Z`` of these Gaussian parameters.

        Example:
            >>> import numpy as np
            >>> from jaxsteer import GaussianFamily
            >>> fam = GaussianFamily.lognormal_family(
            ...     priors=[[0.25, 0.25], [0.25, 0.25]], means=np.zeros((2, 2, 3)), covs=np.tile(np.eye(3), (2, 2, 1, 1)))
            >>> import jax
            >>> fam.lognormal, bool((fam.sample(jax.random.PRNGKey(0), 5)[0] > 0).all())
            (True, True)
        """
        return cls(priors=priors, means=means, covs=covs, lognormal=True)

    # -- pytree ---------------------------------------------------------------------------------

    def tree_flatten(self):
        return (self.priors, self.means, self.covs), self.lognormal

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.priors, obj.means, obj.covs = children
        obj.lognormal = aux
        return obj

    def replace(self, **changes: Any) -> "GaussianFamily":
        """A copy with some fields replaced (no validation; for internal use and tracers)."""
        obj = object.__new__(GaussianFamily)
        obj.priors = changes.pop("priors", self.priors)
        obj.means = changes.pop("means", self.means)
        obj.covs = changes.pop("covs", self.covs)
        obj.lognormal = bool(changes.pop("lognormal", self.lognormal))
        if changes:
            raise TypeError(f"replace: unknown fields {sorted(changes)}")
        return obj

    # -- shapes ---------------------------------------------------------------------------------

    @property
    def k(self) -> int:
        """Number of classes."""
        return self.priors.shape[-2]

    @property
    def m(self) -> int:
        """Number of groups."""
        return self.priors.shape[-1]

    @property
    def d(self) -> int:
        """Feature dimension."""
        return self.means.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch axes."""
        return self.priors.shape[:-2]

    @property
    def dtype(self):
        return self.means.dtype

    # -- derived quantities ---------------------------------------------------------------------

    @property
    def group_marginals(self) -> jax.Array:
        """``p_a = Σ_i q[i, a]``, shape ``[..., m]``."""
        return jnp.sum(self.priors, axis=-2)

    @property
    def class_marginals(self) -> jax.Array:
        """``P(Y=i) = Σ_a q[i, a]``, shape ``[..., k]``."""
        return jnp.sum(self.priors, axis=-1)

    @property
    def base_rates(self) -> jax.Array:
        """``q(i | a) = q[i, a] / p_a``, shape ``[..., k, m]``."""
        return self.priors / self.group_marginals[..., None, :]

    def group_moments(self, base_rates: jax.Array | None = None):
        """Mean and covariance of each group's class mixture (on ``log x`` for a log-normal family).

        ``m_a = Σ_i q(i|a) μ_ia`` and ``S_a = Σ_i q(i|a) (Σ_ia + μ_ia μ_iaᵀ) − m_a m_aᵀ``.

        Args:
            base_rates: optional ``[..., k, m]`` mixture weights replacing ``q(i|a)``.

        Returns:
            ``(means [..., m, d], covs [..., m, d, d])``.

        Example:
            >>> from jaxsteer import GaussianFamily
            >>> fam = GaussianFamily.univariate(priors=[[0.25, 0.25], [0.25, 0.25]], means=[[0., 0.], [2., 4.]],
            ...                                 stds=[[1., 1.], [1., 1.]])
            >>> m, S = fam.group_moments()       # each group's class mixture: mean and covariance
            >>> m[:, 0].tolist(), S[:, 0, 0].tolist()
            ([1.0, 2.0], [2.0, 5.0])
        """
        w = self.base_rates if base_rates is None else jnp.asarray(base_rates, self.dtype)
        mean = jnp.einsum("...ia,...iad->...ad", w, self.means)
        dev = self.means - mean[..., None, :, :]
        cov = jnp.einsum("...ia,...iade->...ade", w, self.covs) + jnp.einsum(
            "...ia,...iad,...iae->...ade", w, dev, dev
        )
        return mean, _linalg.sym(cov)

    def log_density(self, x: jax.Array) -> jax.Array:
        """Subgroup log-densities ``ln f_ia(x)`` for points ``x [..., n, d]`` → ``[..., n, k, m]``.

        For a log-normal family ``x`` is on the original (positive) scale and the Jacobian
        ``−Σ_j ln x_j`` is included.
        """
        z = jnp.log(x) if self.lognormal else x
        chol = jnp.linalg.cholesky(_linalg.sym(self.covs))  # [..., k, m, d, d]
        diff = z[..., :, None, None, :] - self.means[..., None, :, :, :]
        # Whiten with the inverse Cholesky factor of each cell ([..., k, m, d, d], computed once)
        # rather than broadcasting a triangular solve over the points, which would materialise an
        # [n, k, m, d, d] array.
        eye = jnp.broadcast_to(jnp.eye(self.d, dtype=chol.dtype), chol.shape)
        linv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
        sol = jnp.einsum("...kmij,...nkmj->...nkmi", linv, diff)
        maha = jnp.sum(sol**2, axis=-1)
        logdet = _linalg.chol_logdet(chol)[..., None, :, :]
        out = -0.5 * (maha + logdet + self.d * math.log(2.0 * math.pi))
        if self.lognormal:
            out = out - jnp.sum(z, axis=-1)[..., None, None]
        return out

    def sample(self, key: jax.Array, n: int):
        """Draw ``n`` labelled points from one (unbatched) family.

        Returns ``(x [n, d], y [n], a [n])``; for a log-normal family ``x`` is ``exp`` of a Gaussian.

        Example:
            >>> import jax
            >>> from jaxsteer import GaussianFamily
            >>> fam = GaussianFamily.univariate(priors=[[0.3, 0.2], [0.2, 0.3]], means=[[0., 1.], [2., 2.5]],
            ...                                 stds=[[1., 1.], [1., 2.]])
            >>> x, y, a = fam.sample(jax.random.PRNGKey(0), 1000)
            >>> x.shape, y.shape, a.shape
            ((1000, 1), (1000,), (1000,))
        """
        if self.batch_shape:
            raise ValueError("sample: draws from one family; index the batch first (fam[0]).")
        k1, k2 = jax.random.split(key)
        flat = jnp.log(self.priors.reshape(-1))
        cell = jax.random.categorical(k1, flat, shape=(n,))
        y, a = cell // self.m, cell % self.m
        chol = jnp.linalg.cholesky(_linalg.sym(self.covs))
        eps = jax.random.normal(k2, (n, self.d), dtype=self.dtype)
        z = self.means[y, a] + jnp.einsum("nij,nj->ni", chol[y, a], eps)
        return (jnp.exp(z) if self.lognormal else z), y, a

    def __getitem__(self, idx) -> "GaussianFamily":
        """Index the leading batch axes: ``fam[3]``, ``fam[:10]``."""
        if not self.batch_shape:
            raise IndexError("GaussianFamily has no batch axes to index.")
        return self.replace(priors=self.priors[idx], means=self.means[idx], covs=self.covs[idx])

    def astype(self, dtype) -> "GaussianFamily":
        """The same family in another floating dtype."""
        return self.replace(
            priors=self.priors.astype(dtype), means=self.means.astype(dtype), covs=self.covs.astype(dtype)
        )

    def __repr__(self) -> str:
        kind = "LogNormal" if self.lognormal else "Gaussian"
        return (
            f"{kind}Family(k={self.k}, m={self.m}, d={self.d}, batch_shape={self.batch_shape}, "
            f"dtype={self.dtype})"
        )


def _check_shapes(priors, means, covs) -> None:
    if priors.ndim < 2:
        raise ValueError(
            f"priors: expected shape [..., k, m] (classes × groups), got {priors.shape}."
        )
    if means.ndim < 3:
        raise ValueError(f"means: expected shape [..., k, m, d], got {means.shape}.")
    if covs.ndim < 4:
        raise ValueError(f"covs: expected shape [..., k, m, d, d], got {covs.shape}.")
    if means.shape[:-1] != priors.shape:
        raise ValueError(
            f"means: shape {means.shape} does not match priors {priors.shape}; expected "
            f"{priors.shape + (means.shape[-1],)} (priors' shape followed by d)."
        )
    d = means.shape[-1]
    if covs.shape != means.shape + (d,):
        raise ValueError(
            f"covs: shape {covs.shape} does not match means {means.shape}; expected "
            f"{means.shape + (d,)}."
        )


def _check_values(priors, means, covs):
    p = np.asarray(priors)
    mu = np.asarray(means)
    s = np.asarray(covs)
    for name, arr in (("priors", p), ("means", mu), ("covs", s)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains NaN or infinite values; clean the input first.")
    if np.any(p < 0):
        raise ValueError(f"priors: must be non-negative; got min={p.min()}.")
    total = p.sum(axis=(-2, -1))
    if np.any(np.abs(total - 1.0) > PRIOR_SUM_ATOL):
        raise ValueError(
            f"priors: must sum to 1 over the class and group axes (joint P(Y=i, A=a)); got sums "
            f"{np.unique(np.round(total, 8))[:5]}. Divide by the total count."
        )
    scale = np.max(np.abs(s), axis=(-2, -1), keepdims=True)
    asym = np.max(np.abs(s - np.swapaxes(s, -1, -2)), axis=(-2, -1), keepdims=True)
    if np.any(asym > SYMMETRY_RTOL * np.maximum(scale, np.finfo(s.dtype).tiny)):
        raise ValueError(
            f"covs: must be symmetric (relative asymmetry up to {SYMMETRY_RTOL}); got relative "
            f"asymmetry {float(np.max(asym / np.maximum(scale, 1e-300))):.3g}. Use (S + S.T) / 2."
        )
    s = 0.5 * (s + np.swapaxes(s, -1, -2))
    eig = np.linalg.eigvalsh(s.astype(np.float64))
    d = s.shape[-1]
    bad = eig[..., 0] <= _pd_floor(s.dtype, d) * np.maximum(eig[..., -1], 0.0)
    bad |= eig[..., -1] <= 0
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        lo, hi = eig[idx][0], eig[idx][-1]
        if s.dtype != np.float64 and hi > 0 and lo > _pd_floor(np.float64, d) * hi:
            fix = (f"It is positive definite, but its condition number {hi / lo:.3g} is beyond what {s.dtype} "
                   f"factorisations resolve (at most {1 / _pd_floor(s.dtype, d):.3g} at d={d}): work in float64 "
                   "(jax.config.update('jax_enable_x64', True), or jaxsteer.Steerer, which always does), "
                   "or shrink the covariance further.")
        else:
            fix = "Add shrinkage or a ridge (Σ + εI)."
        raise ValueError(
            f"covs: every covariance must be positive definite; covs{list(idx)} has eigenvalues in "
            f"[{lo:.3g}, {hi:.3g}]. {fix}"
        )
    p = p / total[..., None, None]
    return jnp.asarray(p, dtype=priors.dtype), jnp.asarray(s, dtype=covs.dtype)
