"""The Newton engine: every iterative path of the solver runs through :func:`minimize`.

One loop (``init`` → ``step`` until ``terminate``), one linear solver of each kind (a damped dense
Cholesky solve, or truncated preconditioned conjugate gradients), one backtracking line search and
one damping rule, over a state pytree; the constants live in :class:`Config`.

A problem is a :class:`Problem` subclass that closes over its data. The engine asks it for

* ``point(x)``: the value ``f``, the gradient projected onto the feasible directions, the
  dimensionless optimality residual compared with ``tol``, and whatever the problem wants to keep
  (``aux``) for the Hessian, the preconditioner and the line search at that point;
* dense solves: ``hessian(pt)``, the projected Hessian ``T H T + (I − T)`` as an ``[n, n]`` matrix;
* matrix-free solves: ``hvp(pt)``, a function ``v ↦ (H v, extra)`` (``extra`` is accumulated by CG
  alongside the step, e.g. the quadratic part's ``H_q x`` for an exact line model), and
  ``preconditioner(pt)`` / ``precondition(pc, r)`` / ``metric(pc, v)``: an SPD approximation ``M``
  of the Hessian, its inverse and itself;
* ``trial(pt, p, alpha, line)``: ``f(x + αp) − f(x)``, where ``line = line_model(pt, p, extra)``
  lets a problem evaluate it more cheaply than ``point``;
* optionally ``retract(pt, p, alpha)``: the point a step reaches, ``x + αp`` unless the problem follows
  a curve that agrees with it to first order (the joint phase of ``all`` rotates its affine maps).

Globalisation. A step is made safe in one of two ways, chosen per problem (:func:`_damped`):

* *damped* (Levenberg–Marquardt), for non-convex problems solved densely (and in lock-step layouts):
  the system is ``(H + λ D) p = −g`` with ``D = s I``, ``s = tr(H)/n`` for dense solves and the
  preconditioner ``M`` for matrix-free ones (the preconditioned system ``(1 + λ)⁻¹ M⁻¹ (H + λ M)``
  stays close to ``I`` where ``M`` is good). Only the full step is tried: ``λ`` shrinks
  ×``damping_decrease`` after it is accepted and grows ×``damping_increase`` after it fails (no
  descent direction, a system that is not positive definite, or no decrease), so an indefinite
  Hessian turns the step towards the gradient and the iterate stays in the basin of its start; the
  solve stalls beyond ``damping_max``;
* *line search*, for convex problems and adaptive matrix-free solves (where a new solve costs a whole
  CG run): ``λ = 0`` (no metric products), truncated CG stops at negative curvature, and the step is
  halved from the full step until an Armijo decrease, at most ``max_backtracks`` times; a step that
  still fails stalls the solve.

In both, the decrease tests allow a rounding slack of a few ulps of ``|f|``. Near the optimum the
predicted decrease (``−gᵀp``, of the order of the squared residual) falls below the rounding of ``f``
itself, where a decrease test only sees noise: there the full step is taken if it stays in the
domain and kept only if it lowers the residual; if it does not, the solve has reached the rounding
floor of its dtype and stops as :attr:`Status.STALLED`.

Accepted steps never increase ``f`` beyond the slack, so a start's value is never made worse.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Status", "status_message", "Config", "Point", "Problem", "Result", "minimize",
           "combine_status"]


class Status(enum.IntEnum):
    """Why a solve stopped (``Solution.status``). Codes are ordered by severity, so the status of
    several solves (groups, starts) is their maximum."""

    CONVERGED = 0  #: the optimality residual reached ``tol``
    MAX_ITER = 1  #: ``max_iter`` Newton steps without reaching ``tol``
    STALLED = 2  #: no step lowers the objective further: the rounding floor of the dtype
    NO_MINIMISER = 3  #: the objective falls towards the boundary (a base rate tends to 0)
    NONFINITE = 4  #: the input or an iterate is not finite


_MESSAGES = {
    Status.CONVERGED: "converged (optimality residual <= tol)",
    Status.MAX_ITER: "max_iter Newton steps were not enough to reach tol; raise max_iter",
    Status.STALLED: ("stalled: no step lowers the objective any further; the residual is at the "
                     "rounding floor of this dtype (use float64, or a looser tol)"),
    Status.NO_MINIMISER: ("no minimiser: the KL keeps falling as a base rate tends to 0, so no ideal "
                          "family attains the infimum; use form='affine' or another reference_class"),
    Status.NONFINITE: ("non-finite values: the family (or an iterate) has NaN or inf; check the "
                       "priors, means and covariances"),
}


def status_message(status) -> str:
    """A sentence that says why a solve stopped, for a concrete status code (an int or a 0-d array)."""
    return _MESSAGES[Status(int(status))]


def combine_status(status, axis=None):
    """The status of several solves: the most severe one."""
    return jnp.max(status, axis=axis)


@dataclasses.dataclass(frozen=True)
class Config:
    """Constants of the Newton engine (static and hashable: one compilation per configuration).

    Attributes:
        damping: initial Levenberg–Marquardt ``λ`` of damped solves (relative to the Hessian scale).
        damping_decrease, damping_increase: ``λ`` factors after a full step and after a failed step.
        damping_min: floor of ``λ``.
        damping_max: a damped solve stalls once ``λ`` exceeds this.
        armijo: sufficient-decrease fraction of the line search.
        max_backtracks: step halvings of the line search before a step counts as failed.
        slack_ulps: rounding slack of the decrease tests, ``slack_ulps · eps · (|f| + scale)``.
        forcing_max, forcing_min: CG stops at ``‖r‖ ≤ η‖g‖`` with the Eisenstat–Walker forcing term
            ``η = clip(√residual, forcing_min · tol, forcing_max)``.
        curvature_floor: CG treats ``pᵀHp ≤ curvature_floor · ‖p‖² · |pᵀr|`` as negative curvature.
        refresh_cg: when to rebuild the CG preconditioner: ``None`` (default) never after the start;
            ``0`` at every Newton step; ``n > 0`` only after a step that needed more than ``n`` CG
            iterations. Measured (2-core CPU, one problem at a time, affirmative/symmetric): d = 16,
            512 families, 809 µs per family built once against 1,036 µs rebuilt every step (8.2 and
            7.9 Newton steps), 865–881 µs with ``n`` = 3 or 6; the d = 64 embedding family 17–20 ms
            against 22 ms, the same 7 steps.
        refresh_cg_nonconvex: the same for non-convex problems, whose preconditioner depends on the
            iterate more (the affine form's pair preconditioner rotates with ``A``): measured on the
            d = 64 embedding family from one start, rebuilt after steps of more than 20 CG
            iterations 0.58 s (3,316 CG), at every step 0.59 s, a fixed Kronecker preconditioner 1.63 s
            (10,607 CG).
        lockstep: fixed-shape inner loops for vmapped batches on accelerators: CG runs exactly
            ``lockstep_cg`` masked iterations (``lockstep_cg_nonconvex`` on non-convex problems, whose
            Hessian can be indefinite: measured at d = 8, affine, three families, 20 iterations
            stalled at residual 7e-9 on two, 40 converged all in 93–99 Newton steps), the line search tries the step
            lengths ``1, ½, …`` (``lockstep_ls`` of them, at most ``max_backtracks + 1``) in one
            batched call, and the Newton loop tests for convergence every ``lockstep_check`` steps
            (steps after convergence are masked out).
    """

    damping: float = 1e-3
    damping_decrease: float = 0.25
    damping_increase: float = 8.0
    damping_min: float = 1e-12
    damping_max: float = 1e8
    armijo: float = 1e-4
    max_backtracks: int = 40
    slack_ulps: float = 16.0
    forcing_max: float = 0.25
    forcing_power: float = 0.5
    forcing_min: float = 1e-3
    curvature_floor: float = 1e-14
    refresh_cg: int | None = None
    refresh_cg_nonconvex: int | None = 20
    lockstep: bool = False
    lockstep_cg: int = 5
    lockstep_cg_nonconvex: int = 40
    lockstep_ls: int = 4
    lockstep_check: int = 2


DEFAULT = Config()


class Point(NamedTuple):
    """An iterate and what the engine needs at it."""

    x: Any  # the variables (an array of any shape)
    f: jax.Array  # objective value, +inf outside the domain
    g: Any  # gradient projected onto the feasible directions, shaped like x
    res: jax.Array  # dimensionless optimality residual
    aux: Any = None  # problem-specific data kept with the point


class Problem:
    """Interface of a problem solved by :func:`minimize` (see the module docstring)."""

    #: magnitude added to ``|f|`` in the rounding slack
    scale: Any = 1.0
    #: whether the objective is convex (then steps are globalised by the line search, see the module)
    convex: bool = False
    #: when the CG preconditioner is rebuilt: ``"config"`` on the ``Config.refresh_cg*`` schedule,
    #: ``"once"`` only at the start, ``"every_step"`` at every Newton step (whatever the config says)
    preconditioner_schedule: str = "config"

    def point(self, x) -> Point:
        raise NotImplementedError

    def hessian(self, pt: Point) -> jax.Array:
        raise NotImplementedError

    def hvp(self, pt: Point) -> Callable:
        raise NotImplementedError

    def preconditioner(self, pt: Point):
        return None

    def precondition(self, pc, r):
        return r

    def metric(self, pc, v):
        return v

    def line_model(self, pt: Point, p, extra):
        return None

    def retract(self, pt: Point, p, alpha):
        """The point a step of length ``alpha`` along ``p`` from ``pt`` reaches: ``x + αp`` by default; a
        problem may follow a curve instead, one that agrees with ``x + αp`` to first order in ``α``."""
        return jax.tree_util.tree_map(lambda v, d: v + alpha * d, pt.x, p)

    def trial(self, pt: Point, p, alpha, line) -> jax.Array:
        """``f(retract(pt, p, α)) − f(x)`` (``+inf`` outside the domain); by default through :meth:`point`."""
        return self.point(self.retract(pt, p, alpha)).f - pt.f


class State(NamedTuple):
    point: Point
    damping: jax.Array
    pc: Any  # the CG preconditioner in use
    it: jax.Array  # Newton steps taken
    inner: jax.Array  # CG iterations in all
    last_inner: jax.Array  # CG iterations of the last step
    stalled: jax.Array


class Result(NamedTuple):
    """Output of :func:`minimize`. ``iterations`` counts Newton steps (accepted or not)."""

    point: Point
    iterations: jax.Array
    inner_iterations: jax.Array
    status: jax.Array


def _int(v):
    """Counters are int32 on every path (and under ``jax_enable_x64``)."""
    return jnp.asarray(v, jnp.int32)


def _vdot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _all_finite(x):
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(x)]))


def _select(pred, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), a, b)


def _damped(problem: Problem, linear: str, config: Config) -> bool:
    """Whether steps of ``problem`` are globalised by damping (else by the line search; see the module)."""
    return not problem.convex and (linear == "dense" or config.lockstep)


# -- linear solvers ------------------------------------------------------------------------------------


def _dense_direction(problem: Problem, pt: Point, damping):
    """``(H + λ s I) p = −g`` by Cholesky, ``s = tr(H)/n``; non-finite where ``H + λsI`` is not PD."""
    H = problem.hessian(pt)
    n = H.shape[0]
    dtype = H.dtype
    scale = jnp.maximum(jnp.trace(H) / n, jnp.finfo(dtype).tiny)
    chol = jnp.linalg.cholesky(H + (damping * scale) * jnp.eye(n, dtype=dtype))
    g = jnp.reshape(pt.g, (n,))
    p = -jax.scipy.linalg.cho_solve((chol, True), g)
    return jnp.reshape(p, jnp.shape(pt.g)), None, _int(0)


class _CG(NamedTuple):
    x: Any
    extra: Any
    r: Any
    p: Any
    rz: jax.Array
    j: jax.Array
    done: jax.Array


def _cg_direction(problem: Problem, pt: Point, pc, damping, eta, max_cg: int, config: Config):
    """Truncated PCG on ``(H + λM) p = −g`` with preconditioner ``M⁻¹/(1 + λ)``.

    Stops at ``‖r‖ ≤ η‖g‖``, at ``max_cg`` iterations, or at negative curvature: then the iterate so
    far, or on the first iteration the preconditioned steepest-descent direction. Returns
    ``(p, extra, iterations)`` where ``extra`` is the problem's ``hvp`` side output accumulated
    like ``p``.
    """
    hvp = problem.hvp(pt)
    shrink = 1.0 / (1.0 + damping)
    undamped = not _damped(problem, "cg", config)  # static: λ = 0, no metric products at all

    def op(v):
        hv, extra = hvp(v)
        if undamped:
            return hv, extra
        return jax.tree_util.tree_map(lambda h, m: h + damping * m, hv, problem.metric(pc, v)), extra

    def minv(r):
        return jax.tree_util.tree_map(lambda z: shrink * z, problem.precondition(pc, r))

    r0 = jax.tree_util.tree_map(jnp.negative, pt.g)
    z0 = minv(r0)
    gnorm = jnp.sqrt(_vdot(pt.g, pt.g))
    zero = jax.tree_util.tree_map(jnp.zeros_like, pt.g)
    _, extra_shape = jax.eval_shape(op, zero)
    zero_extra = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), extra_shape)
    c0 = _CG(zero, zero_extra, r0, z0, _vdot(r0, z0), _int(0), gnorm == 0)
    tiny = jnp.finfo(jnp.result_type(pt.f)).tiny

    def body(c: _CG):
        hp, extra_p = op(c.p)
        curv = _vdot(c.p, hp)
        neg = curv <= config.curvature_floor * _vdot(c.p, c.p) * jnp.maximum(jnp.abs(c.rz), tiny)
        neg = neg | ~jnp.isfinite(curv)
        alpha = c.rz / jnp.where(neg, 1.0, curv)
        first = c.j == 0
        take_p = neg & first
        keep = neg & ~first

        def upd(s, d):
            return jnp.where(take_p, d, jnp.where(keep, s, s + alpha * d))

        x = jax.tree_util.tree_map(upd, c.x, c.p)
        extra = jax.tree_util.tree_map(upd, c.extra, extra_p)
        r = jax.tree_util.tree_map(lambda r_, h: r_ - alpha * h, c.r, hp)
        z = minv(r)
        rz = _vdot(r, z)
        beta = rz / jnp.where(c.rz == 0, 1.0, c.rz)
        p = jax.tree_util.tree_map(lambda z_, p_: z_ + beta * p_, z, c.p)
        done = neg | (jnp.sqrt(_vdot(r, r)) <= eta * gnorm)
        new = _CG(x, extra, _select(neg, c.r, r), _select(neg, c.p, p), jnp.where(neg, c.rz, rz),
                  c.j + 1, done)
        return _select(c.done, c, new) if config.lockstep else new

    if config.lockstep:
        n_cg = config.lockstep_cg if problem.convex else config.lockstep_cg_nonconvex
        c = jax.lax.fori_loop(0, min(n_cg, max_cg), lambda _, c: body(c), c0)
    else:
        c = jax.lax.while_loop(lambda c: ~c.done & (c.j < max_cg), body, c0)
    return c.x, c.extra, c.j


# -- line search --------------------------------------------------------------------------------------


def _line_search(problem: Problem, pt: Point, p, line, slope, slack, linear: str, config: Config):
    """Backtracking to an Armijo decrease (or, in the rounding regime, the full step if finite).
    Returns ``(alpha, ok)``."""
    noise = -slope <= slack
    one = jnp.ones((), jnp.result_type(pt.f))

    def delta(alpha):
        d = problem.trial(pt, p, alpha, line)
        return jnp.where(jnp.isnan(d), jnp.inf, d)

    def good(alpha, d):
        return (d <= config.armijo * alpha * slope + slack) | (noise & jnp.isfinite(d))

    max_backtracks = 0 if _damped(problem, linear, config) else config.max_backtracks
    if max_backtracks == 0:  # damped solves: the full step or none (no loop is compiled)
        return one, good(one, delta(one))
    if config.lockstep:
        alphas = 0.5 ** jnp.arange(min(config.lockstep_ls, max_backtracks + 1), dtype=one.dtype)
        ds = jax.vmap(delta)(alphas)
        oks = jax.vmap(good)(alphas, ds)
        i = jnp.argmax(oks)  # the longest acceptable step
        return alphas[i], oks[i]

    # The trial step is evaluated only inside the loop (one copy of it is compiled): the loop starts
    # at α = 2 with no value (never good), so its first pass tries α = 1.
    def cond(c):
        alpha, d, n = c
        return ~good(alpha, d) & (n <= max_backtracks)

    def body(c):
        alpha, _, n = c
        alpha = 0.5 * alpha
        return alpha, delta(alpha), n + 1

    alpha, d, _ = jax.lax.while_loop(cond, body, (2 * one, jnp.full((), jnp.inf, one.dtype), _int(0)))
    return alpha, good(alpha, d)


# -- the loop -------------------------------------------------------------------------------------------


def _refresh_rule(problem: Problem, config: Config):
    """``Config.refresh_cg``'s convention (``None``, ``0`` or ``n``) for ``problem``'s schedule."""
    schedule = problem.preconditioner_schedule
    if schedule == "config":
        return config.refresh_cg if problem.convex else config.refresh_cg_nonconvex
    if schedule not in ("once", "every_step"):
        raise ValueError(f"preconditioner_schedule: unknown value {schedule!r}; use 'config', 'once' or "
                         "'every_step'.")
    return None if schedule == "once" else 0


def init(problem: Problem, x0, *, linear: str, config: Config = DEFAULT) -> State:
    pt = problem.point(x0)
    dtype = jnp.result_type(pt.f)
    pc = problem.preconditioner(pt) if linear == "cg" else None
    damping = config.damping if _damped(problem, linear, config) else 0.0
    return State(pt, jnp.asarray(damping, dtype), pc, _int(0), _int(0), _int(0), jnp.asarray(False))


def running(s: State, tol, max_iter):
    """Whether to take another step: not converged, steps left, not stalled, finite."""
    return (s.point.res > tol) & (s.it < max_iter) & ~s.stalled & jnp.isfinite(s.point.f)


def step(problem: Problem, s: State, *, tol, linear: str, max_cg: int = 0, config: Config = DEFAULT) -> State:
    """One damped Newton step with line search; the point is replaced only by an accepted step."""
    pt = s.point
    dtype = jnp.result_type(pt.f)
    eps = jnp.finfo(dtype).eps
    lam = s.damping
    pc = s.pc
    if linear == "dense":
        p, extra, n_inner = _dense_direction(problem, pt, lam)
    else:
        refresh = _refresh_rule(problem, config)
        if refresh == 0:
            pc = problem.preconditioner(pt)
        elif refresh is not None:
            pc = jax.lax.cond(s.last_inner > refresh, lambda: problem.preconditioner(pt), lambda: s.pc)
        eta = jnp.clip(pt.res ** config.forcing_power, config.forcing_min * tol, config.forcing_max).astype(dtype)
        p, extra, n_inner = _cg_direction(problem, pt, pc, lam, eta, max_cg, config)
    slope = _vdot(pt.g, p)
    ok = _all_finite(p) & (slope < 0)
    p = jax.tree_util.tree_map(lambda v: jnp.where(ok, v, 0.0), p)
    line = problem.line_model(pt, p, extra)
    slack = config.slack_ulps * eps * (jnp.abs(pt.f) + problem.scale)
    alpha, ls_ok = _line_search(problem, pt, p, line, slope, slack, linear, config)
    accept = ok & ls_ok
    x_new = problem.retract(pt, p, jnp.where(accept, alpha, 0.0))
    new = problem.point(x_new)
    noise = -slope <= slack
    accept = accept & jnp.isfinite(new.f) & (~noise | (new.res < pt.res))
    point = _select(accept, new, pt)
    full = accept & (alpha == 1)
    lam = jnp.where(full, jnp.maximum(lam * config.damping_decrease, config.damping_min),
                    jnp.where(accept, lam, lam * config.damping_increase))
    # Stalled: damping exhausted, a step at the rounding floor that does not lower the residual, or
    # (line-search solves, λ = 0) a step the line search could not make acceptable.
    stalled = (lam > config.damping_max) | (ok & noise & ~accept) | ((lam == 0) & ~accept)
    return State(point, lam, pc, s.it + 1, s.inner + n_inner, n_inner, stalled)


def terminate(s: State, tol) -> jax.Array:
    """The status of a finished loop."""
    finite = jnp.isfinite(s.point.f) & jnp.isfinite(s.point.res) & _all_finite(s.point.x)
    return jnp.where(
        finite & (s.point.res <= tol), Status.CONVERGED,
        jnp.where(~finite, Status.NONFINITE, jnp.where(s.stalled, Status.STALLED, Status.MAX_ITER)),
    ).astype(jnp.int32)


def minimize(problem: Problem, x0, *, tol, max_iter, linear: str = "dense", max_cg: int = 0,
             config: Config = DEFAULT) -> Result:
    """Minimise ``problem`` from the feasible point ``x0`` until its residual is ``≤ tol``, ``max_iter``
    Newton steps, a stall, or a non-finite value. ``linear`` is ``"dense"`` or ``"cg"`` (static);
    ``tol`` and ``max_iter`` may be traced.

    Example:
        >>> class Quad(Problem):   # f(x) = ½ xᵀ diag(h) x − x₀
        ...     h = jnp.array([1.0, 100.0])
        ...     def point(self, x):
        ...         g = self.h * x - jnp.array([1.0, 0.0])
        ...         return Point(x, 0.5 * x @ (self.h * x) - x[0], g, jnp.linalg.norm(g))
        ...     def hessian(self, pt):
        ...         return jnp.diag(self.h)
        >>> r = minimize(Quad(), jnp.zeros(2), tol=1e-6, max_iter=20)
        >>> r.point.x, int(r.status)                      # the minimiser [1, 0]; 0: CONVERGED
        (Array([1., 0.], dtype=float32), 0)
    """
    if linear not in ("dense", "cg"):
        raise ValueError(f"linear: unknown value {linear!r}; use 'dense' or 'cg'.")
    s0 = init(problem, x0, linear=linear, config=config)

    def one(s):
        return step(problem, s, tol=tol, linear=linear, max_cg=max_cg, config=config)

    if config.lockstep and config.lockstep_check > 1:
        def body(s):
            def masked(_, s):
                return _select(running(s, tol, max_iter), one(s), s)
            return jax.lax.fori_loop(0, config.lockstep_check, masked, s)
    else:
        body = one
    s = jax.lax.while_loop(lambda s: running(s, tol, max_iter), body, s0)
    return Result(s.point, s.it, s.inner, terminate(s, tol))
