"""Closed-form pieces of the nearest-ideal problem (MATH §3).

* :func:`univariate_group` — one moving group in one dimension (the paper's Corollary 4.2, both
  branches ``s±``).
* :func:`template_update` — the optimal template given the group maps (intervention ``all``).
* :func:`prior_update` — the optimal base rates ``π`` given the subgroup feature KLs.
* :func:`univariate_all` — intervention ``all`` for ``d = 1`` and two groups: closed form for a fixed
  scale ratio ``γ``, a 1-D search over ``γ`` (grid, golden section, Newton polish), alternated with
  :func:`prior_update`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsteer import _linalg
from jaxsteer.solve import _group

__all__ = ["univariate_group", "template_update", "prior_update", "univariate_all"]


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
    aff = prob._replace(symmetric=jnp.asarray(False))
    v_plus, v_minus = _group.value(aff, B_plus), _group.value(aff, B_minus)
    if symmetric:
        B, v = B_plus, v_plus
    else:
        take_minus = v_minus < v_plus
        B = jnp.where(take_minus, B_minus, B_plus)
        v = jnp.minimum(v_plus, v_minus)
    res = _group.relative_residual(aff, B)
    return _group.GroupResult(B, v, res, jnp.asarray(0), jnp.asarray(True))


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


# --------------------------------------------------------------------------------------------
# Univariate `all`, two groups.


def _profile(gamma, mu, var, w, r: int):
    """Feature objective for a fixed scale ratio ``γ`` (group ``1−r`` over group ``r``), minimised over
    the template (``ν_i``, ``τ_i²``) and the moving group's offset; returns ``(value, ν, τ², b)``.

    Gauge: group ``r``'s map is the identity, group ``o = 1 − r`` maps ``z ↦ γ z + b``.
    """
    o = 1 - r
    k = mu.shape[0]
    wr, wo = w[:, r], w[:, o]
    pr, po = 1.0 / var[:, r], 1.0 / var[:, o]
    Wi = wr + wo
    tau2 = Wi / (wr * pr + wo * gamma**2 * po)
    # Mean part: least squares in (ν_0..ν_{k−1}, b).
    # ½Σ wr pr (ν − μr)² + ½Σ wo po (γν + b − μo)²
    h_nn = jnp.diag(wr * pr + wo * po * gamma**2)
    h_nb = wo * po * gamma
    h_bb = jnp.sum(wo * po)
    H = jnp.zeros((k + 1, k + 1), mu.dtype)
    H = H.at[:k, :k].set(h_nn).at[:k, k].set(h_nb).at[k, :k].set(h_nb).at[k, k].set(h_bb)
    rhs = jnp.concatenate([wr * pr * mu[:, r] + wo * po * gamma * mu[:, o], jnp.sum(wo * po * mu[:, o])[None]])
    sol = jnp.linalg.solve(H, rhs)
    nu, b = sol[:k], sol[k]

    def kl(m1, v1, m0, v0):
        return 0.5 * (v1 / v0 + (m1 - m0) ** 2 / v0 - 1.0 + jnp.log(v0) - jnp.log(v1))

    val = jnp.sum(wr * kl(nu, tau2, mu[:, r], var[:, r])) + jnp.sum(
        wo * kl(gamma * nu + b, gamma**2 * tau2, mu[:, o], var[:, o])
    )
    return val, nu, tau2, b


def _search_gamma(mu, var, w, r: int, positive: bool, n_grid: int = 241, n_golden: int = 80):
    """Global 1-D minimisation of the profile over ``γ > 0`` (or ``γ < 0``): log grid, golden section
    on the bracketing cell, then Newton steps on ``ln|γ|`` for the last digits."""
    o = 1 - r
    sign = 1.0 if positive else -1.0
    centre = 0.5 * jnp.mean(jnp.log(var[:, o]) - jnp.log(var[:, r]))
    grid = centre + jnp.linspace(-8.0, 8.0, n_grid, dtype=mu.dtype)

    def f(t):
        return _profile(sign * jnp.exp(t), mu, var, w, r)[0]

    vals = jax.vmap(f)(grid)
    vals = jnp.where(jnp.isnan(vals), jnp.inf, vals)
    i = jnp.clip(jnp.argmin(vals), 1, n_grid - 2)
    lo, hi = grid[i - 1], grid[i + 1]
    ratio = (jnp.sqrt(5.0) - 1.0) / 2.0

    def golden(_, ab):
        lo, hi = ab
        x1 = hi - ratio * (hi - lo)
        x2 = lo + ratio * (hi - lo)
        left = f(x1) < f(x2)
        return jnp.where(left, lo, x1), jnp.where(left, x2, hi)

    lo, hi = jax.lax.fori_loop(0, n_golden, golden, (lo, hi))
    t = 0.5 * (lo + hi)
    df = jax.grad(f)
    d2f = jax.grad(df)

    def polish(_, t):
        h = d2f(t)
        step = jnp.where(h > 0, -df(t) / h, 0.0)
        t_new = t + jnp.clip(step, -0.1, 0.1)
        return jnp.where(f(t_new) <= f(t), t_new, t)

    t = jax.lax.fori_loop(0, 4, polish, t)
    return sign * jnp.exp(t), f(t)


def univariate_all(q, mu, var, *, symmetric: bool, reference: int = 0, max_outer: int = 200, tol=1e-12):
    """Intervention ``all`` for ``d = 1``, ``m = 2`` (MATH §3, "Univariate all").

    Args:
        q: ``[k, 2]`` priors; mu: ``[k, 2]`` means; var: ``[k, 2]`` variances.
        symmetric: scale ratio restricted to ``γ > 0``; otherwise both signs are searched.
        reference: the group held at the identity map (the gauge; the optimum does not depend on it).

    Returns:
        dict with ``value`` (total KL), ``gamma``, ``nu [k]``, ``tau2 [k]``, ``b``, ``pi [k]``,
        ``iterations`` and ``converged`` (the change of the objective in the last alternation).
    """
    r = reference
    p = jnp.sum(q, axis=0)

    def features(w):
        g_pos, v_pos = _search_gamma(mu, var, w, r, True)
        if symmetric:
            return g_pos, v_pos
        g_neg, v_neg = _search_gamma(mu, var, w, r, False)
        neg = v_neg < v_pos
        return jnp.where(neg, g_neg, g_pos), jnp.minimum(v_pos, v_neg)

    def subgroup_kls(gamma, w):
        _, nu, tau2, b = _profile(gamma, mu, var, w, r)
        m1 = jnp.stack([nu, gamma * nu + b], axis=1) if r == 0 else jnp.stack([gamma * nu + b, nu], axis=1)
        v1 = jnp.stack([tau2, gamma**2 * tau2], axis=1) if r == 0 else jnp.stack([gamma**2 * tau2, tau2], axis=1)
        return 0.5 * (v1 / var + (m1 - mu) ** 2 / var - 1.0 + jnp.log(var) - jnp.log(v1))

    def total(pi, gamma):
        qt = pi[:, None] * p[None, :]
        return jnp.sum(qt * (jnp.log(qt) - jnp.log(q))) + jnp.sum(qt * subgroup_kls(gamma, qt))

    pi0 = jnp.sum(q, axis=1)

    def body(state):
        pi, _, it, prev, _ = state
        w = pi[:, None] * p[None, :]
        gamma, _ = features(w)
        pi, _ = prior_update(q, subgroup_kls(gamma, w))
        val = total(pi, gamma)
        return pi, gamma, it + 1, val, jnp.abs(prev - val)

    def cond(state):
        _, _, it, _, change = state
        return (it < max_outer) & (change > tol)

    init = (pi0, jnp.asarray(1.0, mu.dtype), jnp.asarray(0), jnp.asarray(jnp.inf, mu.dtype),
            jnp.asarray(jnp.inf, mu.dtype))
    pi, gamma, it, val, change = jax.lax.while_loop(cond, body, init)
    w = pi[:, None] * p[None, :]
    _, nu, tau2, b = _profile(gamma, mu, var, w, r)
    return dict(value=val, gamma=gamma, nu=nu, tau2=tau2, b=b, pi=pi, iterations=it,
                converged=change <= tol)
