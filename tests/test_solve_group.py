"""The one-moving-group kernel: analytic derivatives against autodiff, Newton against a generic optimiser."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jaxsteer.solve import _group


def _problem(rng, k, d, symmetric):
    def spd():
        x = rng.normal(size=(d, d))
        return x @ x.T / d + 0.5 * np.eye(d)

    G = np.stack([spd() for _ in range(k)])
    S = np.stack([spd() for _ in range(k)])
    return _group.GroupProblem(
        u=jnp.asarray(rng.normal(size=(k, d))), G=jnp.asarray(G), logdet_G=jnp.linalg.slogdet(G)[1],
        mu=jnp.asarray(rng.normal(size=(k, d))), P=jnp.linalg.inv(S), logdet_S=jnp.linalg.slogdet(S)[1],
        w=jnp.asarray(rng.uniform(0.1, 0.5, size=k)), symmetric=jnp.asarray(symmetric))


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradient_and_hessian_match_autodiff(rng, symmetric):
    k, d = 3, 4
    prob = _problem(rng, k, d, symmetric)
    A = np.eye(d) + 0.1 * rng.normal(size=(d, d))
    if symmetric:
        A = A + A.T
    B = jnp.asarray(np.concatenate([A, rng.normal(size=(d, 1))], axis=1))
    n = d * (d + 1)

    def T(x):  # symmetrisation of the A block (identity in the affine form)
        X = x.reshape(d, d + 1)
        XA = jnp.where(symmetric, 0.5 * (X[:, :d] + X[:, :d].T), X[:, :d])
        return jnp.concatenate([XA, X[:, d:]], axis=1).reshape(-1)

    f = lambda x: _group.value(prob, T(x).reshape(d, d + 1))  # noqa: E731
    g_ad = jax.grad(f)(B.reshape(-1))
    np.testing.assert_allclose(_group.gradient(prob, B).reshape(-1), g_ad, atol=1e-12)
    H_ad = jax.hessian(f)(B.reshape(-1))
    Tm = jax.jacfwd(T)(jnp.zeros(n))
    np.testing.assert_allclose(_group.hessian(prob, B), H_ad + (jnp.eye(n) - Tm), atol=1e-11)


def test_best_offset_is_exact(rng):
    prob = _problem(rng, 3, 3, False)
    A = jnp.asarray(np.eye(3) + 0.2 * rng.normal(size=(3, 3)))
    B = _group.with_offset(prob, A)
    np.testing.assert_allclose(_group.gradient(prob, B)[:, -1], 0.0, atol=1e-12)


@pytest.mark.parametrize("symmetric", [False, True])
def test_newton_matches_scipy(rng, symmetric):
    k, d = 2, 3
    prob = _problem(rng, k, d, symmetric)
    B0 = _group.with_offset(prob, jnp.eye(d))
    res = _group.newton(prob, B0, tol=1e-12, max_iter=200)
    assert bool(res.converged) and float(res.residual) < 1e-12
    # generic optimiser over (L, b), A = L Lᵀ (symmetric) or A free (affine)
    tril = np.tril_indices(d)

    def unpack(x):
        if symmetric:
            L = np.zeros((d, d))
            L[tril] = x[: len(tril[0])]
            A = L @ L.T
            b = x[len(tril[0]):]
        else:
            A, b = x[: d * d].reshape(d, d), x[d * d:]
        return np.concatenate([A, b[:, None]], axis=1)

    f = lambda x: float(_group.value(prob, jnp.asarray(unpack(x))))  # noqa: E731
    x0 = np.concatenate([np.eye(d)[tril], np.zeros(d)]) if symmetric else np.concatenate([np.eye(d).ravel(), np.zeros(d)])
    runs = [scipy.optimize.minimize(f, x0 + 0.3 * rng.normal(size=x0.shape) * (s > 0), method="BFGS",
                                    options=dict(gtol=1e-10, maxiter=5000)) for s in range(4)]
    best_run = min(runs, key=lambda r: r.fun)
    best = best_run.fun
    if symmetric:  # convex: Newton from any start reaches the optimum
        np.testing.assert_allclose(float(res.value), best, rtol=1e-7)
        assert float(res.value) <= best + 1e-12
        A = res.B[:, :d]
        np.testing.assert_allclose(A, A.T, atol=1e-14)
        assert np.all(np.linalg.eigvalsh(A) > 0)
    else:  # non-convex: a stationary point from the identity, the best optimum from scipy's best point
        assert float(res.value) >= best - 1e-9
        polished = _group.newton(prob, jnp.asarray(unpack(best_run.x)), tol=1e-12, max_iter=200)
        assert bool(polished.converged)
        assert float(polished.value) <= best + 1e-12
        np.testing.assert_allclose(float(polished.value), best, rtol=1e-8)


@pytest.mark.parametrize("symmetric", [True, False])
def test_newton_cg_matches_dense(rng, symmetric):
    """The matrix-free Newton–CG kernel (large d) reaches the dense kernel's optimum."""
    k, d = 3, 7
    prob = _problem(rng, k, d, symmetric)
    B0 = _group.with_offset(prob, jnp.eye(d))
    dense = _group.newton(prob, B0, tol=1e-11, max_iter=200, method="dense")
    if not symmetric:  # non-convex: start both near the dense kernel's optimum
        B0 = dense.B + 1e-2 * jnp.asarray(rng.normal(size=dense.B.shape))
    cg = _group.newton(prob, B0, tol=1e-11, max_iter=200, method="cg")
    assert bool(dense.converged) and bool(cg.converged)
    np.testing.assert_allclose(float(cg.value), float(dense.value), rtol=1e-10)
    np.testing.assert_allclose(cg.B, dense.B, atol=1e-7)
    np.testing.assert_allclose(_group.gradient(prob, cg.B), 0.0, atol=1e-9)


def test_newton_cg_does_not_stall_in_the_rounding_regime_on_real_embeddings():
    """A real d = 64 problem (tests/data/README.md) on which the predicted decrease of the last Newton
    steps is below the rounding of F: the Armijo test then only saw noise, took arbitrary tiny steps
    and stalled at residual ~1e-9 for 100 iterations. Now it converges in a few steps."""
    import jaxsteer as js

    data = np.load(Path(__file__).parent / "data" / "income_minilm_pca64_family.npz")
    fam = js.GaussianFamily(priors=data["priors"], means=data["means"], covs=data["covs"])
    sol = js.nearest_ideal(fam, intervention="affirmative", form="symmetric", reference=1)
    assert bool(sol.converged), float(sol.residual)
    assert float(sol.residual) <= 1e-10 and int(sol.iterations) <= 20


# ------------------------------------------------------------------------------------------------
# the shared factorisations (jaxsteer.solve._decomp)


def test_geig_diagonalises_both(rng):
    from jaxsteer.solve import _decomp

    d = 5
    x, y = rng.normal(size=(d, d)), rng.normal(size=(d, d - 2))
    X = x @ x.T + 0.5 * np.eye(d)
    Y = y @ y.T  # PSD, rank d - 2
    L, theta = _decomp.geig(jnp.asarray(X), jnp.asarray(Y))
    np.testing.assert_allclose(L.T @ X @ L, np.eye(d), atol=1e-10)
    np.testing.assert_allclose(L.T @ Y @ L, np.diag(theta), atol=1e-10)
    assert float(jnp.min(theta)) >= 0.0
    np.testing.assert_allclose(np.sort(theta), np.sort(np.linalg.eigvals(np.linalg.solve(X, Y)).real), atol=1e-10)
    iL = _decomp.inverse_cholesky(jnp.asarray(X))
    np.testing.assert_allclose(iL.T @ iL, np.linalg.inv(X), atol=1e-10)


def test_logabsdet_on_the_domain_of_each_form(rng):
    from jaxsteer.solve import _decomp

    d = 4
    a = rng.normal(size=(d, d))
    spd = a @ a.T + np.eye(d)
    indefinite = np.diag([1.0, -2.0, 3.0, 4.0])
    for A in (spd, a, indefinite):
        ld = np.linalg.slogdet(A)[1]
        np.testing.assert_allclose(_decomp.logabsdet(jnp.asarray(A), False), ld, rtol=1e-12)
        inv, ld2 = _decomp.inverse_and_logabsdet(jnp.asarray(A), False)
        np.testing.assert_allclose(ld2, ld, rtol=1e-12)
        np.testing.assert_allclose(inv, np.linalg.inv(A), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(_decomp.logabsdet(jnp.asarray(spd), True), np.linalg.slogdet(spd)[1], rtol=1e-12)
    # the symmetric form's domain is positive definite: an indefinite map is outside (-inf), in every
    # way `symmetric` can be given (Python bool, concrete array, traced)
    assert float(_decomp.logabsdet(jnp.asarray(indefinite), True)) == -np.inf
    assert float(_decomp.logabsdet(jnp.asarray(indefinite), jnp.asarray(True))) == -np.inf
    traced = jax.jit(_decomp.logabsdet)(jnp.asarray(indefinite), jnp.asarray(True))
    assert float(traced) == -np.inf
    assert float(_decomp.inverse_and_logabsdet(jnp.asarray(indefinite), True)[1]) == -np.inf
    assert float(_decomp.logabsdet(jnp.zeros((d, d)), False)) == -np.inf
    assert _decomp.static_bool(jnp.asarray(True)) is True
    assert jax.jit(lambda s: jnp.asarray(_decomp.static_bool(s) is None))(jnp.asarray(True))


# ------------------------------------------------------------------------------------------------
# the affine form's pair preconditioner, extended to the offset (the joint phase of ``all``)


def _as_matrix(fn, shape):
    n = int(np.prod(shape))
    return np.asarray(jax.vmap(lambda e: fn(e.reshape(shape)).reshape(-1))(jnp.eye(n))).T


def test_pair_preconditioner_with_offset_is_the_hessian_for_one_class(rng):
    """For one class the pair blocks are the exact Hessian with ``b`` eliminated, in their basis, so
    extended to the offset by block elimination the metric is the analytic affine Hessian over
    ``[A | b]`` wherever that is positive definite, and the preconditioner is its inverse."""
    d = 4
    prob = _problem(rng, 1, d, False)
    # A G Aᵀ = 4 Σ: the quadratic part outweighs the log-det term's negative curvature
    A = 2.0 * jnp.linalg.cholesky(jnp.linalg.inv(prob.P[0])) @ jnp.linalg.inv(jnp.linalg.cholesky(prob.G[0]))
    B = _group.with_offset(prob, A) + 0.3
    H = np.asarray(_group.hessian(prob, B))
    assert np.min(np.linalg.eigvalsh(H)) > 0.0
    K = _group.kron_constants(prob)
    pc = _group.pair_preconditioner(K, B[:, :d])
    M = _as_matrix(lambda V: _group.metric_with_offset(K, pc, V), (d, d + 1))
    np.testing.assert_allclose(M, H, atol=1e-10 * np.max(np.abs(H)))
    Minv = _as_matrix(lambda R: _group.precondition_with_offset(K, pc, R), (d, d + 1))
    np.testing.assert_allclose(Minv @ H, np.eye(d * (d + 1)), atol=1e-9)


def test_pair_preconditioner_with_offset_is_spd_where_the_hessian_is_indefinite(rng):
    """Several classes, a map where the affine Hessian has negative curvature: the preconditioner is
    symmetric positive definite and inverts its metric."""
    d = 3
    prob = _problem(rng, 3, d, False)
    A = 0.3 * (jnp.eye(d) + 0.5 * jnp.asarray(rng.normal(size=(d, d))))
    H = np.asarray(_group.hessian(prob, _group.with_offset(prob, A)))
    assert np.min(np.linalg.eigvalsh(H)) < 0.0
    K = _group.kron_constants(prob)
    pc = _group.pair_preconditioner(K, A)
    M = _as_matrix(lambda V: _group.metric_with_offset(K, pc, V), (d, d + 1))
    Minv = _as_matrix(lambda R: _group.precondition_with_offset(K, pc, R), (d, d + 1))
    np.testing.assert_allclose(M, M.T, atol=1e-10 * np.max(np.abs(M)))
    np.testing.assert_allclose(Minv, Minv.T, atol=1e-10 * np.max(np.abs(Minv)))
    assert np.min(np.linalg.eigvalsh(M)) > 0.0
    np.testing.assert_allclose(Minv @ M, np.eye(d * (d + 1)), atol=1e-9)


def test_best_start_prefers_a_converged_run_within_rounding_of_the_lowest_value(rng):
    """Among starts within rounding of the lowest value the best status wins; a clearly lower value
    wins whatever its status (the affine form stays no worse than its symmetric start)."""
    prob = _problem(rng, 2, 3, False)
    S = _group.Status
    v = 0.9185203451396

    def pick(values, status):
        n = len(values)
        runs = _group.GroupResult(jnp.zeros((n, 3, 4)), jnp.asarray(values), jnp.zeros(n), jnp.zeros(n, jnp.int32),
                                  jnp.asarray(status, jnp.int32))
        return int(_group.best_start(runs, prob))

    assert pick([v + 1e-3, v, v + 2e-16], [S.MAX_ITER, S.STALLED, S.CONVERGED]) == 2
    assert pick([v, v + 2e-16, v - 2e-16], [S.STALLED, S.STALLED, S.STALLED]) == 2  # equal status: lower value
    assert pick([v + 1e-3, v, v + 1e-6], [S.CONVERGED, S.MAX_ITER, S.CONVERGED]) == 1  # not a tie: lowest
    assert pick([np.nan, np.inf, v], [S.NONFINITE, S.CONVERGED, S.STALLED]) == 2
