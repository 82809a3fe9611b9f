"""Symmetric positive-definite matrix functions through ``eigh`` and Cholesky.

This is the only module that calls matrix decompositions directly, so every numerical choice about
square roots, inverses and log-determinants lives in one place.

All functions act on the last two axes and broadcast over any leading batch axes. Eigenvalues are
clipped from below at ``floor * max(eigenvalue)`` so that rounding never produces a NaN; inputs that
are genuinely not positive definite are rejected earlier, by validation in :mod:`jaxsteer.family`.

``jax.scipy.linalg.sqrtm`` is deliberately not used: it is CPU-only, slow, and returns complex
results for symmetric input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "sym",
    "psd_sqrt",
    "psd_inv_sqrt",
    "psd_sqrt_and_inv_sqrt",
    "psd_inv",
    "psd_logdet",
    "chol_logdet",
    "spd_solve",
]


def _floor(dtype) -> float:
    return float(jnp.finfo(dtype).eps) * 10.0


def sym(x: jax.Array) -> jax.Array:
    """Symmetric part ``(x + xᵀ)/2`` of ``x [..., d, d]``."""
    return 0.5 * (x + jnp.swapaxes(x, -1, -2))


def _eigh_clipped(x: jax.Array):
    w, v = jnp.linalg.eigh(sym(x))
    top = jnp.max(jnp.abs(w), axis=-1, keepdims=True)
    w = jnp.maximum(w, _floor(x.dtype) * top)
    return w, v


def _from_eig(w, v):
    return jnp.einsum("...ij,...j,...kj->...ik", v, w, v)


def _spectral(f, fprime):
    """A matrix function ``x ↦ V f(Λ) Vᵀ`` of SPD ``x`` with a Daleckii–Krein derivative rule.

    JAX's generic ``eigh`` derivative divides by eigenvalue gaps and returns NaN for repeated
    eigenvalues (the identity, isotropic covariances). The divided-difference rule below is exact
    and finite there: ``df = V (L ∘ (Vᵀ dx V)) Vᵀ`` with ``L_ij = (f(λ_i) − f(λ_j)) / (λ_i − λ_j)``,
    and ``f'(λ_i)`` where the gap vanishes.
    """

    @jax.custom_jvp
    def fn(x):
        w, v = _eigh_clipped(x)
        return _from_eig(f(w), v)

    @fn.defjvp
    def fn_jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        w, v = _eigh_clipped(x)
        fw, fpw = f(w), fprime(w)
        gap = w[..., :, None] - w[..., None, :]
        diff = fw[..., :, None] - fw[..., None, :]
        scale = jnp.max(jnp.abs(w), axis=-1)[..., None, None]
        close = jnp.abs(gap) <= 1e3 * _floor(x.dtype) * scale
        mean_fp = 0.5 * (fpw[..., :, None] + fpw[..., None, :])
        lmat = jnp.where(close, mean_fp, diff / jnp.where(close, 1.0, gap))
        vt = jnp.swapaxes(v, -1, -2)
        inner = vt @ sym(dx) @ v
        return _from_eig(fw, v), v @ (lmat * inner) @ vt

    return fn


_sqrt = _spectral(jnp.sqrt, lambda w: 0.5 / jnp.sqrt(w))
_inv_sqrt = _spectral(lambda w: 1.0 / jnp.sqrt(w), lambda w: -0.5 / (w * jnp.sqrt(w)))


def psd_sqrt(x: jax.Array) -> jax.Array:
    """Symmetric square root of an SPD matrix ``x [..., d, d]``, differentiable at repeated eigenvalues.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer._linalg import psd_sqrt
        >>> x = jnp.array([[4.0, 0.0], [0.0, 9.0]])
        >>> r = psd_sqrt(x)                             # diag(2, 3)
        >>> [round(v, 4) for v in jnp.diagonal(r).tolist()], bool(jnp.allclose(r @ r, x))
        ([2.0, 3.0], True)
    """
    return _sqrt(x)


def psd_inv_sqrt(x: jax.Array) -> jax.Array:
    """Symmetric inverse square root ``x^{-1/2}`` of an SPD matrix ``x [..., d, d]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer._linalg import psd_inv_sqrt
        >>> r = psd_inv_sqrt(jnp.array([[4.0, 0.0], [0.0, 9.0]]))    # diag(1/2, 1/3)
        >>> [round(v, 4) for v in jnp.diagonal(r).tolist()]
        [0.5, 0.3333]
    """
    return _inv_sqrt(x)


def psd_sqrt_and_inv_sqrt(x: jax.Array):
    """``(x^{1/2}, x^{-1/2})`` of an SPD matrix ``x [..., d, d]``."""
    return _sqrt(x), _inv_sqrt(x)


def psd_inv(x: jax.Array) -> jax.Array:
    """Inverse of an SPD matrix ``x [..., d, d]`` through Cholesky (symmetrised output)."""
    c = jnp.linalg.cholesky(sym(x))
    eye = jnp.broadcast_to(jnp.eye(x.shape[-1], dtype=x.dtype), x.shape)
    inv = jax.scipy.linalg.cho_solve((c, True), eye)
    return sym(inv)


def chol_logdet(c: jax.Array) -> jax.Array:
    """``log det`` of ``c cᵀ`` from its lower Cholesky factor ``c [..., d, d]``."""
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(c, axis1=-2, axis2=-1)), axis=-1)


def psd_logdet(x: jax.Array) -> jax.Array:
    """``log det x`` of an SPD matrix ``x [..., d, d]`` through Cholesky; ``nan`` if not SPD."""
    return chol_logdet(jnp.linalg.cholesky(sym(x)))


def spd_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solve ``a x = b`` for SPD ``a [..., n, n]`` and ``b [..., n]`` or ``[..., n, r]``."""
    c = jnp.linalg.cholesky(sym(a))
    if b.ndim == a.ndim - 1:
        return jax.scipy.linalg.cho_solve((c, True), b[..., None])[..., 0]
    return jax.scipy.linalg.cho_solve((c, True), b)
