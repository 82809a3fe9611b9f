"""Intervention ``all`` for ``d = 1`` and two groups by a 1-D search (MATH §3, "Univariate all"): an
independent check of the solver's univariate ``all`` path.

For a fixed scale ratio ``γ`` between the moving group and the reference the rest is closed form
(:func:`_profile`); a global search over ``γ`` (log grid, golden section, Newton polish) finds the
optimum, alternated with the closed-form prior update. It shares no code with the solver's
alternation and joint Newton phase, and its grid is global, so it also checks that the solver's
restarts find the best local optimum.
"""

import jax
import jax.numpy as jnp

from jaxsteer.solve.closed_form import prior_update


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
