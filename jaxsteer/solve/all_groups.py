"""Intervention ``all``: every group moves towards a common template (MATH §3).

Variables: the template ``N(u_i, G_i)`` (gauge ``u_c = 0``, ``G_c = I``), one map ``B_a = [A_a | b_a]``
per group, and common base rates ``π`` (``q̃[i, a] = p_a π_i``, group marginals fixed).

Block-coordinate descent, in which no block update increases the objective:
  1. ``π`` in closed form from the subgroup KLs;
  2. the template in closed form from the maps;
  3. all group maps (Newton per group, warm-started, every accepted step lowering the objective; to
     ``ALTERNATION_MAP_TOL`` only, as the joint phase below finishes them).
The blocks are strongly coupled, so once the alternation's residual is below ``ALTERNATION_SWITCH`` a
joint Newton phase (:class:`JointProblem`, on the engine of :mod:`jaxsteer.solve._engine`) finishes
on the maps and base rates with the template eliminated in closed form. It is restarted from every
group as reference (template = that group's subgroups, maps = the affirmative solution for that
reference), the restarts run one after the other, and the best is kept, so ``all`` is never worse
than ``affirmative`` with any reference. A warm start (``init``) replaces the restarts by one run.

Gauge. Template coordinates are fixed up to an orthogonal transformation by ``G_c = I``, ``u_c = 0``.
The symmetric form removes the rest (every ``A_a`` symmetric positive definite). In the affine form
the restart's reference group keeps a symmetric positive definite ``A_r`` (polar decomposition: any
ideal family can be rotated into that gauge), so the optimality conditions are non-singular and the
solution can be differentiated implicitly.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from jaxsteer import _linalg
from jaxsteer.divergence import gaussian_kl
from jaxsteer.solve import _common, _decomp, _engine, _group, affirmative, closed_form
from jaxsteer.solve._engine import Point


class Params(NamedTuple):
    u: jax.Array  # [k, d]
    G: jax.Array  # [k, d, d]
    B: jax.Array  # [m, d, d+1]
    pi: jax.Array  # [k]


def _targets(x: Params):
    A, b = x.B[:, :, :-1], x.B[:, :, -1]
    means = jnp.einsum("aij,kj->kai", A, x.u) + b[None]
    covs = _linalg.sym(jnp.einsum("aij,kjl,aml->kaim", A, x.G, A))
    return means, covs


def subgroup_kls(x: Params, sg: _common.Subgroups):
    means, covs = _targets(x)
    return gaussian_kl(means, covs, sg.mu, sg.S)


def objective(x: Params, q, sg: _common.Subgroups):
    """Total ``KL(θ̃ ‖ θ)`` as a function of all variables."""
    p = jnp.sum(q, axis=0)
    qt = x.pi[:, None] * p[None, :]
    return jnp.sum(qt * (jnp.log(qt) - jnp.log(q))) + jnp.sum(qt * subgroup_kls(x, sg))


def _feature_objective(u, G, B, w, sg):
    x = Params(u, G, B, jnp.zeros(u.shape[0], u.dtype))
    return jnp.sum(w * subgroup_kls(x, sg))


def _template_residual(x: Params, w, sg, c: int):
    """Relative stationarity of the template: ``‖G_i ∇_{G_i}‖``, ``‖∇_{u_i}‖`` over ``W_i √d`` (``i ≠ c``)."""
    gu, gG = jax.grad(_feature_objective, argnums=(0, 1))(x.u, x.G, x.B, w, sg)
    gG = _linalg.sym(gG)
    W = jnp.sum(w, axis=1) * jnp.sqrt(float(x.u.shape[-1]))
    r_u = jnp.linalg.norm(gu, axis=-1) / W
    r_G = jnp.linalg.norm(jnp.einsum("kij,kjl->kil", x.G, gG), axis=(-2, -1)) / W
    keep = jnp.arange(x.u.shape[0]) != c
    return jnp.max(jnp.where(keep, jnp.maximum(r_u, r_G), 0.0))


def _group_symmetric(m, r, symmetric: bool):
    return jnp.logical_or(symmetric, jnp.arange(m) == r)


def _update_maps(x: Params, w, sg, sym_mask, *, symmetric: bool, tol, max_iter, use_closed_form, config):
    """Every group's map for the template of ``x`` (one after the other, warm-started from ``x.B``).

    In the symmetric form every map is symmetric (a static form: only its factorisations are
    compiled, and its convex group problems are globalised by the line search). In the affine form
    ``sym_mask`` (traced) marks the gauge group, whose map stays symmetric. Measured on the d = 64
    embedding family, affine: updating the gauge group unconstrained as well, then rotating into the
    gauge, made the joint phase after the alternation slower (291 s against 119 s, both restarts)."""
    tpl = _common.Template(x.u, x.G, jnp.linalg.slogdet(x.G)[1])
    m = x.B.shape[0]
    d = x.u.shape[-1]

    def one(a, Ba, sym_a):
        prob = _common.group_problem(tpl, sg, a, w[:, a], True if symmetric else sym_a)
        if d == 1 and use_closed_form:
            rs = closed_form.univariate_group(prob, True)
            ra = closed_form.univariate_group(prob, False)
            return jax.tree_util.tree_map(lambda s, t: jnp.where(sym_a, s, t), rs, ra)
        return _group.newton(prob, Ba, tol=tol, max_iter=max_iter, config=config)

    # lax.map, not vmap, over groups that share the template: see jaxsteer/solve/affirmative.py.
    return jax.lax.map(lambda args: one(*args), (jnp.arange(m), x.B, sym_mask))


class _Loop(NamedTuple):
    x: Params
    value: jax.Array
    it: jax.Array  # alternations
    steps: jax.Array  # Newton steps of the group solves
    residual: jax.Array
    X: jax.Array  # [M, n] recent iterates (flattened), oldest first
    F: jax.Array  # [M, n] their fixed-point residuals T(x) − x
    count: jax.Array


class Run(NamedTuple):
    """One restart (or warm start): the point reached, its value, Newton steps, residual, status."""

    x: Params
    value: jax.Array
    iterations: jax.Array
    residual: jax.Array
    status: jax.Array


#: Anderson-acceleration memory (iterates kept).
ANDERSON_MEMORY = 5
#: Alternate until the residual is below this, then switch to joint Newton.
ALTERNATION_SWITCH = 1e-2
#: The alternation's group maps are solved to this residual (or ``0.1 · tol`` if looser): the joint phase
#: takes over at ``ALTERNATION_SWITCH``, so tighter map solves only add Newton steps.
ALTERNATION_MAP_TOL = 1e-4
#: Largest variable count ``m·d(d+1) + k`` of the joint phase (template eliminated) solved with a dense
#: Hessian (``jax.jacfwd`` of the gradient: ``n`` Hessian–vector products and an ``n × n`` solve per Newton step); larger
#: problems use matrix-free Newton–CG. Timings of the two on single problems: benchmarks/README.md, "``all``:
#: matrix-free joint phase".
JOINT_DENSE_MAX_VARS = 48
#: A run that does not converge while some base rate has fallen below this is reported as
#: :attr:`Status.NO_MINIMISER` (the infimum lies on the boundary of the simplex). How far a run gets
#: towards the boundary depends on its path: measured on a stored oracle case at the boundary
#: ((k, m, d) = (3, 2, 8), seed 6), the smallest base rate after the default iterations was 5e-9 on
#: one path and 1.2e-4 on another.
BOUNDARY_BASE_RATE = 1e-3
#: CG iterations per Newton step of the matrix-free joint phase. Measured on the d = 64 embedding family
#: (affine, both restarts, curved steps): with 500 the last steps, at residuals near 1e-8, are too inexact
#: to lower the residual and both restarts stall above ``tol``; with 2,000 both converge (12 and 7 Newton
#: steps, 7,774 and 6,031 CG iterations in all).
JOINT_MAX_CG = 2000
#: The joint phase's affine groups are preconditioned by the pair preconditioner once the residual is
#: below this, and by Kronecker blocks above (:meth:`JointProblem.preconditioner`).
JOINT_PAIR_SWITCH = 1e-4


def _anderson(X, F, count, dtype):
    """Type-II Anderson extrapolation from the last ``min(count, M)`` pairs ``(x_j, f_j = T(x_j) − x_j)``.

    Returns the candidate ``x_k + f_k − (ΔX + ΔF) γ`` with ``γ`` the (ridge-regularised) least-squares
    coefficients minimising ``‖f_k − ΔF γ‖``.
    """
    M = X.shape[0]
    dX = X[1:] - X[:-1]  # [M-1, n]
    dF = F[1:] - F[:-1]
    valid = jnp.arange(M - 1) >= (M - count)  # pairs whose both ends are real iterates
    dX = jnp.where(valid[:, None], dX, 0.0)
    dF = jnp.where(valid[:, None], dF, 0.0)
    gram = dF @ dF.T
    reg = 1e-10 * jnp.trace(gram) + jnp.finfo(dtype).tiny
    gram = gram + jnp.diag(jnp.where(valid, reg, 1.0))
    gamma = jnp.linalg.solve(gram, dF @ F[-1])
    gamma = jnp.where(valid & jnp.all(jnp.isfinite(gamma)), gamma, 0.0)
    return X[-1] + F[-1] - (dX + dF).T @ gamma


def _solve_from(x0: Params, r, q, sg, *, c, symmetric, tol, max_iter, max_outer, use_closed_form,
                joint="auto", config=_engine.DEFAULT) -> Run:
    """Alternate from ``x0`` (gauge group ``r``), then finish with joint Newton.

    The alternation ``x ↦ T(x)`` (priors, template, maps) converges linearly, sometimes slowly; it is
    accelerated by Anderson extrapolation with a monotone safeguard: the extrapolated point is kept
    only if its objective is below that of the plain step, so the objective still never increases.
    """
    k, m = q.shape
    p = jnp.sum(q, axis=0)
    sym_mask = _group_symmetric(m, r, symmetric)
    v0 = objective(x0, q, sg)
    flat0, unravel = jax.flatten_util.ravel_pytree(x0)

    def step(x: Params):
        _, w = closed_form.prior_update(q, subgroup_kls(x, sg))
        pi = w[:, 0] / p[0]
        A, b = x.B[:, :, :-1], x.B[:, :, -1]
        u, G = closed_form.template_update(A, b, sg.mu, sg.P, w, c)
        res = _update_maps(Params(u, G, x.B, pi), w, sg, sym_mask, symmetric=symmetric,
                           tol=jnp.maximum(0.1 * tol, ALTERNATION_MAP_TOL),
                           max_iter=max_iter, use_closed_form=use_closed_form, config=config)
        y = Params(u, G, res.B, pi)
        v = objective(y, q, sg)
        # Residuals of the blocks not just optimised: the template (the maps moved after it) and π.
        _, w_next = closed_form.prior_update(q, subgroup_kls(y, sg))
        r_pi = jnp.sum(jnp.abs(w_next[:, 0] / p[0] - pi))
        r_tpl = _template_residual(y, w, sg, c)
        residual = jnp.maximum(jnp.maximum(r_pi, r_tpl), jnp.max(res.residual))
        return y, v, residual, jnp.sum(res.iterations).astype(jnp.int32)

    def body(s: _Loop):
        y, v_y, res_y, steps = step(s.x)
        xf = jax.flatten_util.ravel_pytree(s.x)[0]
        yf = jax.flatten_util.ravel_pytree(y)[0]
        X = jnp.concatenate([s.X[1:], xf[None]], axis=0)
        F = jnp.concatenate([s.F[1:], (yf - xf)[None]], axis=0)
        count = jnp.minimum(s.count + 1, ANDERSON_MEMORY)
        z = unravel(_anderson(X, F, count, xf.dtype))
        z = z._replace(G=_linalg.sym(z.G))
        v_z = objective(z, q, sg)
        take_z = jnp.isfinite(v_z) & (v_z < v_y) & (res_y > tol) & jnp.all(z.pi > 0)
        x_next = jax.tree_util.tree_map(lambda a, b: jnp.where(take_z, a, b), z, y)
        v_next = jnp.where(take_z, v_z, v_y)
        return _Loop(x_next, v_next, s.it + 1, s.steps + steps, res_y, X, F, count)

    def cond(s: _Loop):
        return (s.it < max_outer) & (s.residual > ALTERNATION_SWITCH) & jnp.isfinite(s.value)

    n = flat0.shape[0]
    hist = jnp.zeros((ANDERSON_MEMORY, n), flat0.dtype)
    zero = jnp.asarray(0, jnp.int32)
    init = _Loop(x0, v0, zero, zero, jnp.asarray(jnp.inf, q.dtype), hist, hist, zero)
    alt = jax.lax.while_loop(cond, body, init)
    # The blocks are strongly coupled (Σ̃_ia = A_a G_i A_aᵀ): block descent can crawl along a valley
    # for thousands of steps (measured: d = 64 income embeddings, residual 3e-9 after 100 alternations,
    # 108 s). Finish with Newton on all variables jointly, the template eliminated in closed form:
    # dense for small problems, matrix-free Newton–CG beyond JOINT_DENSE_MAX_VARS.
    problem = JointProblem(q, sg, sym_mask, c, alt.x, symmetric=symmetric)
    if joint == "auto":
        joint = "dense" if problem.size <= JOINT_DENSE_MAX_VARS else "cg"
    out = _engine.minimize(problem, problem.v0, tol=tol, max_iter=max_iter, linear=joint,
                           max_cg=min(problem.size, JOINT_MAX_CG), config=config)
    x = problem.params(out.point.x)
    status = out.status
    stuck = (status != _engine.Status.CONVERGED) & (status != _engine.Status.NONFINITE)
    status = jnp.where(stuck & (jnp.min(x.pi) < BOUNDARY_BASE_RATE), _engine.Status.NO_MINIMISER, status)
    return Run(x, out.point.f, alt.steps + out.iterations, out.point.res, status.astype(jnp.int32))


def _reduced_params(B, z, q, sg, c: int) -> Params:
    """The variables with the template eliminated: ``(u, G) = argmin L(·, ·, B, softmax(z))``."""
    p = jnp.sum(q, axis=0)
    pi = jax.nn.softmax(z)
    u, G = closed_form.template_update(B[:, :, :-1], B[:, :, -1], sg.mu, sg.P, pi[:, None] * p[None, :], c)
    return Params(u, G, B, pi)


class _Factors(NamedTuple):
    """One group's Kronecker-sum preconditioner ``V ↦ P̄ V Ĉ + Q V Z`` and the factors of its inverse."""

    Pbar: jax.Array
    C: jax.Array
    Q: jax.Array
    Z: jax.Array
    L: jax.Array
    R: jax.Array
    denom: jax.Array


def _group_factors(A, P, w, u, G, symmetric) -> _Factors:
    """The preconditioner of one group's ``V = [V_A | v_b]`` (``d × (d+1)``).

    ``P̄ ⊗ Ĉ`` (``P̄ = Σ w_i P_i / W``, ``Ĉ = Σ w_i [[G_i + u_i u_iᵀ, u_i], [u_iᵀ, 1]]``) is the exact
    Hessian of the group's quadratic part when its subgroup precisions are equal; in the symmetric form
    ``Q V Z`` with ``Q = √W A⁻¹`` and ``Z = diag(√W A⁻¹, 0)`` adds the log-det Hessian on the ``A``
    block (the affine form's log-det Hessian is indefinite and is left out, as in :mod:`_group`).
    """
    d = A.shape[-1]
    W = jnp.sum(w)
    Pbar = _linalg.sym(jnp.einsum("k,kij->ij", w, P)) / W
    ut = jnp.concatenate([u, jnp.ones_like(u[:, :1])], axis=1)
    C = jnp.einsum("k,ki,kj->ij", w, ut, ut)
    C = _linalg.sym(C.at[:d, :d].add(jnp.einsum("k,kij->ij", w, G)))
    Q = jnp.where(symmetric, jnp.sqrt(W) * _linalg.sym(jnp.linalg.inv(A)), 0.0)
    Z = jnp.zeros((d + 1, d + 1), A.dtype).at[:d, :d].set(Q)
    Lm, th = _decomp.geig(Pbar, Q)
    Rm, ph = _decomp.geig(C, Z)
    return _Factors(Pbar, C, Q, Z, Lm, Rm, 1.0 + th[:, None] * ph[None, :])


class _JointPreconditioner(NamedTuple):
    """What :meth:`JointProblem.preconditioner` builds (``pairs`` and ``K`` are ``None`` in the symmetric form)."""

    factors: _Factors  # [m] Kronecker-sum blocks of every group
    pairs: object  # [m] pair preconditioners of the affine groups' A blocks
    K: object  # [m] the groups' Kronecker constants (for the offset elimination)
    use_pair: jax.Array  # [] bool: the affine groups take their pair blocks
    fisher: jax.Array  # [k] π_i (1 − π_i)


class JointProblem(_engine.Problem):
    """All variables of ``all`` jointly, the template eliminated (variable projection:
    ``f(B, z) = min_{u, G} L(u, G, B, softmax(z))``), for the Newton engine.

    Gauge and symmetry constraints are imposed by the projection ``T``: ``z_0 = 0`` (the softmax is
    shift-invariant) and ``A_a`` symmetric where ``sym_mask``. ``symmetric`` (static) says that every
    map is symmetric (the symmetric form), so that the affine groups' preconditioner is not compiled.
    Dense solves use the autodiff Hessian; matrix-free ones Hessian–vector products from one
    ``jax.linearize`` of the gradient per step, preconditioned block-diagonally (:meth:`preconditioner`).
    """

    def __init__(self, q, sg, sym_mask, c: int, x0: Params, symmetric: bool = False):
        self.q, self.sg, self.sym_mask, self.c = q, sg, sym_mask, c
        self.symmetric = symmetric
        # Symmetric form: the Kronecker preconditioner built once. Rebuilding it was measured not to
        # help (before the affine groups had their own preconditioner: d = 64 embedding family,
        # affine, one restart, built once 113 Newton steps and 53,811 CG iterations; rebuilt after
        # steps of more than 20 CG iterations, stalled at residual 3e-9 after 157 steps). In the
        # affine form the preconditioner switches with the residual, and the pair blocks rotate with
        # A_a: rebuilt at every step (measured in :meth:`preconditioner`).
        self.preconditioner_schedule = "once" if symmetric else "every_step"
        self.p = jnp.sum(q, axis=0)
        v0, self.unravel = jax.flatten_util.ravel_pytree((x0.B, jnp.log(x0.pi) - jnp.log(x0.pi[0])))
        self.size = v0.shape[0]
        self.v0 = self.project(v0)
        # Rounding of f: its terms (traces near d, log-determinants of the subgroup covariances) cancel to a
        # KL far smaller than themselves, so f is rounded at the scale of the terms, not of the KL.
        # Measured on the d = 64 embedding family: f jitters by 3e-14 near the optimum, where a slack
        # from |f| + 1 (4e-15) let the line search accept noise for 55 Newton steps without progress.
        self.scale = jnp.sum(q * (sg.mu.shape[-1] + jnp.abs(sg.logdet)))

    def params(self, v) -> Params:
        B, z = self.unravel(v)
        return _reduced_params(B, z, self.q, self.sg, self.c)

    def value_and_grad(self, v):
        """``f`` and its gradient in closed form (:meth:`_evaluate`)."""
        return self._evaluate(v)[:2]

    def _evaluate(self, v):
        """``f``, its gradient in closed form, and the subgroup KLs ``[k, m]``.

        The template is the closed-form minimiser for the current maps and base rates, so by the envelope
        theorem the gradient is that of ``L`` with the template held fixed. Inverses and log-determinants
        come from :func:`_decomp.inverse_logabsdet` and :func:`_decomp.spd_inverse_logdet`, whose
        derivatives are matrix products: the Hessian–vector products of :meth:`hvp` linearise this
        gradient, and then cost about a dozen ``d × d`` products per subgroup (measured on the d = 64
        embedding family: 0.49 ms against 5.2 ms through :func:`objective` with JAX's own rules).
        """
        B, z = self.unravel(v)
        A, b = B[:, :, :-1], B[:, :, -1]
        sg, q, p = self.sg, self.q, self.p
        k, m, d = sg.mu.shape
        pi = jax.nn.softmax(z)
        w = pi[:, None] * p[None, :]
        Ainv, ld_A = jax.vmap(_decomp.inverse_logabsdet)(A)
        PA = jnp.einsum("kaij,ajl->kail", sg.P, A)  # P_ia A_a
        # The template of the free classes for these maps (closed_form.template_update, written out to
        # share its products); the gauge class c is N(0, I), so its P_ca A_a G_c is P_ca A_a.
        free = np.array([i for i in range(k) if i != self.c])
        wf, PAf = w[free], PA[free]
        Msum = jnp.einsum("ka,aji,kajl->kil", wf, A, PAf)  # Σ_a w_ia A_aᵀ P_ia A_a
        rhs = jnp.einsum("ka,kaji,kaj->ki", wf, PAf, sg.mu[free] - b[None])
        Minv, ld_M = _decomp.spd_inverse_logdet(Msum)
        W = jnp.sum(wf, axis=1)
        Gf = W[:, None, None] * Minv
        u = jnp.zeros((k, d), A.dtype).at[free].set(jnp.einsum("kij,kj->ki", Minv, rhs))
        ld_G = jnp.zeros(k, A.dtype).at[free].set(d * jnp.log(W) - ld_M)
        PAG = PA.at[free].set(jnp.einsum("kail,klm->kaim", PAf, Gf))  # P_ia A_a G_i
        # Subgroup KLs and the objective (objective(), term by term).
        e = jnp.einsum("aij,kj->kai", A, u) + b[None] - sg.mu
        Pe = jnp.einsum("kaij,kaj->kai", sg.P, e)
        tr = jnp.einsum("kaim,aim->ka", PAG, A)
        kl = 0.5 * (tr + jnp.sum(e * Pe, axis=-1) - d + sg.logdet - ld_G[:, None] - 2.0 * ld_A[None, :])
        log_ratio = jnp.log(w) - jnp.log(q)
        val = jnp.sum(w * log_ratio) + jnp.sum(w * kl)
        gA = (jnp.einsum("ka,kaim->aim", w, PAG) + jnp.einsum("ka,kai,kj->aij", w, Pe, u)
              - p[:, None, None] * jnp.swapaxes(Ainv, -1, -2))
        gB = jnp.concatenate([gA, jnp.einsum("ka,kai->ai", w, Pe)[..., None]], axis=-1)
        g_pi = jnp.sum(p[None, :] * (log_ratio + 1.0 + kl), axis=1)
        g = jax.flatten_util.ravel_pytree((gB, pi * (g_pi - jnp.sum(pi * g_pi))))[0]
        # Domain: every A_a invertible, and symmetric positive definite where the form asks for it.
        ld = jax.vmap(_decomp.logabsdet)(jax.lax.stop_gradient(A), self.sym_mask)
        inside = jnp.all(jnp.isfinite(ld)) & jnp.isfinite(val)
        return jnp.where(inside, val, jnp.inf), g, kl

    def f(self, v):
        return self.value_and_grad(v)[0]

    def _grad(self, v):
        return self.value_and_grad(v)[1]

    def project(self, v):
        B, z = self.unravel(v)
        A = B[:, :, :-1]
        A = jnp.where(self.sym_mask[:, None, None], _linalg.sym(A), A)
        B = jnp.concatenate([A, B[:, :, -1:]], axis=2)
        return jax.flatten_util.ravel_pytree((B, z.at[0].set(0.0)))[0]

    def point(self, v) -> Point:
        f, g, kl = self._evaluate(v)
        g = self.project(g)
        return Point(v, f, g, self.residual(v, g, kl))

    def residual(self, v, g, kl):
        """Relative optimality residual of every block, from the projected gradient ``g`` and the
        subgroup KLs ``kl`` at ``v``: maps ``‖A_aᵀ∇_{B_a}‖/(W_a √d)`` (the one-group kernel's measure,
        :func:`_group.scaled_residual`; ``∇_{B_a}`` is the gradient with the template held fixed, by the
        envelope theorem) and base rates ``‖π − π*‖₁`` (``π*`` the closed-form base rates for these
        KLs). The template block is stationary by construction (it is the closed-form minimiser)."""
        B, z = self.unravel(v)
        gB, _ = self.unravel(g)
        pi = jax.nn.softmax(z)
        W = jnp.sum(pi[:, None] * self.p[None, :], axis=0)  # W_a = Σ_i π_i p_a
        r_maps = jax.vmap(_group.scaled_residual)(B[:, :, :-1], gB, W)
        pi_star, _ = closed_form.prior_update(self.q, kl)
        r_pi = jnp.sum(jnp.abs(pi_star - pi))
        return jnp.maximum(jnp.max(r_maps), r_pi)

    def hessian(self, pt: Point):
        n = self.size
        H = jax.jacfwd(self._grad)(pt.x)
        H = 0.5 * (H + H.T)
        T = jax.vmap(self.project)
        return T(T(H).T) + (jnp.eye(n, dtype=H.dtype) - T(jnp.eye(n, dtype=H.dtype)))

    def hvp(self, pt: Point):
        _, lin = jax.linearize(self._grad, pt.x)
        return lambda v: (self.project(lin(self.project(v))), None)

    def preconditioner(self, pt: Point):
        """Block-diagonal: one block per group, and ``π_i(1 − π_i)`` (the Fisher information of the
        softmax) for the base-rate logits. Neither models the coupling of the groups through the template.

        A symmetric map's block is the Kronecker-sum approximation of :func:`_group_factors`. So is an
        affine map's while the residual is above ``JOINT_PAIR_SWITCH``; below, it is the one-group
        kernel's pair preconditioner (:func:`_group.pair_preconditioner`, which models the rotations of
        template coordinates, where the log-det term cancels the quadratic part and the Kronecker
        approximation is far too stiff), extended to the offset by exact block elimination
        (:func:`_group.precondition_with_offset`). Far from a minimum the Hessian is indefinite along
        those rotations: the pair preconditioner exposes them, and CG stops at negative curvature after a
        few iterations, while the Kronecker blocks keep CG away from them. Measured on the d = 64
        embedding family, affine, the joint phases of the two restarts (Newton steps, CG iterations):
        Kronecker blocks built once 12 and 7 steps (7,774 and 6,031 CG; 4.9 and 3.9 s); pair blocks
        built once 259 and 10 steps; rebuilt after steps of more than 20 CG iterations 81 and 13; with
        negative curvature counted as stiff and rebuilt at every step 67 and 14 (2,145 and 1,743 CG;
        2.2–3.2 and 1.5–1.8 s, three runs), the first restart creeping for 62 steps of 2–16 CG
        iterations through the indefinite region; the switch at 1e-4 (the choice), every block rebuilt
        at every step, 9 and 10 steps (3,142 and 1,551 CG; 2.1–2.3 and 1.2–1.5 s). Below 1e-4 no pair
        block had a negative eigenvalue.
        """
        x = self.params(pt.x)
        w = x.pi[:, None] * self.p[None, :]
        m = x.B.shape[0]
        tpl = _common.Template(x.u, x.G, jnp.linalg.slogdet(x.G)[1])

        def one(args):
            A, a, sym_a = args
            kron = _group_factors(A, self.sg.P[:, a], w[:, a], x.u, x.G, sym_a)
            if self.symmetric:
                return kron, None, None
            K = _group.kron_constants(_common.group_problem(tpl, self.sg, a, w[:, a], False))
            return kron, _group.pair_preconditioner(K, A), K

        # One group at a time (lax.map): the template is shared, see _update_maps.
        factors, pairs, Ks = jax.lax.map(one, (x.B[:, :, :-1], jnp.arange(m), self.sym_mask))
        return _JointPreconditioner(factors, pairs, Ks, pt.res < JOINT_PAIR_SWITCH, x.pi * (1.0 - x.pi))

    def _blocks(self, pc: _JointPreconditioner, R, kron_fn, pair_fn):
        """``kron_fn`` or ``pair_fn`` applied to every group's block of ``R`` (see :meth:`preconditioner`)."""

        def kron():
            return jax.vmap(kron_fn)(pc.factors, R)

        if self.symmetric:
            return kron()

        def mixed():
            def one(f, pair, K, sym_a, X):
                return jnp.where(sym_a, kron_fn(f, X), pair_fn(K, pair, X))

            return jax.vmap(one)(pc.factors, pc.pairs, pc.K, self.sym_mask, R)

        return jax.lax.cond(pc.use_pair, mixed, kron)

    def precondition(self, pc: _JointPreconditioner, r):
        RB, rz = self.unravel(r)
        VB = self._blocks(pc, RB, lambda f, X: f.L @ ((f.L.T @ X @ f.R) / f.denom) @ f.R.T,
                          _group.precondition_with_offset)
        zscale = 1.0 / jnp.maximum(pc.fisher, jnp.finfo(pc.fisher.dtype).tiny)
        return self.project(jax.flatten_util.ravel_pytree((VB, zscale * rz))[0])

    def metric(self, pc: _JointPreconditioner, v):
        VB, vz = self.unravel(v)
        MB = self._blocks(pc, VB, lambda f, V: f.Pbar @ V @ f.C + f.Q @ V @ f.Z, _group.metric_with_offset)
        return self.project(jax.flatten_util.ravel_pytree((MB, pc.fisher * vz))[0])

    def retract(self, pt: Point, p, alpha):
        """A step along ``p`` that rotates the affine maps instead of shearing them.

        Write an affine group's step as ``V = A X`` (``X`` in template coordinates) and split ``X`` into
        its symmetric part ``S`` and antisymmetric part ``Ω``. The step reaches ``A (I + αS) C(αΩ)``, with
        ``C(Ω) = (I − Ω/2)⁻¹ (I + Ω/2)`` the Cayley transform (orthogonal, ``I + Ω + Ω²/2 + O(Ω³)``): to
        first order ``A + αV``, but a rotation of template coordinates stays a rotation and does not
        change ``A Aᵀ``. Symmetric (gauge) maps, offsets and base-rate logits move on straight lines.

        The nearly flat directions of the affine form are such rotations, and a straight step leaves
        them after a short distance. Measured on the d = 64 embedding family, affine, the joint phases
        of both restarts: straight steps with CG capped at 500, 49 and 27 Newton steps (17,104 and 9,534
        CG iterations; the first stalled at residual 1e-8); straight, capped at 2,000, 48 and 22 steps
        (42,105 CG in all); curved, capped at 2,000, 12 and 7 steps (7,774 and 6,031 CG); the whole
        solve 22.6 → 15.3 s (benchmarks/README.md, "The solver engine").
        """
        B, z = self.unravel(pt.x)
        PB, pz = self.unravel(p)
        A, VA = B[:, :, :-1], PB[:, :, :-1]
        eye = jnp.eye(A.shape[-1], dtype=A.dtype)

        def curved(A, V):
            X = alpha * jnp.linalg.solve(A, V)
            S = _linalg.sym(X)
            half = 0.5 * (X - S)
            C = jnp.linalg.solve(eye - half, eye + half)
            return A @ (eye + S) @ C

        A_new = jnp.where(self.sym_mask[:, None, None], A + alpha * VA, jax.vmap(curved)(A, VA))
        B_new = jnp.concatenate([A_new, B[:, :, -1:] + alpha * PB[:, :, -1:]], axis=2)
        return self.project(jax.flatten_util.ravel_pytree((B_new, z + alpha * pz))[0])

    def trial(self, pt: Point, p, alpha, line):
        return self.f(self.retract(pt, p, alpha)) - pt.f


def residual_fn(q, sg, r, *, c: int, symmetric: bool):
    """Optimality conditions ``R(x; θ) = 0`` of all variables (for implicit differentiation)."""
    k, m = q.shape
    d = sg.mu.shape[-1]
    p = jnp.sum(q, axis=0)
    sym_mask = _group_symmetric(m, r, symmetric)
    keep = (jnp.arange(k) != c)

    def f(x: Params):
        Gs = _linalg.sym(x.G)
        w = x.pi[:, None] * p[None, :]
        gu, gG = jax.grad(_feature_objective, argnums=(0, 1))(x.u, Gs, x.B, w, sg)
        R_u = jnp.where(keep[:, None], gu, x.u)
        R_G = jnp.where(keep[:, None, None], _linalg.sym(gG) + (x.G - Gs),
                        x.G - jnp.eye(d, dtype=x.G.dtype))
        tpl = _common.Template(x.u, Gs, jnp.linalg.slogdet(Gs)[1])

        def one(a, Ba, sym_a):
            prob = _common.group_problem(tpl, sg, a, w[:, a], sym_a)
            return _common.group_residual_fn(prob)(Ba)

        R_B = jax.vmap(one)(jnp.arange(m), x.B, sym_mask)
        kls = subgroup_kls(x._replace(G=Gs), sg)
        logits = jnp.sum(p[None, :] * (jnp.log(q) - jnp.log(p)[None, :] - kls), axis=1)
        R_pi = x.pi - jax.nn.softmax(logits)
        return Params(R_u, R_G, R_B, R_pi)

    return f


def _canonical_gauge(x: Params) -> Params:
    """Rotate template coordinates so that group 0's map is symmetric positive definite.

    The solver's gauge depends on which restart won; this makes the reported template and maps a
    function of the target alone. With ``S = (A_0 A_0ᵀ)^{1/2}`` and ``Q = S A_0⁻ᵀ`` (orthogonal),
    ``z ↦ Q z`` keeps ``u_c = 0, G_c = I`` and gives ``A_0 Qᵀ = S``.
    """
    A0 = x.B[0, :, :-1]
    S = _linalg.psd_sqrt(A0 @ A0.T)
    Q = S @ jnp.linalg.inv(A0).T
    A = jnp.einsum("aij,kj->aik", x.B[:, :, :-1], Q)
    B = jnp.concatenate([A, x.B[:, :, -1:]], axis=2)
    u = jnp.einsum("ij,kj->ki", Q, x.u)
    G = _linalg.sym(jnp.einsum("ij,kjl,ml->kim", Q, x.G, Q))
    return Params(u, G, B, x.pi)


def solve_one(q, mu, S, reference, *, reference_class, symmetric, tol, max_iter, use_closed_form,
              max_outer, joint="auto", init=None, config=_engine.DEFAULT):
    """Solve one (unbatched) ``all`` problem; returns the :class:`~jaxsteer.solve._common.Solved` that
    :func:`nearest_ideal` reads.

    Cold: restarted from every group ``r`` as reference (its template and affirmative maps), the best
    kept. Warm (``init``: a :class:`Params` in the canonical gauge of :func:`_canonical_gauge`): one
    run from it, with group 0 as the gauge group. ``joint`` (static) picks the linear solver of the
    joint phase: ``"dense"``, ``"cg"`` or ``"auto"`` (dense up to ``JOINT_DENSE_MAX_VARS`` variables).
    """
    if joint not in ("auto", "dense", "cg"):
        raise ValueError(f"joint: unknown value {joint!r}; use 'auto', 'dense' or 'cg'.")
    del reference  # every group is tried as the restart's reference
    c = reference_class
    k, m = q.shape
    sg_stop = _common.subgroups(*jax.lax.stop_gradient((mu, S)))
    q_stop = jax.lax.stop_gradient(q)
    p_stop = jnp.sum(q_stop, axis=0)
    opts = dict(c=c, symmetric=symmetric, tol=tol, max_iter=max_iter, max_outer=max_outer,
                use_closed_form=use_closed_form, joint=joint, config=config)

    def restart(r):
        raw, _ = affirmative.solve(q_stop, sg_stop.mu, sg_stop.S, reference=r, reference_class=c,
                                   symmetric=symmetric, tol=tol, max_iter=max_iter,
                                   use_closed_form=use_closed_form, config=config)
        x0 = Params(raw.u, raw.G, raw.B, q_stop[:, r] / p_stop[r])
        run = _solve_from(x0, r, q_stop, sg_stop, **opts)
        return run._replace(iterations=run.iterations + raw.iterations)

    if init is None:
        # Restarts one after the other (lax.map): they share the data, and each stops at its own count.
        runs = jax.lax.map(restart, jnp.arange(m))
        # Keep the best restart that reached a stationary point; only if none did, the lowest value.
        vals = jnp.where(jnp.isfinite(runs.value), runs.value, jnp.inf)
        ok = runs.status == _engine.Status.CONVERGED
        best = jnp.where(jnp.any(ok), jnp.argmin(jnp.where(ok, vals, jnp.inf)), jnp.argmin(vals))
        run = jax.tree_util.tree_map(lambda t: t[best], runs)
        run = run._replace(iterations=jnp.sum(runs.iterations).astype(jnp.int32))
    else:
        x0 = jax.tree_util.tree_map(lambda t: jax.lax.stop_gradient(t).astype(mu.dtype), init)
        best = 0
        run = _solve_from(x0, best, q_stop, sg_stop, **opts)
    sg = _common.subgroups(mu, S)
    f = residual_fn(q, sg, best, c=c, symmetric=symmetric)
    x = _common.implicit(f, run.x)
    x_val = jax.lax.stop_gradient(run.x)
    if not symmetric:
        x = _canonical_gauge(x)
    p = jnp.sum(q, axis=0)
    q_t = x.pi[:, None] * p[None, :]
    q_val = x_val.pi[:, None] * p[None, :]
    means, covs = _targets(x)
    sub = subgroup_kls(x_val, sg)
    target = _common.TargetKL(q_t, means, covs, kl_features=jnp.sum(q_val * sub),
                              kl_priors=jnp.sum(q_val * (jnp.log(q_val) - jnp.log(q))), subgroup_kl=sub)
    return _common.Solved(
        target, A=x.B[:, :, :-1], b=x.B[:, :, -1], nu=x.u, Gamma=x.G, pi=x.pi,
        status=run.status, iterations=run.iterations, residual=run.residual,
    )
