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
Affine form: non-convex; Newton from the symmetric optimum (so never worse than it) and from the ``k``
lowest-valued eigen-aligned starts with sign patterns (:func:`_common.eigen_aligned_starts`), one
after the other, keeping the best (:func:`_group.best_start`: among starts tied within rounding, the one
that converged).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxsteer import _linalg
from jaxsteer.solve import _common, _engine, _group, closed_form


class RawSolution(NamedTuple):
    """Solver output for one problem, in whitened template coordinates (no batch axes)."""

    u: jax.Array  # [k, d]
    G: jax.Array  # [k, d, d]
    B: jax.Array  # [m, d, d+1]
    q_tilde: jax.Array  # [k, m]
    iterations: jax.Array  # [] Newton steps, summed over groups and starts
    status: jax.Array  # [] the most severe status of the moving groups
    residual: jax.Array  # [] the largest residual of the moving groups


def target_priors(q, r: int):
    """``q̃[i, a] = p_a q(i | r)``, ``[k, m]``."""
    p = jnp.sum(q, axis=0)
    return (q[:, r] / p[r])[:, None] * p[None, :]


def solve(q, means, covs, *, reference, reference_class: int, symmetric: bool, tol, max_iter,
          use_closed_form: bool, init=None,
          config: _engine.Config = _engine.DEFAULT) -> tuple[RawSolution, _common.Subgroups]:
    """Solve one (unbatched) affirmative problem; see :func:`jaxsteer.nearest_ideal`.

    ``init`` (optional, ``[m, d, d+1]``): every moving group's map in whitened template coordinates
    (:func:`whitened_maps`) to start from instead of the cold starts, or from the symmetric cold start
    where ``init`` is outside the domain. The symmetric form is convex (the same optimum); the affine
    form follows the local optimum ``init`` lies in (the cold solve picks the best of several starts).
    """
    r, c = reference, reference_class
    k, m = q.shape
    d = means.shape[-1]
    sg = _common.subgroups(means, covs)
    tpl, B_ref, _ = _common.template_from_group(sg, r, c)
    w = target_priors(q, r)
    groups = jnp.arange(m)
    newton = functools.partial(_group.newton, tol=tol, max_iter=max_iter, config=config)

    def one_group(a, B_init):
        prob_sym = _common.group_problem(tpl, sg, a, w[:, a], True)
        prob_aff = prob_sym._replace(symmetric=False)
        if d == 1 and use_closed_form:
            return closed_form.univariate_group(prob_sym if symmetric else prob_aff, symmetric)
        if B_init is not None:
            prob = prob_sym if symmetric else prob_aff
            # The cold start only where the warm one is outside the domain (a cond: unbatched, the
            # usual warm-started training step builds no cold start at all).
            usable = jnp.isfinite(_group.value(prob, B_init))
            B0 = jax.lax.cond(usable, lambda: B_init, lambda: _common.symmetric_start(prob_sym, sg.S[c, a]))
            return newton(prob, B0)
        res_sym = newton(prob_sym, _common.symmetric_start(prob_sym, sg.S[c, a]))
        if symmetric:
            return res_sym
        # The k most promising (lowest F) eigen-aligned starts and sign patterns, and the symmetric optimum.
        starts = _common.eigen_aligned_starts(tpl, sg, a, c)
        starts = jax.vmap(lambda A: _group.with_offset(prob_aff, A))(starts)
        values = jax.vmap(lambda B: _group.value(prob_aff, B))(starts)
        best_starts = jnp.argsort(jnp.where(jnp.isnan(values), jnp.inf, values))[:k]
        starts = jnp.concatenate([res_sym.B[None], starts[best_starts]], axis=0)
        # lax.map, not vmap: the starts share the problem data (see the module docstring), and each
        # start then stops at its own iteration count instead of the slowest one's.
        runs = jax.lax.map(lambda B: newton(prob_aff, B), starts)
        best = _group.best_start(runs, prob_aff, config)
        pick = jax.tree_util.tree_map(lambda x: x[best], runs)
        return pick._replace(iterations=(res_sym.iterations + jnp.sum(runs.iterations)).astype(jnp.int32))

    # The moving groups 0..m−1 without r (r may be traced), solved one after the other.
    moving = jnp.arange(m - 1)
    moving = moving + (moving >= r)
    if init is None:
        res = jax.lax.map(lambda a: one_group(a, None), moving)
    else:
        res = jax.lax.map(lambda args: one_group(*args), (moving, init[moving].astype(means.dtype)))
    is_ref = groups == r
    slot = jnp.clip(groups - (groups > r), 0, m - 2)  # group a's row in `res`
    B = jnp.where(is_ref[:, None, None], B_ref[None], res.B[slot])
    raw = RawSolution(tpl.u, tpl.G, B, w, jnp.sum(res.iterations).astype(jnp.int32), _engine.combine_status(res.status),
                      jnp.max(res.residual))
    return raw, sg


def whitened_maps(A, b, template_means, template_covs, reference_class: int):
    """An ``affirmative`` solution's maps in its whitened template coordinates, ``[..., m, d, d+1]``.

    ``A_w = A Γ_c^{1/2}``, ``b_w = b + A ν_c`` with the solution's template (the reference group's
    class-``c`` subgroup of the family it was solved on): the coordinates the solver works in.
    """
    c = reference_class
    root = _linalg.psd_sqrt(template_covs[..., c, :, :])
    Aw = A @ root[..., None, :, :]
    bw = b + jnp.einsum("...aij,...j->...ai", A, template_means[..., c, :])
    return jnp.concatenate([Aw, bw[..., None]], axis=-1)


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
