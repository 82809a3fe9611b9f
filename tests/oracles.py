"""Independent reference implementation ("oracle") of the nearest-ideal-distribution problem.

Plain numpy / scipy / cvxpy; nothing here imports JAX or ``jaxsteer``. Slow but careful: every
problem is solved by local optimisation (L-BFGS-B with analytic gradients, then a damped Newton
polish with a finite-difference Hessian) from many starts, keeping the best. See
``shared/design/MATH.md`` sections 1-3 for the problem statement.

Conventions: a family is ``priors [k, m]`` (joint P(Y=i, A=a), sums to 1), ``means [k, m, d]``,
``covs [k, m, d, d]``; classes ``i``, groups ``a``. Every solver returns a dict with at least

    kl, kl_features, kl_priors      the objective KL(target || family) and its two parts
    priors, means, covs             the target family
    A [m, d, d], b [m, d]           the group maps x = A_a z + b_a
    nu [k, d], Gamma [k, d, d], pi [k]   the template N(nu_i, Gamma_i) and base rates

``kl`` is always recomputed in numpy from the returned target family (``kl_family``).
``all_groups`` adds ``at_boundary``, ``pi_min``, ``interior``, ``support``, ``objective``: the
``all`` problem's infimum can be approached only as some base rate goes to 0 (in the symmetric
form typically the reference class's); see ``all_groups``.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import scipy.optimize as so

__all__ = [
    "gaussian_kl",
    "kl_family",
    "kl_family_parts",
    "random_family",
    "random_orthogonal",
    "ideal_family",
    "affirmative",
    "affirmative_cvxpy",
    "all_groups",
    "all_groups_infimum",
    "univariate_affirmative_closed_form",
    "psd_sqrt",
    "psd_invsqrt",
]

_LBFGS_OPTS = dict(maxiter=20000, maxfun=200000, ftol=1e-16, gtol=1e-11, maxcor=30, maxls=60)


# ----------------------------------------------------------------------------------------------
# linear algebra helpers


def _sym(X):
    return 0.5 * (X + np.swapaxes(X, -1, -2))


def _eig_fn(S, fn):
    w, V = np.linalg.eigh(_sym(np.asarray(S, dtype=float)))
    return _sym((V * fn(w)[..., None, :]) @ np.swapaxes(V, -1, -2))


def psd_sqrt(S):
    """Symmetric PSD square root (eigenvalues clipped at 0)."""
    return _eig_fn(S, lambda w: np.sqrt(np.clip(w, 0.0, None)))


def psd_invsqrt(S):
    """Symmetric inverse square root of an SPD matrix."""
    return _eig_fn(S, lambda w: 1.0 / np.sqrt(w))


def _logdet_pd(S):
    sign, ld = np.linalg.slogdet(S)
    if np.any(sign <= 0):
        raise ValueError("matrix is not positive definite")
    return ld


def random_orthogonal(rng, d, det=None):
    """Haar-distributed orthogonal matrix; ``det`` = +1 / -1 forces the determinant's sign."""
    Z = rng.normal(size=(d, d))
    Q, R = np.linalg.qr(Z)
    Q = Q * np.sign(np.diag(R))[None, :]
    if det is not None and np.sign(np.linalg.det(Q)) != np.sign(det):
        Q[:, 0] = -Q[:, 0]
    return Q


# ----------------------------------------------------------------------------------------------
# divergences


def gaussian_kl(m1, S1, m0, S0):
    """KL(N(m1, S1) || N(m0, S0)), batched over leading axes."""
    m1, S1, m0, S0 = (np.asarray(t, dtype=float) for t in (m1, S1, m0, S0))
    d = m1.shape[-1]
    P0 = np.linalg.inv(S0)
    diff = m1 - m0
    tr = np.einsum("...ij,...ji->...", P0, S1)
    quad = np.einsum("...i,...ij,...j->...", diff, P0, diff)
    _, ld0 = np.linalg.slogdet(S0)
    _, ld1 = np.linalg.slogdet(S1)
    return 0.5 * (tr + quad - d + ld0 - ld1)


def kl_family_parts(p_priors, p_means, p_covs, q_priors, q_means, q_covs):
    """KL(p-family || q-family) split into prior and feature parts; also the subgroup KLs."""
    pp = np.asarray(p_priors, dtype=float)
    qp = np.asarray(q_priors, dtype=float)
    K = gaussian_kl(p_means, p_covs, q_means, q_covs)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pp > 0, pp * np.log(pp / qp), 0.0)
    kl_priors = float(np.sum(terms))
    kl_features = float(np.sum(pp * K))
    return dict(kl=kl_priors + kl_features, kl_priors=kl_priors, kl_features=kl_features,
                subgroup_kl=K)


def kl_family(p_priors, p_means, p_covs, q_priors, q_means, q_covs):
    """Joint KL(p-family || q-family) = sum p ln(p/q) + sum p * KL(subgroups)."""
    return kl_family_parts(p_priors, p_means, p_covs, q_priors, q_means, q_covs)["kl"]


# ----------------------------------------------------------------------------------------------
# families


def _check_family(priors, means, covs):
    priors = np.asarray(priors, dtype=float)
    means = np.asarray(means, dtype=float)
    covs = np.asarray(covs, dtype=float)
    if priors.ndim != 2 or means.ndim != 3 or covs.ndim != 4:
        raise ValueError("expected priors [k,m], means [k,m,d], covs [k,m,d,d]")
    k, m, d = means.shape
    if priors.shape != (k, m) or covs.shape != (k, m, d, d):
        raise ValueError("inconsistent family shapes")
    if abs(priors.sum() - 1.0) > 1e-9 or np.any(priors <= 0):
        raise ValueError("priors must be positive and sum to 1")
    return priors, means, _sym(covs)


def random_family(rng, k, m, d, *, floor=0.03):
    """A well-conditioned random family: distinct covariances (eigenvalues in [0.3, 3]),
    unequal base rates and group sizes, every prior >= ``floor``."""
    if k * m * floor >= 1:
        raise ValueError("floor too large")
    while True:
        raw = rng.dirichlet(np.full(k * m, 2.0)).reshape(k, m)
        priors = floor + (1.0 - k * m * floor) * raw
        p = priors.sum(0)
        base = priors / p
        unequal_base = np.min(np.ptp(base, axis=1)) > 0.02 if m > 1 else True
        unequal_size = (np.min(np.diff(np.sort(p))) > 0.01) if m > 1 else True
        if unequal_base and unequal_size:
            break
    means = rng.normal(size=(k, m, d))
    covs = np.empty((k, m, d, d))
    for i in range(k):
        for a in range(m):
            Q = random_orthogonal(rng, d)
            ev = np.exp(rng.uniform(np.log(0.3), np.log(3.0), size=d))
            covs[i, a] = _sym((Q * ev) @ Q.T)
    return priors, means, covs


def ideal_family(nu, Gamma, pi, p, A, b):
    """The family defined by a template (nu [k,d], Gamma [k,d,d]), base rates pi [k], group sizes
    p [m] and maps A [m,d,d], b [m,d]."""
    nu, Gamma, pi, p, A, b = (np.asarray(t, dtype=float) for t in (nu, Gamma, pi, p, A, b))
    priors = pi[:, None] * p[None, :]
    means = np.einsum("mij,kj->kmi", A, nu) + b[None]
    covs = _sym(np.einsum("mij,kjl,mql->kmiq", A, Gamma, A))
    return priors, means, covs


def _result(priors, means, covs, tp, tm, tc, **extra):
    parts = kl_family_parts(tp, tm, tc, priors, means, covs)
    out = dict(parts)
    out.update(priors=tp, means=tm, covs=tc, weights=tp / priors)
    out.update(extra)
    return out


# ----------------------------------------------------------------------------------------------
# generic optimisation machinery


def _tril_tools(d):
    rows, cols = np.tril_indices(d)
    diag = rows == cols
    return rows, cols, diag


def _L_from_x(x, d):
    rows, cols, diag = _tril_tools(d)
    v = np.array(x, dtype=float)
    with np.errstate(over="ignore"):
        v[diag] = np.exp(v[diag])
    L = np.zeros((d, d))
    L[rows, cols] = v
    return L


def _x_from_spd(S):
    d = S.shape[0]
    rows, cols, diag = _tril_tools(d)
    L = np.linalg.cholesky(_sym(S))
    v = L[rows, cols].copy()
    v[diag] = np.log(v[diag])
    return v


def _gx_from_gL(gL, L):
    d = L.shape[0]
    rows, cols, diag = _tril_tools(d)
    g = gL[rows, cols].copy()
    g[diag] = g[diag] * L[rows[diag], cols[diag]]
    return g


def _safe(fg):
    """Wrap value_and_grad so that overflow / singularity gives +inf instead of warnings."""

    def wrapped(x):
        with np.errstate(all="ignore"):
            try:
                f, g = fg(x)
            except np.linalg.LinAlgError:
                return np.inf, np.zeros_like(x)
        if not np.isfinite(f) or not np.all(np.isfinite(g)):
            return np.inf, np.zeros_like(x)
        return float(f), g

    return wrapped


def _lbfgs(fg, x0):
    """L-BFGS-B from x0, restarted once from its answer; never returns worse than x0."""
    f0, _ = fg(x0)
    best_x, best_f = np.array(x0, dtype=float), f0
    x = best_x
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = so.minimize(fg, x, jac=True, method="L-BFGS-B", options=_LBFGS_OPTS)
        f, _ = fg(res.x)
        if np.isfinite(f) and f <= best_f:
            best_x, best_f = np.array(res.x), f
        x = best_x
    return best_x, best_f


def _newton_polish(fg, x, max_iter=25):
    """Damped Newton with a central finite-difference Hessian of the analytic gradient.
    Accepts only steps that lower the objective."""
    x = np.array(x, dtype=float)
    f, g = fg(x)
    n = x.size
    for _ in range(max_iter):
        if not np.isfinite(f):
            break
        H = np.empty((n, n))
        for j in range(n):
            h = 1e-6 * (1.0 + abs(x[j]))
            e = np.zeros(n)
            e[j] = h
            gp = fg(x + e)[1]
            gm = fg(x - e)[1]
            H[:, j] = (gp - gm) / (2 * h)
        H = _sym(H)
        if not np.all(np.isfinite(H)):
            break
        ev, V = np.linalg.eigh(H)
        scale = max(1.0, float(np.max(np.abs(ev))))
        ev = np.maximum(np.abs(ev), 1e-10 * scale)
        step = -V @ ((V.T @ g) / ev)
        t = 1.0
        accepted = False
        for _ in range(50):
            f1, g1 = fg(x + t * step)
            if np.isfinite(f1) and f1 < f:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        decrease = f - f1
        x, f, g = x + t * step, f1, g1
        if decrease <= 1e-15 * max(1.0, abs(f)):
            break
    return x, f


def _multistart(fg, starts, n_polish=2):
    """Run L-BFGS from every start, polish the best ``n_polish``; return (best_x, best_f, all_f)."""
    fg = _safe(fg)
    runs = []
    for x0 in starts:
        f_start, _ = fg(x0)
        if not np.isfinite(f_start):
            continue
        x, f = _lbfgs(fg, x0)
        runs.append((f, x))
    if not runs:
        raise RuntimeError("no start had a finite objective")
    runs.sort(key=lambda t: t[0])
    polished = []
    for f, x in runs[:n_polish]:
        xp, fp = _newton_polish(fg, x)
        if fp <= f:
            x, f = xp, fp
        x, f = _lbfgs(fg, x)  # and once more from the polished point
        polished.append((f, x))
    polished.sort(key=lambda t: t[0])
    best_f, best_x = polished[0]
    return best_x, best_f, np.array(sorted([r[0] for r in runs]))


# ----------------------------------------------------------------------------------------------
# one moving group (affirmative): F(A) = sum_i w_i KL(N(A nu_i + b*(A), A Gamma_i A^T) || N(mu_i, Sigma_i))


class _GroupProblem:
    def __init__(self, nu, Gam, mu, Sig, w):
        self.nu = np.asarray(nu, dtype=float)  # [k, d]
        self.Gam = _sym(np.asarray(Gam, dtype=float))  # [k, d, d]
        self.mu = np.asarray(mu, dtype=float)  # [k, d]
        self.Sig = _sym(np.asarray(Sig, dtype=float))
        self.w = np.asarray(w, dtype=float)
        self.d = self.nu.shape[1]
        self.P = _sym(np.linalg.inv(self.Sig))
        self.W = float(self.w.sum())
        self.WP = np.einsum("k,kij->ij", self.w, self.P)
        self.WP_inv = np.linalg.inv(self.WP)
        self.Pmu = np.einsum("k,kij,kj->i", self.w, self.P, self.mu)
        self.const = 0.5 * float(np.sum(self.w * (-self.d + _logdet_pd(self.Sig) - _logdet_pd(self.Gam))))

    def b_of(self, A):
        return self.WP_inv @ (self.Pmu - np.einsum("k,kij,jl,kl->i", self.w, self.P, A, self.nu))

    def value_grad(self, A):
        sign, lad = np.linalg.slogdet(A)
        if sign == 0:
            raise np.linalg.LinAlgError("singular map")
        b = self.b_of(A)
        e = self.nu @ A.T + b[None] - self.mu  # [k, d]
        Pe = np.einsum("kij,kj->ki", self.P, e)
        AG = np.einsum("ij,kjl->kil", A, self.Gam)  # A Gamma_i
        PAG = np.einsum("kij,kjl->kil", self.P, AG)  # P_i A Gamma_i
        tr = np.einsum("kil,il->k", PAG, A)  # tr(P A G A^T)
        quad = np.sum(e * Pe, axis=1)
        f = 0.5 * float(np.sum(self.w * (tr + quad))) - self.W * lad + self.const
        G = np.einsum("k,kij->ij", self.w, PAG) + np.einsum("k,ki,kj->ij", self.w, Pe, self.nu)
        G = G - self.W * np.linalg.inv(A).T
        return f, G, b


def _solve_group_symmetric(prob, H, S_starts):
    """Symmetric form: A = S H with S = L L^T SPD (L lower triangular, log-diagonal)."""
    d = prob.d

    def fg(x):
        L = _L_from_x(x, d)
        S = L @ L.T
        f, GA, _ = prob.value_grad(S @ H)
        GS = GA @ H.T
        gL = (GS + GS.T) @ L
        return f, _gx_from_gL(gL, L)

    starts = [_x_from_spd(S0) for S0 in S_starts]
    x, f, fs = _multistart(fg, starts)
    L = _L_from_x(x, d)
    A = L @ L.T @ H
    return A, prob.b_of(A), f, fs


def _solve_group_affine(prob, A_starts):
    d = prob.d

    def fg(x):
        A = x.reshape(d, d)
        f, GA, _ = prob.value_grad(A)
        return f, GA.ravel()

    starts = [np.asarray(A0, dtype=float).ravel() for A0 in A_starts]
    x, f, fs = _multistart(fg, starts, n_polish=3)
    A = x.reshape(d, d)
    return A, prob.b_of(A), f, fs


def _eigen_aligned_starts(means, covs, r, a, c, rng, max_signs=64):
    """MATH section 3: whiten each group by its class-c covariance, align the eigenvectors of the
    whitened class-j covariances (j != c), signs from the whitened mean differences; plus sign
    flips (all of them when 2^d <= max_signs, else random ones)."""
    k, _, d = means.shape
    starts = []
    Ra = psd_sqrt(covs[c, a])
    Hr, Ha = psd_invsqrt(covs[c, r]), psd_invsqrt(covs[c, a])
    if d <= int(np.log2(max_signs)):
        flips = [np.array(s, dtype=float) for s in itertools.product([1.0, -1.0], repeat=d)]
    else:
        flips = [np.ones(d)] + [rng.choice([1.0, -1.0], size=d) for _ in range(max_signs - 1)]
    for j in range(k):
        if j == c:
            continue
        Gr = Hr @ covs[j, r] @ Hr
        Ga = Ha @ covs[j, a] @ Ha
        _, Vr = np.linalg.eigh(_sym(Gr))
        _, Va = np.linalg.eigh(_sym(Ga))
        dr = Hr @ (means[j, r] - means[c, r])
        da = Ha @ (means[j, a] - means[c, a])
        s = np.sign((Vr.T @ dr) * (Va.T @ da))
        s[s == 0] = 1.0
        for fl in flips:
            starts.append(Ra @ Va @ np.diag(s * fl) @ Vr.T @ Hr)
    return starts


def _random_spd(rng, d, spread=1.0):
    Q = random_orthogonal(rng, d)
    ev = np.exp(rng.uniform(-spread, spread, size=d))
    return _sym((Q * ev) @ Q.T)


def affirmative(priors, means, covs, *, form="symmetric", reference=0, reference_class=0,
                n_starts=8, seed=0):
    """Affirmative intervention: group ``reference`` is unchanged, every other group moves.

    Target priors q~[i,a] = p_a q(i|r); template = group r's subgroups (A_r = I, b_r = 0).
    ``form="symmetric"``: A_a = S Sigma_cr^{-1/2} with S SPD (convex; a few starts for safety).
    ``form="affine"``: A_a any invertible matrix; starts = the symmetric optimum, eigen-aligned
    starts with sign flips for every class j != c, and ``n_starts`` random orthogonal starts
    Sigma_ca^{1/2} Q Sigma_cr^{-1/2} (both determinant signs). Best value kept.
    """
    priors, means, covs = _check_family(priors, means, covs)
    if form not in ("symmetric", "affine"):
        raise ValueError(f"unknown form {form!r}")
    k, m, d = means.shape
    r, c = int(reference), int(reference_class)
    rng = np.random.default_rng(seed)
    p = priors.sum(0)
    base = priors / p
    tp = p[None, :] * base[:, r][:, None]
    nu, Gam = means[:, r], covs[:, r]
    H = psd_invsqrt(covs[c, r])
    A_all = np.zeros((m, d, d))
    b_all = np.zeros((m, d))
    A_sym_all = np.zeros((m, d, d))
    start_values = {}
    for a in range(m):
        if a == r:
            A_all[a] = np.eye(d)
            A_sym_all[a] = np.eye(d)
            continue
        prob = _GroupProblem(nu, Gam, means[:, a], covs[:, a], tp[:, a])
        S_starts = [np.eye(d), psd_sqrt(covs[c, a])]
        S_starts += [_random_spd(rng, d) for _ in range(max(1, n_starts // 4))]
        A_sym, b_sym, f_sym, fs = _solve_group_symmetric(prob, H, S_starts)
        A_sym_all[a] = A_sym
        if form == "symmetric":
            A_all[a], b_all[a] = A_sym, b_sym
            start_values[a] = fs
            continue
        A_starts = [A_sym]
        A_starts += _eigen_aligned_starts(means, covs, r, a, c, rng)
        Ra = psd_sqrt(covs[c, a])
        for s in range(n_starts):
            Q = random_orthogonal(rng, d, det=1 if s % 2 == 0 else -1)
            A_starts.append(Ra @ Q @ H)
        A_aff, b_aff, f_aff, fs = _solve_group_affine(prob, A_starts)
        if f_aff > f_sym:  # cannot happen (the symmetric optimum is a start), but be safe
            A_aff, b_aff = A_sym, b_sym
        A_all[a], b_all[a] = A_aff, b_aff
        start_values[a] = fs
    tm = np.einsum("mij,kj->kmi", A_all, nu) + b_all[None]
    tc = _sym(np.einsum("mij,kjl,mql->kmiq", A_all, Gam, A_all))
    return _result(priors, means, covs, tp, tm, tc, A=A_all, b=b_all, nu=nu.copy(),
                   Gamma=Gam.copy(), pi=base[:, r].copy(), form=form, reference=r,
                   reference_class=c, start_values=start_values)


def affirmative_cvxpy(priors, means, covs, *, reference=0, reference_class=0, tol=1e-10):
    """The symmetric affirmative problem as a convex program (Clarabel), one per moving group:

    min_{S PSD, b} 1/2 sum_i w_i [ ||P_i^{1/2} S G_i^{1/2}||_F^2 + ||P_i^{1/2}(S u_i + b - mu_ia)||^2 ]
                   - W log det S,
    u_i = Sigma_cr^{-1/2} mu_ir, G_i = Sigma_cr^{-1/2} Sigma_ir Sigma_cr^{-1/2}, A = S Sigma_cr^{-1/2}.
    The returned KL is recomputed in numpy from the recovered maps.
    """
    import cvxpy as cp

    priors, means, covs = _check_family(priors, means, covs)
    k, m, d = means.shape
    r, c = int(reference), int(reference_class)
    p = priors.sum(0)
    base = priors / p
    tp = p[None, :] * base[:, r][:, None]
    nu, Gam = means[:, r], covs[:, r]
    H = psd_invsqrt(covs[c, r])
    u = nu @ H.T
    G = _sym(np.einsum("ij,kjl,lq->kiq", H, Gam, H))
    Gh = np.stack([psd_sqrt(G[i]) for i in range(k)])
    A_all = np.zeros((m, d, d))
    b_all = np.zeros((m, d))
    statuses = {}
    for a in range(m):
        if a == r:
            A_all[a] = np.eye(d)
            continue
        w = tp[:, a]
        S = cp.Variable((d, d), PSD=True)
        b = cp.Variable(d)
        terms = []
        for i in range(k):
            Ph = psd_sqrt(np.linalg.inv(covs[i, a]))
            terms.append(w[i] * (cp.sum_squares(Ph @ S @ Gh[i])
                                 + cp.sum_squares(Ph @ (S @ u[i] + b - means[i, a]))))
        obj = 0.5 * cp.sum(cp.hstack(terms)) - float(w.sum()) * cp.log_det(S)
        problem = cp.Problem(cp.Minimize(obj))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            problem.solve(solver=cp.CLARABEL, tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol,
                          tol_ktratio=1e-8, max_iter=500)
        statuses[a] = problem.status
        if S.value is None:
            raise RuntimeError(f"cvxpy failed on group {a}: {problem.status}")
        A_all[a] = _sym(S.value) @ H
        b_all[a] = b.value
    tm = np.einsum("mij,kj->kmi", A_all, nu) + b_all[None]
    tc = _sym(np.einsum("mij,kjl,mql->kmiq", A_all, Gam, A_all))
    return _result(priors, means, covs, tp, tm, tc, A=A_all, b=b_all, nu=nu.copy(),
                   Gamma=Gam.copy(), pi=base[:, r].copy(), form="symmetric", reference=r,
                   reference_class=c, status=statuses)


# ----------------------------------------------------------------------------------------------
# every group moves


class _AllProblem:
    """Joint optimisation over the template (gauge nu_c = 0, Gamma_c = I), every group map, and
    the base rates pi, which are profiled out exactly on the support T (pi_i = 0 off T):
        min_pi sum_a sum_i p_a pi_i [ln(pi_i / q(i|a)) + K_ia] = -logsumexp_{i in T}(-c_i),
        c_i = sum_a p_a (K_ia - ln q(i|a)),   optimal pi = softmax_T(-c).
    Symmetric form: A_a = L_a L_a^T SPD; affine form: A_a free."""

    def __init__(self, priors, means, covs, form, c, support):
        self.k, self.m, self.d = means.shape
        self.form, self.c = form, c
        self.support = np.zeros(self.k, dtype=bool)
        self.support[list(support)] = True
        self.p = priors.sum(0)
        self.logbase = np.log(priors / self.p)
        self.mu = means
        self.P = _sym(np.linalg.inv(covs))
        _, self.ldS = np.linalg.slogdet(covs)
        self.others = [i for i in range(self.k) if i != c]
        d = self.d
        self.nt = d * (d + 1) // 2
        self.nA = self.nt if form == "symmetric" else d * d

    # layout: [nu_j (d) for j in others] [L_Gamma_j (nt) for j in others] [A_a (nA) for a] [b_a (d)]
    def unpack(self, x):
        k, m, d, nt, nA = self.k, self.m, self.d, self.nt, self.nA
        o = len(self.others)
        pos = 0
        nu = np.zeros((k, d))
        nu[self.others] = x[pos:pos + o * d].reshape(o, d)
        pos += o * d
        LG = np.zeros((k, d, d))
        LG[self.c] = np.eye(d)
        for j in self.others:
            LG[j] = _L_from_x(x[pos:pos + nt], d)
            pos += nt
        LA = np.zeros((m, d, d))
        A = np.zeros((m, d, d))
        for a in range(m):
            if self.form == "symmetric":
                LA[a] = _L_from_x(x[pos:pos + nA], d)
                A[a] = LA[a] @ LA[a].T
            else:
                A[a] = x[pos:pos + nA].reshape(d, d)
            pos += nA
        b = x[pos:pos + m * d].reshape(m, d)
        return nu, LG, LA, A, b

    def pack(self, nu, Gam, A, b):
        """From a template already in gauge (nu_c = 0, Gamma_c = I) and maps."""
        parts = [nu[self.others].ravel()]
        for j in self.others:
            parts.append(_x_from_spd(Gam[j]))
        for a in range(self.m):
            if self.form == "symmetric":
                parts.append(_x_from_spd(_sym(A[a])))
            else:
                parts.append(np.asarray(A[a], dtype=float).ravel())
        parts.append(np.asarray(b, dtype=float).ravel())
        return np.concatenate(parts)

    def evaluate(self, x):
        nu, LG, LA, A, b = self.unpack(x)
        d = self.d
        Gam = LG @ np.swapaxes(LG, -1, -2)
        ldG = 2.0 * np.sum(np.log(np.abs(np.diagonal(LG, axis1=1, axis2=2))), axis=1)
        sign, lad = np.linalg.slogdet(A)
        if np.any(sign == 0):
            raise np.linalg.LinAlgError("singular map")
        AG = np.einsum("mij,kjl->kmil", A, Gam)
        tr = np.einsum("kmij,kmjl,mil->km", self.P, AG, A)
        e = np.einsum("mij,kj->kmi", A, nu) + b[None] - self.mu
        Pe = np.einsum("kmij,kmj->kmi", self.P, e)
        quad = np.sum(e * Pe, axis=-1)
        K = 0.5 * (tr + quad - d + self.ldS - ldG[:, None] - 2.0 * lad[None, :])
        cvec = np.sum(self.p[None, :] * (K - self.logbase), axis=1)
        z = np.where(self.support, -cvec, -np.inf)
        zmax = np.max(z)
        lse = zmax + np.log(np.sum(np.exp(z - zmax)))
        pi = np.exp(z - lse)
        return dict(f=-lse, pi=pi, K=K, nu=nu, Gam=Gam, LG=LG, LA=LA, A=A, b=b, e=e, Pe=Pe, AG=AG)

    def value_grad(self, x):
        ev = self.evaluate(x)
        self._last = (np.array(x, dtype=float), ev["pi"])
        nu, Gam, LG, LA, A, b, Pe, AG = (ev[s] for s in ("nu", "Gam", "LG", "LA", "A", "b", "Pe", "AG"))
        w = ev["pi"][:, None] * self.p[None, :]  # q~[i, a] = dF/dK_ia
        gA = (np.einsum("km,kmij,kmjl->mil", w, self.P, AG)
              + np.einsum("km,kmi,kj->mij", w, Pe, nu)
              - w.sum(0)[:, None, None] * np.swapaxes(np.linalg.inv(A), -1, -2))
        gb = np.einsum("km,kmi->mi", w, Pe)
        gnu = np.einsum("km,mji,kmj->ki", w, A, Pe)
        AtPA = np.einsum("mji,kmjl,mlq->kmiq", A, self.P, A)
        gGam = 0.5 * (np.einsum("km,kmij->kij", w, AtPA)
                      - w.sum(1)[:, None, None] * np.linalg.inv(Gam))
        parts = [gnu[self.others].ravel()]
        for j in self.others:
            gL = 2.0 * _sym(gGam[j]) @ LG[j]
            parts.append(_gx_from_gL(gL, LG[j]))
        for a in range(self.m):
            if self.form == "symmetric":
                gL = (gA[a] + gA[a].T) @ LA[a]
                parts.append(_gx_from_gL(gL, LA[a]))
            else:
                parts.append(gA[a].ravel())
        parts.append(gb.ravel())
        return ev["f"], np.concatenate(parts)

    def min_pi(self, x):
        last = getattr(self, "_last", None)
        if last is not None and np.array_equal(last[0], x):
            return float(np.min(last[1][self.support]))
        with np.errstate(all="ignore"):
            try:
                pi = self.evaluate(x)["pi"]
            except np.linalg.LinAlgError:
                return 0.0
        return float(np.min(pi[self.support]))


def _to_gauge(nu, Gam, A, b, c):
    """Re-express (template, maps) in the gauge nu_c = 0, Gamma_c = I (z' = Gamma_c^{-1/2}(z - nu_c))."""
    R = psd_sqrt(Gam[c])
    Ri = psd_invsqrt(Gam[c])
    nu2 = (nu - nu[c][None]) @ Ri.T
    Gam2 = _sym(np.einsum("ij,kjl,lq->kiq", Ri, Gam, Ri))
    Gam2[c] = np.eye(nu.shape[1])
    nu2[c] = 0.0
    A2 = np.einsum("mij,jl->mil", A, R)
    b2 = b + np.einsum("mij,j->mi", A, nu[c])
    return nu2, Gam2, A2, b2


_ALL_MAXITER = 4000     # L-BFGS iterations per run (interior optima converge in a few hundred)
_DRIFT_STOP = 1e-9      # a run is stopped once some supported pi_i falls below this
_CONVERGED_GTOL = 1e-6  # final max |gradient| for a run to count as a stationary point


def _all_runs(prob, starts, pi_tol):
    """L-BFGS from every start; classify each run as interior (a stationary point with every
    supported pi_i >= pi_tol) or drifting (towards a face of the simplex where a class vanishes,
    or not converged). Polishes the best interior runs with Newton."""
    fg = _safe(prob.value_grad)

    def callback(intermediate_result):
        if prob.min_pi(intermediate_result.x) < _DRIFT_STOP:
            raise StopIteration

    opts = dict(_LBFGS_OPTS, maxiter=_ALL_MAXITER)
    runs = []
    for x0 in starts:
        f0, _ = fg(x0)
        if not np.isfinite(f0):
            continue
        x, f = np.array(x0, dtype=float), f0
        for _ in range(2):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = so.minimize(fg, x, jac=True, method="L-BFGS-B", options=opts,
                                  callback=callback)
            f1, _ = fg(res.x)
            if np.isfinite(f1) and f1 <= f:
                x, f = np.array(res.x), f1
            if prob.min_pi(x) < _DRIFT_STOP:
                break
        runs.append([f, x])
    if not runs:
        raise RuntimeError("no start had a finite objective")

    def is_interior(x):
        _, g = fg(x)
        return prob.min_pi(x) >= pi_tol and float(np.max(np.abs(g))) < _CONVERGED_GTOL

    runs.sort(key=lambda t: t[0])
    # polish the best few candidates whose pi stays away from the boundary
    n_pol = 0
    for run in runs:
        if n_pol >= 3:
            break
        f, x = run
        if prob.min_pi(x) < pi_tol:
            continue
        xp, fp = _newton_polish(fg, x, max_iter=10)
        if fp <= f:
            run[0], run[1] = fp, xp
        n_pol += 1
    runs.sort(key=lambda t: t[0])
    labelled = [(f, x, is_interior(x)) for f, x in runs]
    return labelled


def _all_starts(priors, means, covs, form, c, rng, n_starts, seed):
    k, m, d = means.shape
    raw_starts = []  # (nu, Gam, A, b) in arbitrary gauge
    forms = ["symmetric"] if form == "symmetric" else ["symmetric", "affine"]
    for r in range(m):
        for fm in forms:
            res = affirmative(priors, means, covs, form=fm, reference=r, reference_class=c,
                              n_starts=n_starts, seed=seed + 17 * r)
            raw_starts.append((res["nu"], res["Gamma"], res["A"], res["b"]))
    base_templates = []
    for r in range(m):
        nu_r, Gam_r = means[:, r], covs[:, r]
        A0 = np.stack([psd_sqrt(covs[c, a]) for a in range(m)])
        b0 = means[c].copy()
        Hr = psd_invsqrt(covs[c, r])  # template = whitened group r, maps = Sigma_ca^{1/2}
        nu_g = (nu_r - nu_r[c]) @ Hr.T
        Gam_g = _sym(np.einsum("ij,kjl,lq->kiq", Hr, Gam_r, Hr))
        Gam_g[c] = np.eye(d)
        base_templates.append((nu_g, Gam_g))
        raw_starts.append((nu_g, Gam_g, A0, b0))
    for _ in range(n_starts):
        nu_g, Gam_g = base_templates[rng.integers(m)]
        nu_s = nu_g + 0.3 * rng.normal(size=nu_g.shape)
        nu_s[c] = 0.0
        Gam_s = Gam_g.copy()
        for j in range(k):
            if j != c:
                E = np.eye(d) + 0.3 * rng.normal(size=(d, d))
                Gam_s[j] = _sym(E @ Gam_g[j] @ E.T) + 1e-3 * np.eye(d)
        A_s = np.empty((m, d, d))
        for a in range(m):
            Ra = psd_sqrt(covs[c, a])
            if form == "symmetric":
                A_s[a] = _sym(Ra @ _random_spd(rng, d, spread=0.3) @ Ra)
            else:
                A_s[a] = Ra @ random_orthogonal(rng, d, det=1 if rng.random() < 0.5 else -1)
        b_s = means[c] + 0.3 * rng.normal(size=(m, d))
        raw_starts.append((nu_s, Gam_s, A_s, b_s))
    return raw_starts


def _all_result(priors, means, covs, prob, f, x, **extra):
    ev = prob.evaluate(x)
    pi, nu, Gam, A, b = ev["pi"], ev["nu"], ev["Gam"], ev["A"], ev["b"]
    tp, tm, tc = ideal_family(nu, Gam, pi, prob.p, A, b)
    return _result(priors, means, covs, tp, tm, tc, A=A, b=b, nu=nu, Gamma=Gam, pi=pi,
                   objective=f, **extra)


def all_groups(priors, means, covs, *, form="symmetric", reference_class=0, support=None,
               n_starts=8, seed=0, extra_starts=(), pi_tol=1e-6):
    """Intervention ``all``: every group moves; joint optimisation over the template (gauge
    nu_c = 0, Gamma_c = I), the maps and the base rates (profiled exactly, pi_i = 0 off ``support``).

    Starts: for every reference group r the affirmative optimum (this form; for ``affine`` also the
    symmetric one) re-gauged, so the answer is never worse than any affirmative one; for every
    group r its subgroups as template with maps A_a = Sigma_ca^{1/2}, b_a = mu_ca; ``n_starts``
    random perturbations of those (random orthogonal maps for ``affine``); for ``affine`` the
    symmetric ``all_groups`` answer (so affine <= symmetric); ``extra_starts`` (nu, Gamma, A, b).

    CAUTION -- the infimum need not be attained. Reverse KL lets the target drop a class: runs
    often drift towards pi_i -> 0 (the remaining classes then fit better), with template / maps
    diverging in the gauge Gamma_c = I. Each run is therefore classified:
      interior  a stationary point (max|grad| < 1e-6) with every supported pi_i >= ``pi_tol``;
      drifting  stopped once some pi_i < 1e-9, or not converged.
    Returned: the best run of either kind (a valid ideal family; ``kl`` <= every affirmative
    value) in the main keys, with ``at_boundary`` (it is a drifting run), ``pi_min``, and
    ``interior`` = the best interior stationary point as its own result dict (or None). For the
    exact value on a face of the simplex use ``support`` (or ``all_groups_infimum``).

    ``support``: classes allowed positive mass (default all). The symmetric form needs
    ``reference_class`` in ``support`` (its condition is defined by that class); for the affine
    form the reference class is only a gauge, and is replaced by min(support) when outside it.
    """
    priors, means, covs = _check_family(priors, means, covs)
    if form not in ("symmetric", "affine"):
        raise ValueError(f"unknown form {form!r}")
    k, m, d = means.shape
    c = int(reference_class)
    support = tuple(range(k)) if support is None else tuple(sorted(set(int(i) for i in support)))
    if not support:
        raise ValueError("empty support")
    if c not in support:
        if form == "symmetric":
            raise ValueError("symmetric form: reference_class must be in support")
        c = support[0]
    rng = np.random.default_rng(seed)
    prob = _AllProblem(priors, means, covs, form, c, support)

    raw_starts = _all_starts(priors, means, covs, form, c, rng, n_starts, seed)
    if form == "affine":
        sym = all_groups(priors, means, covs, form="symmetric", reference_class=c,
                         support=support, n_starts=n_starts, seed=seed, pi_tol=pi_tol)
        raw_starts.append((sym["nu"], sym["Gamma"], sym["A"], sym["b"]))
        if sym["interior"] is not None:
            s = sym["interior"]
            raw_starts.append((s["nu"], s["Gamma"], s["A"], s["b"]))
    raw_starts.extend(extra_starts)

    starts = []
    for nu0, Gam0, A0, b0 in raw_starts:
        nu_g, Gam_g, A_g, b_g = _to_gauge(np.asarray(nu0, float), _sym(np.asarray(Gam0, float)),
                                          np.asarray(A0, float), np.asarray(b0, float), c)
        if form == "symmetric":
            A_g = _sym(A_g)
            if np.min(np.linalg.eigvalsh(A_g)) <= 0:
                continue
        starts.append(prob.pack(nu_g, Gam_g, A_g, b_g))

    runs = _all_runs(prob, starts, pi_tol)
    common = dict(form=form, reference_class=c, support=support)
    f_best, x_best, interior_best = runs[0]
    interior_runs = [r for r in runs if r[2]]
    interior = None
    if interior_runs:
        f_i, x_i, _ = interior_runs[0]
        interior = _all_result(priors, means, covs, prob, f_i, x_i, at_boundary=False,
                               pi_min=prob.min_pi(x_i), **common)
    out = _all_result(priors, means, covs, prob, f_best, x_best, at_boundary=not interior_best,
                      pi_min=prob.min_pi(x_best), interior=interior,
                      start_values=np.array([r[0] for r in runs]),
                      start_interior=np.array([r[2] for r in runs]), **common)
    return out


def all_groups_infimum(priors, means, covs, *, form="symmetric", reference_class=0, n_starts=8,
                       seed=0, pi_tol=1e-6):
    """Best value of the ``all`` problem over the closed simplex of base rates: ``all_groups``
    on every support T (every nonempty class subset for ``affine``; those containing
    ``reference_class`` for ``symmetric``), keeping the best family found on any of them.
    ``by_support`` maps T to (best kl on T, interior kl on T or nan)."""
    priors, means, covs = _check_family(priors, means, covs)
    k = means.shape[0]
    c = int(reference_class)
    best = None
    by_support = {}
    for size in range(k, 0, -1):
        for T in itertools.combinations(range(k), size):
            if form == "symmetric" and c not in T:
                continue
            res = all_groups(priors, means, covs, form=form, reference_class=c, support=T,
                             n_starts=n_starts, seed=seed, pi_tol=pi_tol)
            inter = res["interior"]["kl"] if res["interior"] is not None else np.nan
            by_support[T] = (res["kl"], inter)
            if best is None or res["kl"] < best["kl"]:
                best = res
    out = dict(best)
    out["by_support"] = by_support
    return out


# ----------------------------------------------------------------------------------------------
# univariate closed form (MATH section 3, the paper's Corollary 4.2, both branches)


def univariate_affirmative_closed_form(priors, means, stds, *, form="symmetric", reference=0):
    """Group a becomes N(s mu_ir + b, s^2 sigma_ir^2) with
    lambda_i ∝ w_i / sigma_ia^2, e_i = mu_ir - sum lambda_j mu_jr, g_i = mu_ia - sum lambda_j mu_ja,
    W = sum w_i, alpha = sum w_i (sigma_ir^2 + e_i^2) / sigma_ia^2, beta = sum w_i e_i g_i / sigma_ia^2,
    s± = (beta ± sqrt(beta^2 + 4 alpha W)) / (2 alpha), b = sum lambda_i (mu_ia - s mu_ir).
    Symmetric form: s+; affine form: the lower objective of s+ and s-.
    ``means`` [k, m] (or [k, m, 1]), ``stds`` [k, m]. Returns means [k,m,1], covs [k,m,1,1]."""
    priors = np.asarray(priors, dtype=float)
    mu = np.asarray(means, dtype=float)
    if mu.ndim == 3:
        mu = mu[..., 0]
    sd = np.asarray(stds, dtype=float)
    if sd.ndim == 4:
        sd = np.sqrt(sd[..., 0, 0])
    if form not in ("symmetric", "affine"):
        raise ValueError(f"unknown form {form!r}")
    k, m = priors.shape
    r = int(reference)
    p = priors.sum(0)
    base = priors / p
    tp = p[None, :] * base[:, r][:, None]
    scale = np.ones(m)
    shift = np.zeros(m)

    def F(s, bb, a, w):
        m1 = s * mu[:, r] + bb
        v1 = (s * sd[:, r]) ** 2
        v0 = sd[:, a] ** 2
        return float(np.sum(w * 0.5 * (v1 / v0 + (m1 - mu[:, a]) ** 2 / v0 - 1 + np.log(v0 / v1))))

    for a in range(m):
        if a == r:
            continue
        w = tp[:, a]
        s2a = sd[:, a] ** 2
        lam = (w / s2a) / np.sum(w / s2a)
        e = mu[:, r] - np.sum(lam * mu[:, r])
        g = mu[:, a] - np.sum(lam * mu[:, a])
        W = np.sum(w)
        alpha = np.sum(w * (sd[:, r] ** 2 + e ** 2) / s2a)
        beta = np.sum(w * e * g / s2a)
        root = np.sqrt(beta ** 2 + 4 * alpha * W)
        s_plus = (beta + root) / (2 * alpha)
        s_minus = (beta - root) / (2 * alpha)
        cands = [s_plus] if form == "symmetric" else [s_plus, s_minus]
        best = None
        for s in cands:
            bb = np.sum(lam * (mu[:, a] - s * mu[:, r]))
            val = F(s, bb, a, w)
            if best is None or val < best[0]:
                best = (val, s, bb)
        scale[a], shift[a] = best[1], best[2]
    tm = scale[None, :] * mu[:, r][:, None] + shift[None, :]
    tsd = np.abs(scale)[None, :] * sd[:, r][:, None]
    means3 = mu[..., None]
    covs4 = (sd ** 2)[..., None, None]
    return _result(priors, means3, covs4, tp, tm[..., None], (tsd ** 2)[..., None, None],
                   stds=tsd, scale=scale, shift=shift, A=scale[:, None, None], b=shift[:, None],
                   form=form, reference=r)
