"""KL and Jensen–Shannon divergences between Gaussians and between class×group families (MATH §1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsteer import _linalg
from jaxsteer.family import GaussianFamily

__all__ = ["gaussian_kl", "kl_divergence", "subgroup_kl", "prior_kl", "js_divergence"]


def gaussian_kl(mean1, cov1, mean0, cov0) -> jax.Array:
    """``KL(N(mean1, cov1) ‖ N(mean0, cov0))`` in nats, batched.

    Args:
        mean1, mean0: ``[..., d]``.
        cov1, cov0: ``[..., d, d]`` symmetric positive definite.

    Returns:
        ``[...]``.

    Example:
        >>> gaussian_kl(jnp.zeros(2), jnp.eye(2), jnp.ones(2), 2 * jnp.eye(2))
    """
    d = mean1.shape[-1]
    c0 = jnp.linalg.cholesky(_linalg.sym(cov0))
    c1 = jnp.linalg.cholesky(_linalg.sym(cov1))
    # tr(S0⁻¹ S1) = ‖L0⁻¹ L1‖_F², Mahalanobis through one triangular solve.
    c0b = jnp.broadcast_to(c0, jnp.broadcast_shapes(c0.shape, c1.shape))
    m = jax.scipy.linalg.solve_triangular(c0b, jnp.broadcast_to(c1, c0b.shape), lower=True)
    tr = jnp.sum(m**2, axis=(-2, -1))
    diff = mean1 - mean0
    c0d = jnp.broadcast_to(c0, diff.shape[:-1] + (d, d))
    z = jax.scipy.linalg.solve_triangular(c0d, diff[..., None], lower=True)[..., 0]
    maha = jnp.sum(z**2, axis=-1)
    return 0.5 * (tr + maha - d + _linalg.chol_logdet(c0) - _linalg.chol_logdet(c1))


def subgroup_kl(p: GaussianFamily, q: GaussianFamily) -> jax.Array:
    """Feature KL of every subgroup, ``KL(N(μ̃_ia, Σ̃_ia) ‖ N(μ_ia, Σ_ia))``, shape ``[..., k, m]``."""
    return gaussian_kl(p.means, p.covs, q.means, q.covs)


def prior_kl(p: GaussianFamily, q: GaussianFamily) -> jax.Array:
    """``Σ_ia p̃[i,a] ln(p̃[i,a] / q[i,a])`` (with ``0 ln 0 = 0``), shape ``[...]``."""
    pp, qq = p.priors, q.priors
    safe_p = jnp.where(pp > 0, pp, 1.0)
    terms = jnp.where(pp > 0, pp * (jnp.log(safe_p) - jnp.log(qq)), 0.0)
    return jnp.sum(terms, axis=(-2, -1))


def kl_divergence(p: GaussianFamily, q: GaussianFamily) -> jax.Array:
    """Joint ``KL(p ‖ q)`` of two class×group families with the same ``(k, m, d)`` (MATH §1).

    ``Σ_ia p̃[i,a] ln(p̃[i,a]/q[i,a]) + Σ_ia p̃[i,a] KL(N(μ̃_ia, Σ̃_ia) ‖ N(μ_ia, Σ_ia))``.
    Leading batch axes broadcast. For two log-normal families this equals the KL of the laws of ``X``
    (KL is invariant under the bijection ``log``).

    Returns:
        ``[...]`` in nats; ``inf`` where ``p`` puts mass on a subgroup that ``q`` gives prior zero.

    Example:
        >>> kl_divergence(nearest_ideal(fam).target, fam)
    """
    if (p.k, p.m, p.d) != (q.k, q.m, q.d):
        raise ValueError(
            f"kl_divergence: families must share (k, m, d); got {(p.k, p.m, p.d)} and {(q.k, q.m, q.d)}."
        )
    if p.lognormal != q.lognormal:
        raise ValueError("kl_divergence: cannot compare a log-normal family with a Gaussian one.")
    feat = jnp.sum(p.priors * subgroup_kl(p, q), axis=(-2, -1))
    return prior_kl(p, q) + feat


def js_divergence(p: GaussianFamily, q: GaussianFamily, *, key=None, n_samples: int = 20000):
    """Jensen–Shannon divergence of two families by Monte Carlo (no closed form for Gaussian mixtures).

    ``JS = ½ KL(p ‖ M) + ½ KL(q ‖ M)`` with ``M = (p + q)/2``, estimated from ``n_samples`` draws of
    each joint law (label and group included). Returns ``(js, standard_error)`` for one family pair.
    Univariate families get an exact quadrature in :func:`jaxsteer.ideal.js_divergence_1d`.

    Example:
        >>> js, se = js_divergence(sol.target, fam, key=jax.random.PRNGKey(0))
    """
    if key is None:
        key = jax.random.PRNGKey(0)
    k1, k2 = jax.random.split(key)

    def log_joint(fam, x, y, a):
        ld = fam.log_density(x)  # [n, k, m]
        n = x.shape[0]
        return ld[jnp.arange(n), y, a] + jnp.log(fam.priors[y, a])

    def half(fam, other, k):
        x, y, a = fam.sample(k, n_samples)
        lp = log_joint(fam, x, y, a)
        lq = log_joint(other, x, y, a)
        lm = jnp.logaddexp(lp, lq) - jnp.log(2.0)
        return lp - lm

    t1 = half(p, q, k1)
    t2 = half(q, p, k2)
    js = 0.5 * (jnp.mean(t1) + jnp.mean(t2))
    se = 0.5 * jnp.sqrt(jnp.var(t1) / n_samples + jnp.var(t2) / n_samples)
    return js, se
