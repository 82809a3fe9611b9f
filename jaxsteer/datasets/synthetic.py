"""Synthetic class × group Gaussian families for examples, tests and benchmarks."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsteer.family import GaussianFamily

__all__ = ["make_gaussian_family"]


def make_gaussian_family(
    key: jax.Array,
    k: int = 2,
    m: int = 2,
    d: int = 2,
    *,
    batch_shape: tuple[int, ...] = (),
    mean_scale: float = 1.0,
    ridge: float = 0.3,
    dtype=None,
) -> GaussianFamily:
    """A random, well-conditioned class × group family (unequal base rates and group sizes).

    Priors are uniform on ``[0.5, 1.5]`` before normalisation; means are ``N(0, mean_scale²)``;
    covariances are ``X Xᵀ / d + ridge · I`` with ``X`` standard normal ``[d, d]``, so their
    eigenvalues are bounded below by ``ridge``.

    Args:
        key: a ``jax.random`` key.
        k, m, d: classes, groups, features.
        batch_shape: leading batch axes.
        dtype: floating dtype (default: JAX's default float, float64 under ``jax_enable_x64``).

    Returns:
        A :class:`GaussianFamily` with ``priors [*batch_shape, k, m]`` etc.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxsteer.datasets import make_gaussian_family
        >>> fam = make_gaussian_family(jax.random.PRNGKey(0), k=3, m=2, d=4, batch_shape=(128,))
        >>> fam.batch_shape, (fam.k, fam.m, fam.d), fam.priors.shape
        ((128,), (3, 2, 4), (128, 3, 2))
        >>> bool(jnp.allclose(fam.priors.sum(axis=(-2, -1)), 1.0))
        True
    """
    if min(k, m, d) < 1:
        raise ValueError(f"k, m, d: must be positive; got k={k}, m={m}, d={d}.")
    if ridge <= 0:
        raise ValueError(f"ridge: must be positive to keep covariances definite; got {ridge}.")
    dtype = dtype or jnp.zeros(()).dtype
    kq, kmu, kx = jax.random.split(key, 3)
    batch_shape = tuple(batch_shape)
    q = jax.random.uniform(kq, batch_shape + (k, m), dtype, 0.5, 1.5)
    q = q / jnp.sum(q, axis=(-2, -1), keepdims=True)
    mu = mean_scale * jax.random.normal(kmu, batch_shape + (k, m, d), dtype)
    x = jax.random.normal(kx, batch_shape + (k, m, d, d), dtype)
    cov = x @ jnp.swapaxes(x, -1, -2) / d + ridge * jnp.eye(d, dtype=dtype)
    return GaussianFamily(priors=q, means=mu, covs=cov)
