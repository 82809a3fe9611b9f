"""Projected, preconditioned, matrix-free Newton–CG on a flat vector (a generic kernel).

Used where the variables are too many for a dense Hessian and the structure is not a single group's
Kronecker sum: the joint problem of intervention ``all`` at large ``d`` (see
:mod:`jaxsteer.solve.all_groups`). The caller supplies

* ``f``: the objective of a flat vector, ``+inf`` outside its domain;
* ``project``: the orthogonal projection ``T`` onto the feasible directions (gauge and symmetry
  constraints: a linear map with ``T = Tᵀ = T²``), applied to gradients, Hessian–vector products and
  steps, so every iterate stays feasible;
* ``make_preconditioner(x)``: returns ``r ↦ M⁻¹ r`` for an SPD approximation ``M`` of the projected
  Hessian at ``x`` (rebuilt once per Newton step);
* ``residual(x)``: the caller's dimensionless optimality measure, compared with ``tol``.

Each Newton step solves ``T H T s = −T g`` inexactly by preconditioned CG (Eisenstat–Walker forcing
``η = min(¼, √residual)``; stop at negative curvature), with Hessian–vector products from one
``jax.linearize`` of the gradient per step, then a backtracking Armijo line search on ``f``. Every
accepted step lowers ``f`` (up to a few ulps of slack), so the value never gets worse than the start's.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Result(NamedTuple):
    x: jax.Array
    value: jax.Array
    residual: jax.Array
    iterations: jax.Array  # Newton steps
    cg_iterations: jax.Array  # total CG iterations (Hessian–vector products)


class _CG(NamedTuple):
    s: jax.Array
    r: jax.Array
    p: jax.Array
    rz: jax.Array
    j: jax.Array
    stop: jax.Array


def _direction(hvp, Minv, g, eta, max_cg: int):
    """Truncated PCG on ``H s = −g``. Negative curvature on the first direction returns that
    (preconditioned steepest-descent) direction; later, the iterate so far."""
    r0 = -g
    z0 = Minv(r0)
    gnorm = jnp.linalg.norm(g)
    s0 = _CG(jnp.zeros_like(g), r0, z0, jnp.vdot(r0, z0), jnp.asarray(0), gnorm == 0)

    def cond(c: _CG):
        return ~c.stop & (c.j < max_cg)

    def body(c: _CG):
        hp = hvp(c.p)
        curv = jnp.vdot(c.p, hp)
        neg = curv <= 1e-14 * jnp.vdot(c.p, c.p) * jnp.maximum(jnp.abs(c.rz), jnp.finfo(g.dtype).tiny)
        neg = neg | ~jnp.isfinite(curv)
        alpha = c.rz / jnp.where(neg, 1.0, curv)
        first = c.j == 0
        s = jnp.where(neg, jnp.where(first, c.p, c.s), c.s + alpha * c.p)
        r = c.r - alpha * hp
        z = Minv(r)
        rz = jnp.vdot(r, z)
        p = z + (rz / c.rz) * c.p
        done = neg | (jnp.linalg.norm(r) <= eta * gnorm)
        return _CG(s, jnp.where(neg, c.r, r), jnp.where(neg, c.p, p), jnp.where(neg, c.rz, rz), c.j + 1, done)

    c = jax.lax.while_loop(cond, body, s0)
    return c.s, c.j


class _State(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    res: jax.Array
    it: jax.Array
    cg: jax.Array
    stalled: jax.Array


def minimize(
    f: Callable[[jax.Array], jax.Array],
    x0: jax.Array,
    *,
    project: Callable[[jax.Array], jax.Array],
    make_preconditioner: Callable[[jax.Array], Callable[[jax.Array], jax.Array]],
    residual: Callable[[jax.Array], jax.Array],
    tol,
    max_iter: int,
    max_cg: int,
    max_backtracks: int = 40,
) -> Result:
    """Minimise ``f`` from ``x0`` (a feasible flat vector ``[n]``) until ``residual(x) ≤ tol``,
    ``max_iter`` Newton steps, or a step that cannot lower ``f`` (stalled).

    Example:
        >>> f = lambda x: 0.5 * jnp.sum(jnp.array([1.0, 100.0]) * x**2) - x[0]
        >>> res = minimize(f, jnp.zeros(2), project=lambda v: v,
        ...                make_preconditioner=lambda x: (lambda r: r),
        ...                residual=lambda x: jnp.linalg.norm(jax.grad(f)(x)), tol=1e-12,
        ...                max_iter=20, max_cg=10)
        >>> res.x  # [1, 0]
    """
    dtype = x0.dtype
    eps = jnp.finfo(dtype).eps
    grad = jax.grad(f)

    def safe_f(x):
        v = f(x)
        return jnp.where(jnp.isnan(v), jnp.inf, v)

    def cond(s: _State):
        return (s.res > tol) & (s.it < max_iter) & ~s.stalled & jnp.isfinite(s.f)

    def body(s: _State):
        _, lin = jax.linearize(grad, s.x)

        def hvp(v):
            return project(lin(project(v)))

        M = make_preconditioner(s.x)

        def Minv(r):
            return project(M(r))

        eta = jnp.clip(jnp.sqrt(s.res), 1e-3 * tol, 0.25)
        step, ncg = _direction(hvp, Minv, s.g, eta, max_cg)
        slope = jnp.vdot(s.g, step)
        slack = 16.0 * eps * (jnp.abs(s.f) + 1.0)

        # Where the predicted decrease is below the rounding of f, Armijo only sees noise: take the
        # full step if it stays in the domain and keep it only if the residual drops (as in
        # jaxsteer.solve._group.newton_cg).
        noise = -slope <= slack

        def armijo(alpha, f_new):
            return (f_new <= s.f + 1e-4 * alpha * slope + slack) | (noise & jnp.isfinite(f_new))

        def ls_cond(c):
            alpha, f_new, n = c
            return ~armijo(alpha, f_new) & (n < max_backtracks)

        def ls_body(c):
            alpha, _, n = c
            alpha = 0.5 * alpha
            return alpha, safe_f(s.x + alpha * step), n + 1

        one = jnp.asarray(1.0, dtype)
        alpha, f_new, _ = jax.lax.while_loop(ls_cond, ls_body, (one, safe_f(s.x + step), jnp.asarray(0)))
        accept = armijo(alpha, f_new) & (slope < 0) & jnp.all(jnp.isfinite(step))
        x_new = s.x + alpha * step
        res_new = residual(x_new)
        accept = accept & (~noise | (res_new < s.res))
        x = jnp.where(accept, x_new, s.x)
        fx = jnp.where(accept, f_new, s.f)
        g = jnp.where(accept, project(grad(x)), s.g)
        res = jnp.where(accept, res_new, s.res)
        return _State(x, fx, g, res, s.it + 1, s.cg + ncg, ~accept)

    s0 = _State(x0, safe_f(x0), project(grad(x0)), residual(x0), jnp.asarray(0), jnp.asarray(0),
                jnp.asarray(False))
    s = jax.lax.while_loop(cond, body, s0)
    return Result(s.x, s.f, s.res, s.it, s.cg)
