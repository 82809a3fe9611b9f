"""Closed-form pieces of the nearest-ideal problem (MATH §3).

* :func:`univariate_group` — one moving group in one dimension (the paper's Corollary 4.2, both
  branches ``s±``).
* :func:`template_update` — the optimal template given the group maps (intervention ``all``).
* :func:`prior_update` — the optimal base rates ``π`` given the subgroup feature KLs.

The univariate ``all`` problem (MATH §3) has no closed form of its own: the solver treats it like any
other ``all`` problem, with :func:`univariate_group` as the exact map update. An independent 1-D
search for it (closed form for a fixed scale ratio, then a search over the ratio) checks the solver
in ``tests/univariate_all.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsteer import _linalg
from jaxsteer.solve import _engine, _group

__all__ = ["univariate_group", "template_update", "prior_update"]


def univariate_group(prob: _group.GroupProblem, symmetric: bool) -> _group.GroupResult:
    """Exact optimum of one moving group for ``d = 1``.

    With ``λ_i ∝ w_i/σ_i²``, ``e_i = u_i − Σλu``, ``g_i = μ_i − Σλμ``, ``α = Σ w_i(G_i + e_i²)/σ_i²``,
    ``β = Σ w_i e_i g_i/σ_i²``: ``s± = (β ± √(β² + 4αW)) / 2α`` and ``b = Σ λ_i(μ_i − s u_i)``.
    The symmetric form takes ``s+ > 0``; the affine form the branch with the lower objective.

    Returns a :class:`GroupResult` with ``B = [[s, b]]``.
    """
    u, mu, G = prob.u[:, 0], prob.mu[:, 0], prob.G[:, 0, 0]
    p = prob.P[:, 0, 0]
    w = prob.w
    W = jnp.sum(w)
    lam = w * p / jnp.sum(w * p)
    e = u - jnp.sum(lam * u)
    g = mu - jnp.sum(lam * mu)
    alpha = jnp.sum(w * p * (G + e**2))
    beta = jnp.sum(w * p * e * g)
    root = jnp.sqrt(beta**2 + 4.0 * alpha * W)
    s_plus = (beta + root) / (2.0 * alpha)
    # s− = −2W / (β + √·) avoids cancellation when β > 0.
    s_minus = jnp.where(beta > 0, -2.0 * W / (beta + root), (beta - root) / (2.0 * alpha))

    def make(s):
        b = jnp.sum(lam * (mu - s * u))
        return jnp.stack([s, b])[None, :]

    B_plus, B_minus = make(s_plus), make(s_minus)
    aff = prob._replace(symmetric=False)
    v_plus, v_minus = _group.value(aff, B_plus), _group.value(aff, B_minus)
    if symmetric:
        B, v = B_plus, v_plus
    else:
        take_minus = v_minus < v_plus
        B = jnp.where(take_minus, B_minus, B_plus)
        v = jnp.minimum(v_plus, v_minus)
    res = _group.relative_residual(aff, B)
    finite = jnp.isfinite(v) & jnp.isfinite(res) & jnp.all(jnp.isfinite(B))
    status = jnp.where(finite, _engine.Status.CONVERGED, _engine.Status.NONFINITE).astype(jnp.int32)
    return _group.GroupResult(B, v, res, jnp.asarray(0, jnp.int32), status, jnp.asarray(0, jnp.int32))


def template_update(A, b, mu, P, w, c: int):
    """Optimal template for fixed group maps (MATH §3, "Template update"), gauge ``u_c = 0, G_c = I``.

    Args:
        A: ``[m, d, d]``, b: ``[m, d]`` group maps (template → group coordinates).
        mu: ``[k, m, d]``, P: ``[k, m, d, d]`` subgroup means and precisions.
        w: ``[k, m]`` weights ``q̃[i, a]``.
        c: the reference class whose template is held at the gauge.

    Returns:
        ``u [k, d]``, ``G [k, d, d]`` with ``G_i = W_i (Σ_a w_ia M_ia)⁻¹``,
        ``u_i = (Σ_a w_ia M_ia)⁻¹ Σ_a w_ia A_aᵀ P_ia (μ_ia − b_a)``, ``M_ia = A_aᵀ P_ia A_a``.
    """
    d = A.shape[-1]
    M = jnp.einsum("aji,kajl,alm->kaim", A, P, A)  # [k, m, d, d]
    Msum = jnp.einsum("ka,kaij->kij", w, M)
    rhs = jnp.einsum("ka,aji,kajl,kal->ki", w, A, P, mu - b[None])
    Minv = _linalg.psd_inv(Msum)
    G = jnp.sum(w, axis=1)[:, None, None] * Minv
    u = jnp.einsum("kij,kj->ki", Minv, rhs)
    G = G.at[c].set(jnp.eye(d, dtype=A.dtype))
    u = u.at[c].set(0.0)
    return u, _linalg.sym(G)


def prior_update(q, kl_sub):
    """Optimal base rates ``π_i ∝ exp(Σ_a p_a (ln q(i|a) − K_ia))`` and priors ``q̃ = p_a π_i``.

    Args:
        q: ``[k, m]`` the family's joint priors. kl_sub: ``[k, m]`` subgroup feature KLs ``K_ia``.

    Returns:
        ``(pi [k], q_tilde [k, m])``.
    """
    p = jnp.sum(q, axis=0)
    logits = jnp.sum(p[None, :] * (jnp.log(q) - jnp.log(p)[None, :] - kl_sub), axis=1)
    pi = jax.nn.softmax(logits)
    return pi, pi[:, None] * p[None, :]
