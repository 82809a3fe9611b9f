"""One moving group: the feature part of the nearest-ideal problem with the template held fixed.

In template coordinates whitened so that the reference class is ``N(u_c, I)``, a group map is
``B = [A | b]`` (``d × (d+1)``) and the objective (MATH §3, "Feature part, one moving group") is

    F(B) = Σ_i w_i KL(N(A u_i + b, A G_i Aᵀ) ‖ N(μ_i, Σ_i)).

With ``ũ_i = [u_i; 1]`` and ``C_i = [[G_i + u_i u_iᵀ, u_i], [u_iᵀ, 1]]`` its quadratic part is
``½ Σ_i w_i tr(P_i B C_i Bᵀ) − Σ_i w_i μ_iᵀ P_i B ũ_i`` (``P_i = Σ_i⁻¹``): the Hessian of that part is
``Σ_i w_i P_i ⊗ C_i``, a sum of Kronecker products, and the ``−W ln|det A|`` term adds
``W (A⁻ᵀ ⊗ A⁻¹)`` composed with a transposition. Both are assembled here analytically.

Forms. ``symmetric``: ``A`` symmetric positive definite (the paper's form, convex in ``B``).
``affine``: ``A`` any invertible matrix (non-convex). The form is a *traced* boolean, so that one
compiled solver handles groups of both kinds (the gauge group of intervention ``all`` is symmetric
while the others are affine).

The optimiser is a damped (Levenberg–Marquardt) Newton method on the dense ``n = d(d+1)`` system,
inside a fixed-shape ``lax.while_loop`` so that it jits and vmaps; every step is accepted only if it
lowers ``F``, so a start's value is never made worse. For the symmetric form the Newton system is
restricted to symmetric ``A`` by projecting the Hessian (``T H T + (I − T)``, ``T`` the symmetrisation),
which keeps every iterate exactly symmetric.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxsteer import _linalg


class GroupProblem(NamedTuple):
    """Data of one moving group (no batch axes; vmap over groups, starts and problems).

    Attributes:
        u: ``[k, d]`` template means (whitened template coordinates).
        G: ``[k, d, d]`` template covariances.
        logdet_G: ``[k]``.
        mu: ``[k, d]`` the group's subgroup means.
        P: ``[k, d, d]`` the group's subgroup precisions ``Σ_i⁻¹``.
        logdet_S: ``[k]`` ``ln det Σ_i``.
        w: ``[k]`` weights ``q̃[i, a]``.
        symmetric: ``[]`` bool, whether ``A`` is constrained to be symmetric positive definite.
    """

    u: jax.Array
    G: jax.Array
    logdet_G: jax.Array
    mu: jax.Array
    P: jax.Array
    logdet_S: jax.Array
    w: jax.Array
    symmetric: jax.Array


class GroupResult(NamedTuple):
    B: jax.Array  # [d, d+1]
    value: jax.Array  # F(B)
    residual: jax.Array  # ‖Aᵀ ∇_B F‖_F / (W √d)
    iterations: jax.Array
    converged: jax.Array


def split(B):
    return B[..., :, :-1], B[..., :, -1]


def _logabsdet(A, symmetric):
    """``ln|det A|``; ``−inf`` where ``A`` is singular, or (symmetric form) not positive definite."""
    chol = jnp.linalg.cholesky(_linalg.sym(A))
    ld_sym = _linalg.chol_logdet(chol)
    ld_sym = jnp.where(jnp.isfinite(ld_sym), ld_sym, -jnp.inf)
    sign, ld_gen = jnp.linalg.slogdet(A)
    ld_gen = jnp.where(sign == 0, -jnp.inf, ld_gen)
    return jnp.where(symmetric, ld_sym, ld_gen)


def subgroup_kls(prob: GroupProblem, B) -> jax.Array:
    """``KL(N(A u_i + b, A G_i Aᵀ) ‖ N(μ_i, Σ_i))`` for every class, ``[k]``."""
    A, b = split(B)
    d = A.shape[-1]
    e = jnp.einsum("ij,kj->ki", A, prob.u) + b - prob.mu  # [k, d]
    AG = jnp.einsum("ij,kjl->kil", A, prob.G)  # [k, d, d]
    tr = jnp.einsum("kij,kjl,il->k", prob.P, AG, A)  # tr(P A G Aᵀ)
    maha = jnp.einsum("ki,kij,kj->k", e, prob.P, e)
    ld = _logabsdet(A, prob.symmetric)
    return 0.5 * (tr + maha - d + prob.logdet_S - prob.logdet_G - 2.0 * ld)


def value(prob: GroupProblem, B) -> jax.Array:
    """``F(B) = Σ_i w_i KL_i``; ``+inf`` outside the domain."""
    v = jnp.sum(prob.w * subgroup_kls(prob, B))
    return jnp.where(jnp.isnan(v), jnp.inf, v)


def _project(G, symmetric):
    """Project a gradient-shaped ``[d, d+1]`` array onto the form's tangent space."""
    GA, Gb = split(G)
    GA = jnp.where(symmetric, _linalg.sym(GA), GA)
    return jnp.concatenate([GA, Gb[:, None]], axis=1)


def gradient(prob: GroupProblem, B) -> jax.Array:
    """Analytic ``∇_B F`` (projected onto symmetric ``A`` in the symmetric form), ``[d, d+1]``."""
    A, b = split(B)
    e = jnp.einsum("ij,kj->ki", A, prob.u) + b - prob.mu
    Pe = jnp.einsum("kij,kj->ki", prob.P, e)  # [k, d]
    PAG = jnp.einsum("kij,jl,klm->kim", prob.P, A, prob.G)
    gA = jnp.einsum("k,kim->im", prob.w, PAG) + jnp.einsum("k,ki,kj->ij", prob.w, Pe, prob.u)
    W = jnp.sum(prob.w)
    Ainv = jnp.linalg.inv(A)
    gA = gA - W * Ainv.T
    gb = jnp.einsum("k,ki->i", prob.w, Pe)
    return _project(jnp.concatenate([gA, gb[:, None]], axis=1), prob.symmetric)


def relative_residual(prob: GroupProblem, B, grad=None) -> jax.Array:
    """Affine-invariant stationarity measure ``‖Aᵀ ∇_B F‖_F / (W √d)`` (dimensionless).

    At the optimum ``Aᵀ∇_A F = Σ_i w_i Aᵀ P_i (A G_i + e_i u_iᵀ) − W I`` vanishes; the measure is its
    size relative to ``‖W I‖_F = W √d``, so it does not grow with the dimension.
    """
    if grad is None:
        grad = gradient(prob, B)
    A, _ = split(B)
    d = A.shape[-1]
    return jnp.linalg.norm(A.T @ grad) / (jnp.sum(prob.w) * jnp.sqrt(float(d)))


def hessian(prob: GroupProblem, B) -> jax.Array:
    """Analytic Hessian of ``F`` at ``B`` as an ``[n, n]`` matrix (row-major ``vec(B)``, ``n = d(d+1)``).

    In the symmetric form it is the projected system ``T H T + (I − T)``.
    """
    A, _ = split(B)
    d = A.shape[-1]
    # C_i = [[G_i + u_i u_iᵀ, u_i], [u_iᵀ, 1]]
    ut = jnp.concatenate([prob.u, jnp.ones_like(prob.u[:, :1])], axis=1)  # [k, d+1]
    C = jnp.einsum("ki,kj->kij", ut, ut)
    C = C.at[:, :d, :d].add(prob.G)
    H = jnp.einsum("k,kps,kqr->pqsr", prob.w, prob.P, C)  # [d, d+1, d, d+1]
    W = jnp.sum(prob.w)
    Ainv = jnp.linalg.inv(A)
    H = H.at[:, :d, :, :d].add(W * jnp.einsum("rp,qs->pqsr", Ainv, Ainv))
    Hs = _symmetric_restriction(H, d)
    H = jnp.where(prob.symmetric, Hs, H)
    n = d * (d + 1)
    return H.reshape(n, n)


def _symmetric_restriction(H, d):
    """``T H T + (I − T)`` with ``T`` symmetrising the ``A`` block of ``[d, d+1]`` arrays."""

    def sym_left(X):  # acts on indices (p, q) with q < d
        XA = X[:, :d]
        XA = 0.5 * (XA + jnp.swapaxes(XA, 0, 1))
        return jnp.concatenate([XA, X[:, d:]], axis=1)

    # left: indices 0,1 ; right: indices 2,3
    H = sym_left(H)
    Ht = jnp.transpose(H, (2, 3, 0, 1))
    Ht = sym_left(Ht)
    H = jnp.transpose(Ht, (2, 3, 0, 1))
    eye = jnp.eye(d, dtype=H.dtype)
    anti = 0.5 * (jnp.einsum("ps,qr->pqsr", eye, eye) - jnp.einsum("pr,qs->pqsr", eye, eye))
    return H.at[:, :d, :, :d].add(anti)


def best_offset(prob: GroupProblem, A) -> jax.Array:
    """``b*(A) = (Σ w_i P_i)⁻¹ Σ w_i P_i (μ_i − A u_i)``: the exact minimiser over ``b``."""
    Pw = jnp.einsum("k,kij->ij", prob.w, prob.P)
    r = prob.mu - jnp.einsum("ij,kj->ki", A, prob.u)
    rhs = jnp.einsum("k,kij,kj->i", prob.w, prob.P, r)
    return _linalg.spd_solve(Pw, rhs)


def with_offset(prob: GroupProblem, A) -> jax.Array:
    """``[A | b*(A)]``."""
    return jnp.concatenate([A, best_offset(prob, A)[:, None]], axis=1)


class _State(NamedTuple):
    B: jax.Array
    F: jax.Array
    g: jax.Array
    lam: jax.Array
    it: jax.Array
    res: jax.Array
    stalled: jax.Array


def newton(prob: GroupProblem, B0, *, tol, max_iter: int) -> GroupResult:
    """Damped Newton from ``B0`` until ``relative_residual ≤ tol`` or ``max_iter`` steps.

    Levenberg–Marquardt damping ``λ · mean(diag H) · I``: shrunk ×1/4 after an accepted step
    (quadratic convergence near the optimum), grown ×8 after a rejected one (a step that does not
    lower ``F``, leaves the domain, or meets a non-positive-definite system in the affine form).
    """
    dtype = B0.dtype
    B0 = jnp.concatenate([jnp.where(prob.symmetric, _linalg.sym(B0[:, :-1]), B0[:, :-1]), B0[:, -1:]], 1)
    g0 = gradient(prob, B0)
    lam0 = jnp.asarray(1e-3, dtype)
    state = _State(B0, value(prob, B0), g0, lam0, jnp.asarray(0), relative_residual(prob, B0, g0),
                   jnp.asarray(False))

    def cond(s: _State):
        return (s.res > tol) & (s.it < max_iter) & ~s.stalled & jnp.isfinite(s.F)

    def body(s: _State):
        H = hessian(prob, s.B)
        n = H.shape[0]
        scale = jnp.maximum(jnp.trace(H) / n, jnp.finfo(dtype).tiny)
        Hd = H + (s.lam * scale) * jnp.eye(n, dtype=dtype)
        chol = jnp.linalg.cholesky(Hd)
        step = -jax.scipy.linalg.cho_solve((chol, True), s.g.reshape(n)).reshape(s.B.shape)
        ok_sys = jnp.all(jnp.isfinite(step))
        step = jnp.where(ok_sys, step, 0.0)
        B_new = s.B + step
        F_new = value(prob, B_new)
        # Near the optimum F changes by ~residual², below rounding: allow a few ulps of slack so
        # that the quadratically convergent final steps are not rejected for noise.
        slack = 16.0 * jnp.finfo(dtype).eps * (jnp.abs(s.F) + jnp.sum(prob.w))
        accept = ok_sys & jnp.isfinite(F_new) & (F_new <= s.F + slack)
        B = jnp.where(accept, B_new, s.B)
        F = jnp.where(accept, F_new, s.F)
        g = jnp.where(accept, gradient(prob, B_new), s.g)
        lam = jnp.where(accept, jnp.maximum(s.lam * 0.25, 1e-12), s.lam * 8.0)
        res = relative_residual(prob, B, g)
        return _State(B, F, g, lam, s.it + 1, res, lam > 1e8)

    s = jax.lax.while_loop(cond, body, state)
    return GroupResult(s.B, s.F, s.res, s.it, s.res <= tol)
