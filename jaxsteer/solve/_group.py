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

The optimiser is the Newton engine of :mod:`jaxsteer.solve._engine` (damped Newton with a line
search, every accepted step lowers ``F``, so a start's value is never made worse), on one of two
problems: :class:`DenseGroup` (the analytic ``n = d(d+1)`` Hessian, solved densely; small ``d``) and
:class:`KroneckerGroup` (matrix-free Newton–CG; large ``d``). For the symmetric form the Newton system
is restricted to symmetric ``A`` by projecting the Hessian (``T H T + (I − T)``, ``T`` the
symmetrisation), which keeps every iterate exactly symmetric.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxsteer import _linalg
from jaxsteer.solve import _decomp, _engine
from jaxsteer.solve._engine import Point, Status


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
        symmetric: whether ``A`` is constrained to be symmetric positive definite: a Python bool where
            known when tracing (then only that form is compiled), else a ``[]`` bool array.
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
    """One group solve: the map, its value and residual, Newton steps, :class:`Status` code."""

    B: jax.Array  # [d, d+1]
    value: jax.Array  # F(B)
    residual: jax.Array  # ‖Aᵀ ∇_B F‖_F / (W √d)
    iterations: jax.Array  # Newton steps
    status: jax.Array  # Status code
    cg_iterations: jax.Array = 0  # CG iterations in all (matrix-free solves)

    @property
    def converged(self):
        return self.status == Status.CONVERGED


def split(B):
    return B[..., :, :-1], B[..., :, -1]


def subgroup_kls(prob: GroupProblem, B) -> jax.Array:
    """``KL(N(A u_i + b, A G_i Aᵀ) ‖ N(μ_i, Σ_i))`` for every class, ``[k]``."""
    A, b = split(B)
    d = A.shape[-1]
    e = jnp.einsum("ij,kj->ki", A, prob.u) + b - prob.mu  # [k, d]
    AG = jnp.einsum("ij,kjl->kil", A, prob.G)  # [k, d, d]
    tr = jnp.einsum("kij,kjl,il->k", prob.P, AG, A)  # tr(P A G Aᵀ)
    maha = jnp.einsum("ki,kij,kj->k", e, prob.P, e)
    ld = _decomp.logabsdet(A, prob.symmetric)
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
    return scaled_residual(split(B)[0], grad, jnp.sum(prob.w))


def best_start(runs: GroupResult, prob: GroupProblem, config: _engine.Config = _engine.DEFAULT) -> jax.Array:
    """Index of the run to keep among solves of one problem from several starts (``runs`` stacked).

    The lowest value wins, except among runs within rounding of it (``F``'s terms, traces near ``d``
    and log-determinants, cancel to a value far smaller than themselves, so ``F`` is rounded at
    ``eps · Σ_i w_i (d + |ln det Σ_i| + |ln det G_i|)``; the engine's ``slack_ulps`` of that): there
    the most successful status wins, then the lower value. Two starts that reach the same minimum, one
    converged and one stalled at the rounding floor, then report the converged one. Measured on the
    README's Adult family (d = 85, affine): two eigen-aligned starts reached the same value to 15
    digits, one converged (residual 1.3e-11) and one stalled (4.8e-10); the lowest value alone picked
    either, depending on the rounding of the compiled program.
    """
    vals = jnp.where(jnp.isfinite(runs.value), runs.value, jnp.inf)
    v_min = jnp.min(vals)
    d = prob.u.shape[-1]
    scale = jnp.sum(prob.w * (d + jnp.abs(prob.logdet_S) + jnp.abs(prob.logdet_G)))
    eps = jnp.finfo(vals.dtype).eps
    tie = vals <= v_min + config.slack_ulps * eps * (jnp.abs(v_min) + scale)
    status = jnp.where(tie, runs.status, jnp.iinfo(jnp.int32).max)
    return jnp.argmin(jnp.where(tie & (status == jnp.min(status)), vals, jnp.inf))


def scaled_residual(A, grad, W) -> jax.Array:
    """``‖Aᵀ grad‖_F / (W √d)``: :func:`relative_residual` given the projected gradient ``[d, d+1]``
    and the group's total weight ``W``."""
    return jnp.linalg.norm(A.T @ grad) / (W * jnp.sqrt(float(A.shape[-1])))


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


#: Largest ``d`` solved by the dense kernel; larger problems use the matrix-free Newton–CG below.
DENSE_MAX_D = 6


def newton(prob: GroupProblem, B0, *, tol, max_iter, method: str = "auto",
           config: _engine.Config = _engine.DEFAULT) -> GroupResult:
    """Minimise ``F`` from ``B0`` until ``relative_residual ≤ tol`` or ``max_iter`` Newton steps.

    ``method``: ``"dense"`` (:class:`DenseGroup`), ``"cg"`` (:class:`KroneckerGroup`, whose offset
    is always ``b*(A)``: ``B0``'s offset is replaced) or ``"auto"`` (dense for
    ``d ≤ DENSE_MAX_D``). ``tol`` and ``max_iter`` may be traced.
    """
    d = B0.shape[0]
    if method not in ("auto", "dense", "cg"):
        raise ValueError(f"method: unknown value {method!r}; use 'auto', 'dense' or 'cg'.")
    symmetric = _decomp.static_bool(prob.symmetric)
    symmetric = prob.symmetric if symmetric is None else symmetric
    A0 = B0[:, :-1]
    A0 = jnp.where(symmetric, _linalg.sym(A0), A0)
    if method == "dense" or (method == "auto" and d <= DENSE_MAX_D):
        B0 = jnp.concatenate([A0, B0[:, -1:]], axis=1)
        r = _engine.minimize(DenseGroup(prob), B0, tol=tol, max_iter=max_iter, linear="dense", config=config)
        B = r.point.x
    else:
        problem = KroneckerGroup(prob, symmetric)
        r = _engine.minimize(problem, A0, tol=tol, max_iter=max_iter, linear="cg",
                             max_cg=min(d * d, 250), config=config)
        B = jnp.concatenate([r.point.x, r.point.aux.b[:, None]], axis=1)
    return GroupResult(B, r.point.f, r.point.res, r.iterations, r.status, r.inner_iterations)


class DenseGroup(_engine.Problem):
    """``F`` over ``B = [A | b]`` with the analytic Hessian (:func:`hessian`), for dense Newton."""

    def __init__(self, prob: GroupProblem):
        self.prob = prob
        self.scale = jnp.sum(prob.w)
        self.convex = _decomp.static_bool(prob.symmetric) is True

    def point(self, B) -> Point:
        g = gradient(self.prob, B)
        return Point(B, value(self.prob, B), g, relative_residual(self.prob, B, g))

    def hessian(self, pt: Point):
        return hessian(self.prob, pt.x)

    def trial(self, pt: Point, p, alpha, line):
        return value(self.prob, pt.x + alpha * p) - pt.f


# --------------------------------------------------------------------------------------------
# Matrix-free Newton–CG for large d.
#
# A dense step factorises a d(d+1) × d(d+1) system: O(d⁶) flops and O(d⁴) memory (4,160² at
# d = 64; 590,592² at d = 768, which would not even fit in memory). KroneckerGroup gives the engine
# the same Newton iteration without ever forming the Hessian:
#   * b is eliminated exactly (b*(A) is closed form and affine in A), so the unknown is A alone
#     (d² variables) and every iterate keeps ∇_b F = 0 (variable projection);
#   * Hessian–vector products use the Kronecker structure: Σ_i w_i P_i V G_i as two stacked GEMMs
#     (4 k d³ flops), rank-one mean terms (O(k d²)) and the log-det term W A⁻ᵀ Vᵀ A⁻ᵀ (two GEMMs);
#   * the preconditioner is the exact inverse of a sum of two Kronecker products,
#     V ↦ P̄ V C̄ + Q V Z, through two generalised symmetric eigendecompositions (then four GEMMs
#     per application); P̄ and C̄ do not depend on A, so their Cholesky factors are computed once;
#   * the line search is nearly free: along A + αx (with b following b*) the quadratic part of F is
#     an exact quadratic in α whose coefficients CG accumulates, so a trial step costs one
#     ln|det(A + αx)| (a factorisation), not a full objective evaluation;
#   * symmetric iterates are positive definite: their inverse and log-determinant come from one
#     Cholesky factor; affine ones from one LU factorisation.


class _Kron(NamedTuple):
    """Per-problem constants of the matrix-free kernel."""

    P: jax.Array  # [k, d, d] subgroup precisions P_i
    wG: jax.Array  # [k, d, d] w_i G_i
    u: jax.Array  # [k, d] template means
    w: jax.Array  # [k]
    mu: jax.Array  # [k, d]
    Pw_chol: jax.Array  # [d, d] Cholesky factor of Σ_i w_i P_i (the b block of the Hessian)
    Pbar: jax.Array  # [d, d] Σ_i w_i P_i / W
    Cbar: jax.Array  # [d, d] Σ_i w_i (G_i + (u_i − ū)(u_i − ū)ᵀ)
    Pbar_iL: jax.Array  # [d, d] inverse Cholesky factor of P̄ (lower)
    Cbar_iL: jax.Array  # [d, d] inverse Cholesky factor of C̄
    Cbar_L: jax.Array  # [d, d] Cholesky factor of C̄
    Gs: jax.Array  # [k, d, d] G_i + (u_i − ū)(u_i − ū)ᵀ: class scatter about the weighted mean
    W: jax.Array
    const: jax.Array  # ½ Σ_i w_i (ln det Σ_i − ln det G_i − d)


def kron_constants(prob: GroupProblem) -> _Kron:
    d = prob.u.shape[-1]
    w = prob.w
    W = jnp.sum(w)
    Pw = _linalg.sym(jnp.einsum("k,kij->ij", w, prob.P))
    ubar = jnp.einsum("k,ki->i", w, prob.u) / W
    du = prob.u - ubar
    # C̄ ⊗ P̄ is the exact reduced quadratic Hessian when all P_i are equal: eliminating b turns the
    # mean terms into the weighted scatter of the template means about their weighted mean.
    Cbar = _linalg.sym(jnp.einsum("k,kij->ij", w, prob.G) + jnp.einsum("k,ki,kj->ij", w, du, du))
    const = 0.5 * jnp.sum(w * (prob.logdet_S - prob.logdet_G - d))
    Pbar = Pw / W
    Gs = prob.G + jnp.einsum("ki,kj->kij", du, du)
    return _Kron(prob.P, w[:, None, None] * prob.G, prob.u, w, prob.mu, jnp.linalg.cholesky(Pw), Pbar, Cbar,
                 _decomp.inverse_cholesky(Pbar), _decomp.inverse_cholesky(Cbar), jnp.linalg.cholesky(Cbar), Gs, W,
                 const)


def _stacked_PVG(K: _Kron, V):
    """``(Σ_i P_i V w_i G_i, [P_i V]_i)`` as two stacked GEMMs (``[k d, d] @ [d, d]``, then one
    contraction over ``(i, l)``) instead of ``2k`` small products: BLAS-3 sized at any ``k``."""
    k, d, _ = K.P.shape
    PV = (K.P.reshape(k * d, d) @ V).reshape(k, d, d)
    return jnp.einsum("kil,klm->im", PV, K.wG), PV


def _hvp_quadratic(K: _Kron, V):
    """The reduced (``b`` eliminated) Hessian of the quadratic part of ``F`` applied to ``V``:
    ``Σ_i w_i P_i V G_i + Σ_i w_i P_i (V u_i + β) u_iᵀ``, ``β = −(Σ w P)⁻¹ Σ_j w_j P_j V u_j``."""
    S, PV = _stacked_PVG(K, V)
    PVu = jnp.einsum("kil,kl->ki", PV, K.u)  # P_i V u_i
    beta = -jax.scipy.linalg.cho_solve((K.Pw_chol, True), jnp.einsum("k,ki->i", K.w, PVu))
    t = PVu + jnp.einsum("kij,j->ki", K.P, beta)
    return S + jnp.einsum("k,ki,kj->ij", K.w, t, K.u)


def _offset(K: _Kron, A):
    """``b*(A) = (Σ w_i P_i)⁻¹ Σ w_i P_i (μ_i − A u_i)``."""
    r = K.mu - K.u @ A.T
    rhs = jnp.einsum("k,kij,kj->i", K.w, K.P, r)
    return jax.scipy.linalg.cho_solve((K.Pw_chol, True), rhs)


class _Aux(NamedTuple):
    b: jax.Array  # b*(A)
    gq: jax.Array  # gradient of the quadratic part (g + W A⁻ᵀ), unprojected
    gb: jax.Array  # ∂F/∂b (zero up to rounding)
    Ainv: jax.Array
    ld: jax.Array  # ln|det A| (−inf outside the domain)


class _Preconditioner(NamedTuple):
    L: jax.Array
    R: jax.Array
    denom: jax.Array  # 1 + θ φᵀ
    Q: jax.Array  # the log-det factor Q = Z (0 in the affine form)


class _PairPreconditioner(NamedTuple):
    AT: jax.Array  # A T (A at the build point)
    T: jax.Array
    Tinv: jax.Array  # T⁻¹
    inv_same: jax.Array  # [d, d] block inverse entries acting on r_ij (diagonal: 1 / D_i)
    inv_cross: jax.Array  # [d, d] symmetric, acting on r_ji (zero diagonal)
    same: jax.Array  # |B| itself, the SPD metric of damped steps
    cross: jax.Array


#: Relative floor of the 2 × 2 blocks' absolute eigenvalues in :func:`pair_preconditioner`.
PAIR_FLOOR = 1e-8


def _abs_pair_inverse(a, c, x, floor):
    """Entries ``(p, s)`` of ``|B|⁻¹`` for the symmetric blocks ``B = [[a, x], [x, c]]`` (elementwise),
    ``|B| = U |Λ| Uᵀ`` with ``|λ|`` floored at ``floor · max|λ|``; ``p`` acts on the first coordinate."""
    m, delta = 0.5 * (a + c), 0.5 * (a - c)
    r = jnp.sqrt(delta * delta + x * x)
    lp, lm = jnp.abs(m + r), jnp.abs(m - r)
    top = jnp.maximum(lp, lm)
    lp, lm = jnp.maximum(lp, floor * top), jnp.maximum(lm, floor * top)
    safe = jnp.where(r > 0, r, 1.0)
    cos2, sin2 = jnp.where(r > 0, delta / safe, 1.0), jnp.where(r > 0, x / safe, 0.0)
    mean, half = 0.5 * (1.0 / lp + 1.0 / lm), 0.5 * (1.0 / lp - 1.0 / lm)
    return mean + half * cos2, half * sin2, (lp, lm, cos2, sin2)


def apply_pair_preconditioner(pc: _PairPreconditioner, X):
    """``V = (A T) [B⁻¹ ⋆ ((A T)ᵀ X T⁻ᵀ)] T⁻¹``: the pair blocks' inverse in the decoupling basis."""
    R = pc.AT.T @ X @ pc.Tinv.T
    Y = pc.inv_same * R + pc.inv_cross * R.T
    return pc.AT @ Y @ pc.Tinv


def pair_preconditioner(K: _Kron, A) -> _PairPreconditioner:
    """Affine form: block-Jacobi in coordinates that decouple the Hessian into 2 × 2 blocks.

    Write a step as ``V = A X`` (``X`` in template coordinates). The Hessian's quadratic form is
    ``Σ_i w_i tr(P̃_i X G̃_i Xᵀ) + W tr(X X)`` with ``P̃_i = Aᵀ P_i A`` and ``G̃_i`` the class scatter
    (exact for equal ``P_i``, where eliminating ``b`` adds the mean scatter). In the basis
    ``X = T Y T⁻¹`` with ``Tᵀ C̄⁻¹ T = I`` and ``Tᵀ (Aᵀ P̄ A) T`` diagonal, ``tr(X X) = tr(Y Y)``
    couples only ``Y_ij`` with ``Y_ji``, and with equal class shapes so would the rest: the Hessian
    is block diagonal in pairs ``(ij, ji)``. Its exact 2 × 2 blocks (every class included) are
    ``[[h_ij, x_ij], [x_ij, h_ji]]``, ``h_ij = Σ_c w_c P'_c[i,i] G'_c[j,j]``,
    ``x_ij = Σ_c w_c P'_c[i,j] G'_c[i,j] + W``, and ``h_ii + W`` on the diagonal. The
    antisymmetric combination is where the log-det term cancels the quadratic part (rotations of a
    nearly isotropic template barely change ``F``); a Kronecker preconditioner sees only the large
    quadratic part there and CG then needs many iterations. The blocks are inverted in absolute
    value (the affine Hessian can be indefinite), their eigenvalues floored at ``PAIR_FLOOR``.
    """
    d = A.shape[-1]
    PA = jnp.einsum("k,kij,jl->il", K.w, K.P, A) / K.W  # P̄ A
    Mw = K.Cbar_L.T @ (A.T @ PA) @ K.Cbar_L  # Lᵀ Aᵀ P̄ A L
    _, U = jnp.linalg.eigh(_linalg.sym(Mw))
    T = K.Cbar_L @ U
    Tinv = U.T @ jax.scipy.linalg.solve_triangular(K.Cbar_L, jnp.eye(d, dtype=A.dtype), lower=True)
    AT = A @ T
    Pp = jnp.einsum("ji,kjl,lm->kim", AT, K.P, AT)  # (AT)ᵀ P_c (AT)
    Gp = jnp.einsum("ij,kjl,ml->kim", Tinv, K.Gs, Tinv)  # T⁻¹ G̃_c T⁻ᵀ
    dP = jnp.diagonal(Pp, axis1=-2, axis2=-1)
    dG = jnp.diagonal(Gp, axis1=-2, axis2=-1)
    h = jnp.einsum("k,ki,kj->ij", K.w, dP, dG)
    x = _linalg.sym(jnp.einsum("k,kij,kij->ij", K.w, Pp, Gp)) + K.W
    eye = jnp.eye(d, dtype=bool)
    p, sc, (lp, lm, cos2, sin2) = _abs_pair_inverse(h, h.T, x, PAIR_FLOOR)
    diag = jnp.abs(jnp.diagonal(h) + K.W)
    inv_same = jnp.where(eye, jnp.diag(1.0 / diag), p)
    inv_cross = jnp.where(eye, 0.0, sc)
    # |B| itself (SPD), the metric of damped steps
    same = jnp.where(eye, jnp.diag(diag), 0.5 * (lp + lm) + 0.5 * (lp - lm) * cos2)
    cross = jnp.where(eye, 0.0, 0.5 * (lp - lm) * sin2)
    return _PairPreconditioner(AT, T, Tinv, inv_same, inv_cross, same, cross)


def pair_metric(pc: _PairPreconditioner, V):
    """The SPD matrix whose inverse :func:`apply_pair_preconditioner` applies, applied to ``V``."""
    Y = jnp.linalg.solve(pc.AT, V @ pc.T)
    R = pc.same * Y + pc.cross * Y.T
    return jnp.linalg.solve(pc.AT.T, R @ pc.T.T)


def _offset_coupling(K: _Kron, V):
    """``H_bA V = Σ_i w_i P_i V u_i``: how a step ``V`` of ``A`` moves the gradient in ``b``."""
    return jnp.einsum("k,kij,jl,kl->i", K.w, K.P, V, K.u)


def _offset_coupling_t(K: _Kron, v):
    """``H_Ab v = Σ_i w_i P_i v u_iᵀ``, the transpose of :func:`_offset_coupling`."""
    return jnp.einsum("k,kij,j,kl->il", K.w, K.P, v, K.u)


def precondition_with_offset(K: _Kron, pc: _PairPreconditioner, R):
    """The pair preconditioner extended to steps ``[V_A | v_b]`` of the whole map (``b`` not eliminated).

    Over ``(A, b)`` the Hessian is ``[[H_AA, H_Ab], [H_bA, H_bb]]`` with ``H_bb = Σ_i w_i P_i`` and the
    couplings of :func:`_offset_coupling`; :func:`pair_preconditioner` approximates the Schur complement
    ``S = H_AA − H_Ab H_bb⁻¹ H_bA`` (the Hessian with ``b`` eliminated, as in :class:`KroneckerGroup`).
    Block elimination: ``V_A = S⁻¹ (R_A − H_Ab H_bb⁻¹ r_b)``, ``v_b = H_bb⁻¹ (r_b − H_bA V_A)``.
    """
    RA, rb = R[:, :-1], R[:, -1]
    beta = jax.scipy.linalg.cho_solve((K.Pw_chol, True), rb)
    VA = apply_pair_preconditioner(pc, RA - _offset_coupling_t(K, beta))
    vb = jax.scipy.linalg.cho_solve((K.Pw_chol, True), rb - _offset_coupling(K, VA))
    return jnp.concatenate([VA, vb[:, None]], axis=1)


def metric_with_offset(K: _Kron, pc: _PairPreconditioner, V):
    """The inverse of :func:`precondition_with_offset`: ``[[S + H_Ab H_bb⁻¹ H_bA, H_Ab], [H_bA, H_bb]]``
    with ``S`` the pair metric."""
    VA, vb = V[:, :-1], V[:, -1]
    hb = _offset_coupling(K, VA)
    t = jax.scipy.linalg.cho_solve((K.Pw_chol, True), hb) + vb
    top = pair_metric(pc, VA) + _offset_coupling_t(K, t)
    bottom = hb + K.Pw_chol @ (K.Pw_chol.T @ vb)
    return jnp.concatenate([top, bottom[:, None]], axis=1)


class KroneckerGroup(_engine.Problem):
    """``F`` over ``A`` alone (``b = b*(A)``) with Kronecker-structured Hessian–vector products, for
    matrix-free Newton–CG. ``symmetric`` is a Python bool where known at trace time (then only that
    form's factorisations are compiled), else a traced boolean."""

    def __init__(self, prob: GroupProblem, symmetric):
        self.K = kron_constants(prob)
        self.symmetric = symmetric
        self.convex = symmetric is True
        self.scale = self.K.W
        self.d = prob.u.shape[-1]

    def _sym(self, X):
        if self.symmetric is False:
            return X
        return jnp.where(self.symmetric, _linalg.sym(X), X)

    def point(self, A) -> Point:
        K = self.K
        b = _offset(K, A)
        M, _ = _stacked_PVG(K, A)  # Σ w_i P_i A G_i
        e = K.u @ A.T + b - K.mu
        Pe = jnp.einsum("kij,kj->ki", K.P, e)
        gq = M + jnp.einsum("k,ki,kj->ij", K.w, Pe, K.u)
        gb = jnp.einsum("k,ki->i", K.w, Pe)
        Ainv, ld = _decomp.inverse_and_logabsdet(A, self.symmetric)
        F = 0.5 * jnp.sum(A * M) + 0.5 * jnp.sum(K.w * jnp.sum(e * Pe, axis=1)) + K.const - K.W * ld
        F = jnp.where(jnp.isnan(F), jnp.inf, F)
        g = self._sym(gq - K.W * Ainv.T)
        G = jnp.concatenate([g, gb[:, None]], axis=1)
        res = jnp.linalg.norm(A.T @ G) / (K.W * jnp.sqrt(float(self.d)))
        return Point(A, F, g, res, _Aux(b, gq, gb, Ainv, ld))

    def hvp(self, pt: Point):
        Ai, W = pt.aux.Ainv, self.K.W

        def apply(V):
            hq = _hvp_quadratic(self.K, V)
            return self._sym(hq + W * (Ai.T @ V.T @ Ai.T)), hq

        return apply

    def preconditioner(self, pt: Point) -> _Preconditioner:
        """Exact inverse of ``V ↦ P̄ V C̄ + Q V Z`` (a sum of two Kronecker products).

        Symmetric form: ``Q = Z = √W A⁻¹``, so ``Q V Z = W A⁻¹ V A⁻¹`` is exactly the log-det Hessian
        on symmetric ``V``; the inverse is followed by symmetrisation (still SPD on symmetric
        matrices). Affine form: the log-det Hessian ``W A⁻ᵀ Vᵀ A⁻ᵀ`` is indefinite (``+`` on ``A⁻¹V``
        symmetric, ``−`` on antisymmetric), so it is left out and only ``P̄ V C̄`` is inverted
        (``Q = Z = 0``: no eigendecomposition). With ``Lᵀ P̄ L = I, Lᵀ Q L = Θ`` and
        ``Rᵀ C̄ R = I, Rᵀ Z R = Φ``: ``V = L [(Lᵀ X R) ⊘ (1 + θ φᵀ)] Rᵀ``.
        """
        K = self.K
        if self.symmetric is False:
            return pair_preconditioner(K, pt.x)
        Q = jnp.where(self.symmetric, jnp.sqrt(K.W) * _linalg.sym(pt.aux.Ainv), 0.0)
        Lm, th = _decomp.geig_whitened(K.Pbar_iL, Q)
        Rm, ph = _decomp.geig_whitened(K.Cbar_iL, Q)
        return _Preconditioner(Lm, Rm, 1.0 + th[:, None] * ph[None, :], Q)

    def precondition(self, pc, X):
        if isinstance(pc, _PairPreconditioner):
            return apply_pair_preconditioner(pc, X)
        Y = (pc.L.T @ X @ pc.R) / pc.denom
        return self._sym(pc.L @ Y @ pc.R.T)

    def metric(self, pc, V):
        if isinstance(pc, _PairPreconditioner):
            return pair_metric(pc, V)
        return self._sym(self.K.Pbar @ V @ self.K.Cbar + pc.Q @ V @ pc.Q)

    def line_model(self, pt: Point, p, extra):
        return jnp.sum(pt.aux.gq * p), jnp.sum(p * extra)  # linear and quadratic coefficients

    def trial(self, pt: Point, p, alpha, line):
        lin_q, curv_q = line
        ld = _decomp.logabsdet(pt.x + alpha * p, self.symmetric)
        return alpha * lin_q + 0.5 * alpha * alpha * curv_q - self.K.W * (ld - pt.aux.ld)

