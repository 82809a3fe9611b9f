"""Pieces shared by the interventions: whitening, group problems, starts, implicit differentiation."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp

from jaxsteer import _linalg
from jaxsteer.solve import _decomp, _group


class Subgroups(NamedTuple):
    """Per-subgroup data of one family, unbatched: ``mu [k, m, d]``, ``S``, ``P [k, m, d, d]``, ``logdet [k, m]``."""

    mu: jax.Array
    S: jax.Array
    P: jax.Array
    logdet: jax.Array


class TargetKL(NamedTuple):
    """The ideal target of one problem and its KL to the family (unbatched).

    ``priors [k, m]``, ``means [k, m, d]``, ``covs [k, m, d, d]``; ``kl_features`` and ``kl_priors``
    ``[]``; ``subgroup_kl [k, m]``.
    """

    priors: jax.Array
    means: jax.Array
    covs: jax.Array
    kl_features: jax.Array
    kl_priors: jax.Array
    subgroup_kl: jax.Array


class Solved(NamedTuple):
    """One problem solved by an intervention (unbatched), as :func:`jaxsteer.nearest_ideal` reads it.

    The ideal ``target`` and its KL (:class:`TargetKL`), the maps ``A [m, d, d]``, ``b [m, d]`` from
    template to group coordinates, the template ``nu [k, d]``, ``Gamma [k, d, d]`` and base rates
    ``pi [k]``, and the solve's ``status``, ``iterations`` and ``residual``.
    """

    target: TargetKL
    A: jax.Array
    b: jax.Array
    nu: jax.Array
    Gamma: jax.Array
    pi: jax.Array
    status: jax.Array
    iterations: jax.Array
    residual: jax.Array


def subgroups(means, covs) -> Subgroups:
    covs = _linalg.sym(covs)
    chol = jnp.linalg.cholesky(covs)
    eye = jnp.broadcast_to(jnp.eye(covs.shape[-1], dtype=covs.dtype), covs.shape)
    P = _linalg.sym(jax.scipy.linalg.cho_solve((chol, True), eye))
    return Subgroups(means, covs, P, _linalg.chol_logdet(chol))


class Template(NamedTuple):
    """Template ``N(u_i, G_i)`` in whitened coordinates: ``u [k, d]``, ``G [k, d, d]``, ``logdet_G [k]``."""

    u: jax.Array
    G: jax.Array
    logdet_G: jax.Array


def template_from_group(sg: Subgroups, r, c: int):
    """Group ``r``'s subgroups whitened by its reference-class covariance and centred at its mean.

    Returns the template (``u_c = 0``, ``G_c = I``) and the exact map of group ``r`` in those
    coordinates, ``B_r = [Σ_cr^{1/2} | μ_cr]``, together with ``Σ_cr^{-1/2}``.
    """
    S_cr = sg.S[c, r]
    root, inv_root = _linalg.psd_sqrt_and_inv_sqrt(S_cr)
    u = jnp.einsum("ij,kj->ki", inv_root, sg.mu[:, r] - sg.mu[c, r])
    G = _linalg.sym(jnp.einsum("ij,kjl,lm->kim", inv_root, sg.S[:, r], inv_root))
    logdet_G = sg.logdet[:, r] - sg.logdet[c, r]
    B_r = jnp.concatenate([root, sg.mu[c, r][:, None]], axis=1)
    return Template(u, G, logdet_G), B_r, inv_root


def group_problem(tpl: Template, sg: Subgroups, a, w_a, symmetric) -> _group.GroupProblem:
    """Group ``a``'s problem. ``symmetric`` stays a Python bool where it is one (then only that form's
    factorisations and preconditioner are compiled; ``jnp.asarray`` would make it a tracer under
    ``jit``), else a traced boolean (intervention ``all``, where the gauge group is symmetric)."""
    return _group.GroupProblem(
        u=tpl.u, G=tpl.G, logdet_G=tpl.logdet_G, mu=sg.mu[:, a], P=sg.P[:, a],
        logdet_S=sg.logdet[:, a], w=w_a, symmetric=symmetric if isinstance(symmetric, bool) else jnp.asarray(symmetric),
    )


def symmetric_start(prob: _group.GroupProblem, S_ca) -> jax.Array:
    """Start of the symmetric-form solve: the better (lower ``F``) of two closed forms, ``[d, d+1]``.

    * ``A = Σ_ca^{1/2}`` reproduces the reference class exactly (its template is ``N(0, I)``);
    * the *pooled* start solves the objective with every precision ``P_i`` replaced by their
      weighted mean ``P̄ = Σ w_i P_i / W`` and the mean term's cross part dropped: then ``F`` has the
      quadratic part ``½ tr(P̄ A C̄ A)`` with ``C̄ = Σ_i w_i (G_i + (u_i − ū)(u_i − ū)ᵀ)`` (template
      scatter, within and between classes, after ``b`` is eliminated), whose symmetric minimiser
      against ``−W ln det A`` satisfies ``A C̄ A = W P̄⁻¹``: the matrix geometric mean
      ``A = C̄^{-1/2} (C̄^{1/2} W P̄⁻¹ C̄^{1/2})^{1/2} C̄^{-1/2}``, computed from one generalised
      eigendecomposition. It is exact when the group's class precisions are equal, and accounts for
      every class, not only the reference one.
    """
    w = prob.w
    W = jnp.sum(w)
    Pbar = _linalg.sym(jnp.einsum("k,kij->ij", w, prob.P)) / W
    du = prob.u - jnp.einsum("k,ki->i", w, prob.u) / W
    Cbar = _linalg.sym(jnp.einsum("k,kij->ij", w, prob.G) + jnp.einsum("k,ki,kj->ij", w, du, du))
    # One generalised eigendecomposition: with Lᵀ C̄ L = I and Lᵀ (P̄/W) L = Θ, A = L Θ^{-1/2} Lᵀ
    # satisfies A C̄ A = L Θ⁻¹ Lᵀ = W P̄⁻¹.
    L, theta = _decomp.geig(Cbar, Pbar / W)
    pooled = _group.with_offset(prob, _linalg.sym((L / jnp.sqrt(theta)) @ L.T))
    ref = _group.with_offset(prob, _linalg.psd_sqrt(S_ca))
    better = _group.value(prob, pooled) < _group.value(prob, ref)
    return jnp.where(better, pooled, ref)


#: Sign patterns tried per eigen-aligned start: all ``2^d`` up to ``d = 3``, else the heuristic signs
#: and single flips of the ``SIGN_FLIPS − 1`` least certain of them.
SIGN_FLIPS = 8


def _sign_patterns(certainty, d: int):
    """``[F, d]`` ±1 patterns multiplying the heuristic signs: every pattern for ``2^d ≤ SIGN_FLIPS``,
    else none flipped and each of the ``SIGN_FLIPS − 1`` least certain coordinates flipped alone."""
    if 2 ** d <= SIGN_FLIPS:
        grid = jnp.stack(jnp.meshgrid(*([jnp.asarray([1.0, -1.0])] * d), indexing="ij"), axis=-1)
        return grid.reshape(-1, d).astype(certainty.dtype)
    order = jnp.argsort(certainty)[: SIGN_FLIPS - 1]
    flips = 1.0 - 2.0 * jax.nn.one_hot(order, d, dtype=certainty.dtype)
    return jnp.concatenate([jnp.ones((1, d), certainty.dtype), flips], axis=0)


def eigen_aligned_starts(tpl: Template, sg: Subgroups, a, c: int) -> jax.Array:
    """Eigen-aligned starts for the affine form (MATH §3), for every non-reference class ``j``.

    Whiten group ``a`` by its class-``c`` covariance; take eigenvectors ``V_t`` of the template's
    ``G_j`` and ``V_a`` of the group's whitened class-``j`` covariance (both ascending), signs from the
    whitened mean differences, and ``A_0 = Σ_ca^{1/2} V_a diag(s) V_tᵀ``. A sign is ill-determined
    where the mean difference barely projects on its eigenvector, so each start comes with sign
    patterns (:func:`_sign_patterns`): measured over 32 random group problems (k ∈ {2, 3},
    d ∈ {2, 3, 4}), the heuristic signs alone missed the best local optimum twice, the ``k`` best
    (lowest ``F``) of the patterns never. Returns ``[(k−1)·F, d, d]`` (offsets filled in by the caller).
    """
    k, d = tpl.u.shape
    js = jnp.asarray([j for j in range(k) if j != c])
    root_a, inv_a = _linalg.psd_sqrt_and_inv_sqrt(sg.S[c, a])
    Ga = jnp.einsum("ij,kjl,lm->kim", inv_a, sg.S[js, a], inv_a)
    da = jnp.einsum("ij,kj->ki", inv_a, sg.mu[js, a] - sg.mu[c, a])
    _, Vt = jnp.linalg.eigh(tpl.G[js])
    _, Va = jnp.linalg.eigh(_linalg.sym(Ga))
    dt = tpl.u[js] - tpl.u[c]
    proj = jnp.einsum("kij,ki->kj", Vt, dt) * jnp.einsum("kij,ki->kj", Va, da)
    s = jnp.where(proj < 0, -1.0, 1.0).astype(Vt.dtype)
    flips = jax.vmap(lambda p: _sign_patterns(jnp.abs(p), d))(proj)  # [k-1, F, d]
    starts = jnp.einsum("ij,kjl,kfl,kml->kfim", root_a, Va, s[:, None, :] * flips, Vt)
    return starts.reshape(-1, d, d)


def group_residual_fn(prob: _group.GroupProblem):
    """Optimality residual whose Jacobian is the (projected) Hessian: ``T∇F(TB) + (I − T)B``."""

    def f(B):
        A, b = _group.split(B)
        As = jnp.where(prob.symmetric, _linalg.sym(A), A)
        Bs = jnp.concatenate([As, b[:, None]], axis=1)
        g = _group.gradient(prob, Bs)
        anti = jnp.where(prob.symmetric, A - As, jnp.zeros_like(A))
        return g + jnp.concatenate([anti, jnp.zeros_like(b[:, None])], axis=1)

    return f


def dense_tangent_solve(g, y):
    """Solve the linearised optimality system ``g(x) = y`` by materialising its Jacobian."""
    flat_y, unravel = jax.flatten_util.ravel_pytree(y)
    n = flat_y.shape[0]

    def gflat(v):
        return jax.flatten_util.ravel_pytree(g(unravel(v)))[0]

    J = jax.jacfwd(gflat)(jnp.zeros(n, flat_y.dtype))
    return unravel(jnp.linalg.solve(J, flat_y))


def implicit(f, x_star):
    """Attach implicit-function-theorem derivatives to a solution ``x_star`` of ``f(x) = 0``.

    The primal value is ``x_star`` itself (already computed, outside differentiation); tangents and
    cotangents come from the linearisation of ``f`` at ``x_star`` (``jax.lax.custom_root``), so the
    solver's iterations are never differentiated.
    """
    x0 = jax.lax.stop_gradient(x_star)
    return jax.lax.custom_root(f, x0, lambda _f, x: x, dense_tangent_solve)

