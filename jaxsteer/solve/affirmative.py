"""Intervention ``affirmative``: the reference group stays as it is, every other group moves (MATH §3).

The template is the reference group's subgroups; the target priors are ``q̃[i, a] = p_a q(i | r)``;
each other group independently gets the map minimising its weighted feature KL. Only the ``m − 1``
moving groups are solved (the reference group's map is the exact identity), one after the other with
``lax.map``, not ``vmap``: the groups share the template, and a ``vmap`` over groups with shared
operands turns every matrix product into a mixed batched/unbatched ``dot_general`` that XLA:CPU runs
several times slower than the plain products (measured: 2.84 s against 0.49 s for one d = 128,
k = 28 family), on top of stepping the reference group in lock-step for nothing. A batch of
families is still vmapped as a whole by :func:`jaxsteer.nearest_ideal`, where every operand is
batched alike.

Symmetric form: convex (the paper's Theorem 4.1), damped Newton from ``A = Σ_ca^{1/2}``.
Affine form: non-convex; Newton from the symmetric optimum (so never worse than it) and from the
eigen-aligned starts, all vectorised, keeping the best.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxsteer.solve import _common, _group, closed_form


class RawSolution(NamedTuple):
    """Solver output for one problem, in whitened template coordinates (no batch axes)."""

    u: jax.Array  # [k, d]
    G: jax.Array  # [k, d, d]
    B: jax.Array  # [m, d, d+1]
    q_tilde: jax.Array  # [k, m]
    iterations: jax.Array  # []
    converged: jax.Array  # []
    residual: jax.Array  # []


def target_priors(q, r: int):
    """``q̃[i, a] = p_a q(i | r)``, ``[k, m]``."""
    p = jnp.sum(q, axis=0)
    return (q[:, r] / p[r])[:, None] * p[None, :]


def solve(q, means, covs, *, reference: int, reference_class: int, symmetric: bool,
          tol, max_iter: int, use_closed_form: bool) -> tuple[RawSolution, _common.Subgroups]:
    """Solve one (unbatched) affirmative problem; see :func:`jaxsteer.nearest_ideal`."""
    r, c = reference, reference_class
    k, m = q.shape
    d = means.shape[-1]
    sg = _common.subgroups(means, covs)
    tpl, B_ref, _ = _common.template_from_group(sg, r, c)
    w = target_priors(q, r)
    groups = jnp.arange(m)

    def one_group(a):
        prob_sym = _common.group_problem(tpl, sg, a, w[:, a], True)
        prob_aff = prob_sym._replace(symmetric=jnp.asarray(False))
        if d == 1 and use_closed_form:
            return closed_form.univariate_group(prob_sym if symmetric else prob_aff, symmetric)
        B0 = _common.symmetric_start(prob_sym, sg.S[c, a])
        res_sym = _group.newton(prob_sym, B0, tol=tol, max_iter=max_iter)
        if symmetric:
            return res_sym
        starts = _common.eigen_aligned_starts(tpl, sg, a, c)
        starts = jax.vmap(lambda A: _group.with_offset(prob_aff, A))(starts)
        starts = jnp.concatenate([res_sym.B[None], starts], axis=0)
        # lax.map, not vmap: the starts share the problem data (see the module docstring), and each
        # start then stops at its own iteration count instead of the slowest one's.
        runs = jax.lax.map(lambda B: _group.newton(prob_aff, B, tol=tol, max_iter=max_iter), starts)
        best = jnp.argmin(jnp.where(jnp.isfinite(runs.value), runs.value, jnp.inf))
        pick = jax.tree_util.tree_map(lambda x: x[best], runs)
        return pick._replace(iterations=res_sym.iterations + jnp.max(runs.iterations))

    # The moving groups 0..m−1 without r (r may be traced), solved one after the other.
    moving = jnp.arange(m - 1)
    moving = moving + (moving >= r)
    res = jax.lax.map(one_group, moving)
    is_ref = groups == r
    slot = jnp.clip(groups - (groups > r), 0, m - 2)  # group a's row in `res`
    B = jnp.where(is_ref[:, None, None], B_ref[None], res.B[slot])
    raw = RawSolution(tpl.u, tpl.G, B, w, jnp.max(res.iterations), jnp.all(res.converged),
                      jnp.max(res.residual))
    return raw, sg


def residual_fn(q, means, covs, *, reference: int, reference_class: int, symmetric: bool):
    """Optimality conditions ``R(B; θ) = 0`` of all group maps, for implicit differentiation."""
    r, c = reference, reference_class
    m = q.shape[1]
    sg = _common.subgroups(means, covs)
    tpl, B_ref, _ = _common.template_from_group(sg, r, c)
    w = target_priors(q, r)

    def f(B):
        def one(a, Ba):
            prob = _common.group_problem(tpl, sg, a, w[:, a], symmetric)
            return _common.group_residual_fn(prob)(Ba)

        R = jax.vmap(one)(jnp.arange(m), B)
        return jnp.where((jnp.arange(m) == r)[:, None, None], B - B_ref[None], R)

    return f
