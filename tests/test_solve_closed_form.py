"""Every closed form of MATH §3 against scipy's generic optimiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jaxsteer.divergence import gaussian_kl
from jaxsteer.solve import _group, closed_form
import jaxsteer as js
from univariate_all import univariate_all


def _univariate_problem(rng, k):
    var_t = rng.uniform(0.3, 2.0, size=k)
    var_g = rng.uniform(0.3, 2.0, size=k)
    return _group.GroupProblem(
        u=jnp.asarray(rng.normal(size=(k, 1))), G=jnp.asarray(var_t[:, None, None]),
        logdet_G=jnp.log(jnp.asarray(var_t)), mu=jnp.asarray(2 * rng.normal(size=(k, 1))),
        P=jnp.asarray(1 / var_g[:, None, None]), logdet_S=jnp.log(jnp.asarray(var_g)),
        w=jnp.asarray(rng.uniform(0.1, 0.5, size=k)), symmetric=jnp.asarray(False))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_univariate_group_both_branches(k, seed):
    rng = np.random.default_rng(seed)
    prob = _univariate_problem(rng, k)
    f = lambda x: float(_group.value(prob, jnp.asarray([[x[0], x[1]]])))  # noqa: E731
    best = {}
    for sign in (1, -1):
        runs = [scipy.optimize.minimize(lambda z: f([sign * np.exp(z[0]), z[1]]), [t, 0.0], method="Nelder-Mead",
                                        options=dict(xatol=1e-12, fatol=1e-15, maxiter=20000)) for t in (-1.0, 0.0, 1.0)]
        best[sign] = min(r.fun for r in runs)
    sym = closed_form.univariate_group(prob._replace(symmetric=jnp.asarray(True)), True)
    aff = closed_form.univariate_group(prob, False)
    assert float(sym.B[0, 0]) > 0
    np.testing.assert_allclose(float(sym.value), best[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(aff.value), min(best.values()), rtol=1e-9, atol=1e-12)
    assert float(aff.residual) < 1e-12 and float(sym.residual) < 1e-12


@pytest.mark.parametrize("seed", range(3))
def test_template_update_matches_generic_optimiser(seed):
    rng = np.random.default_rng(seed)
    k, m, d, c = 3, 2, 2, 0
    A = jnp.asarray(np.eye(d) + 0.3 * rng.normal(size=(m, d, d)))
    b = jnp.asarray(rng.normal(size=(m, d)))
    mu = jnp.asarray(rng.normal(size=(k, m, d)))
    x = rng.normal(size=(k, m, d, d))
    S = x @ np.swapaxes(x, -1, -2) / d + 0.3 * np.eye(d)
    P = jnp.asarray(np.linalg.inv(S))
    w = jnp.asarray(rng.uniform(0.05, 0.3, size=(k, m)))
    u, G = closed_form.template_update(A, b, mu, P, w, c)

    def objective(i, ui, Gi):
        mt = jnp.einsum("aij,j->ai", A, ui) + b
        St = jnp.einsum("aij,jl,aml->aim", A, Gi, A)
        return float(jnp.sum(w[i] * gaussian_kl(mt, St, mu[i], jnp.asarray(S[i]))))

    tril = np.tril_indices(d)
    for i in range(1, k):  # class c is the gauge
        def f(z):
            L = np.zeros((d, d))
            L[tril] = z[d:]
            return objective(i, jnp.asarray(z[:d]), jnp.asarray(L @ L.T))

        z0 = np.concatenate([np.zeros(d), np.eye(d)[tril]])
        r = scipy.optimize.minimize(f, z0, method="BFGS", options=dict(gtol=1e-10))
        np.testing.assert_allclose(objective(i, u[i], G[i]), r.fun, rtol=1e-8)
        assert objective(i, u[i], G[i]) <= r.fun + 1e-12
    np.testing.assert_allclose(G[c], np.eye(d))
    np.testing.assert_allclose(u[c], 0.0)


def test_prior_update_matches_generic_optimiser(rng):
    k, m = 3, 3
    q = rng.uniform(0.5, 1.5, size=(k, m))
    q /= q.sum()
    K = rng.uniform(0.0, 0.5, size=(k, m))
    p = q.sum(0)
    pi, qt = closed_form.prior_update(jnp.asarray(q), jnp.asarray(K))
    np.testing.assert_allclose(qt.sum(0), p, rtol=1e-14)  # group marginals preserved

    def f(z):
        pz = np.exp(z - z.max())
        pz /= pz.sum()
        t = pz[:, None] * p[None, :]
        return np.sum(t * np.log(t / q)) + np.sum(t * K)

    r = scipy.optimize.minimize(f, np.zeros(k), method="BFGS", options=dict(gtol=1e-12))
    t = np.asarray(qt)
    np.testing.assert_allclose(np.sum(t * np.log(t / q)) + np.sum(t * K), r.fun, rtol=1e-10)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("k", [2, 3])
def test_univariate_all_reference_matches_generic_optimiser(symmetric, k):
    """The 1-D-search reference of tests/univariate_all.py against BFGS from many starts."""
    rng = np.random.default_rng(7 + k)
    m = 2
    q = rng.uniform(0.5, 1.5, size=(k, m))
    q /= q.sum()
    mu = 2 * rng.normal(size=(k, m))
    var = rng.uniform(0.3, 2.0, size=(k, m))
    out = jax.jit(lambda q, mu, var: univariate_all(q, mu, var, symmetric=symmetric))(
        jnp.asarray(q), jnp.asarray(mu), jnp.asarray(var))
    p = q.sum(0)

    def total(z):  # template ν (k), log τ (k), group-1 map (log|s| or s, b), π logits (k)
        nu, lt, s, b, lg = z[:k], z[k:2 * k], z[2 * k], z[2 * k + 1], z[2 * k + 2:]
        s = np.exp(s) if symmetric else s
        pi = np.exp(lg - lg.max())
        pi /= pi.sum()
        t = pi[:, None] * p[None, :]
        m1 = np.stack([nu, s * nu + b], 1)
        v1 = np.stack([np.exp(2 * lt), s**2 * np.exp(2 * lt)], 1)
        kl = 0.5 * (v1 / var + (m1 - mu) ** 2 / var - 1 + np.log(var) - np.log(v1))
        return np.sum(t * np.log(t / q)) + np.sum(t * kl)

    best = np.inf
    for start in range(12):
        z0 = np.concatenate([mu[:, 0], 0.5 * np.log(var[:, 0]), [rng.normal() if not symmetric else 0.3 * rng.normal()],
                             [rng.normal()], np.zeros(k)])
        if not symmetric and start % 2:
            z0[2 * k] = -abs(z0[2 * k]) - 0.5
        r = scipy.optimize.minimize(total, z0, method="BFGS", options=dict(gtol=1e-10, maxiter=20000))
        best = min(best, r.fun)
    assert bool(out["converged"])
    np.testing.assert_allclose(float(out["value"]), best, rtol=1e-7)
    assert float(out["value"]) <= best + 1e-10


@pytest.mark.parametrize("form", ["symmetric", "affine"])
def test_solver_univariate_all_matches_1d_search(form):
    """nearest_ideal's univariate `all` path (alternation + joint Newton, restarted from every group)
    against the global 1-D search, on a batch of random two-group families."""
    rng = np.random.default_rng(21)
    k, m, n = 2, 2, 4
    q = rng.uniform(0.5, 1.5, size=(n, k, m))
    q /= q.sum(axis=(1, 2), keepdims=True)
    mu = 2 * rng.normal(size=(n, k, m))
    var = rng.uniform(0.3, 2.0, size=(n, k, m))
    fam = js.GaussianFamily(priors=q, means=mu[..., None], covs=var[..., None, None])
    sol = js.nearest_ideal(fam, intervention="all", form=form)
    ref = jax.jit(jax.vmap(lambda q, mu, var: univariate_all(q, mu, var, symmetric=form == "symmetric")))(
        jnp.asarray(q), jnp.asarray(mu), jnp.asarray(var))
    assert np.all(np.asarray(ref["converged"]))
    converged = np.asarray(sol.converged)
    assert converged.any()
    np.testing.assert_allclose(np.asarray(sol.kl)[converged], np.asarray(ref["value"])[converged], rtol=1e-8)
    # never worse than the global search, converged or not
    assert np.all(np.asarray(sol.kl) <= np.asarray(ref["value"]) + 1e-9)
