"""Steering maps (MATH §4): exact moment transport, alignment, inverses, batching, log-normal maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

import jaxsteer as js
from jaxsteer import maps
from tests.conftest import random_family


@pytest.fixture(scope="module")
def solved():
    fam = random_family(np.random.default_rng(7), 3, 2, 3)
    return fam, js.nearest_ideal(fam, intervention="all", form="affine")


@pytest.fixture(scope="module")
def solved_affirmative():
    fam = random_family(np.random.default_rng(8), 2, 3, 3)
    return fam, js.nearest_ideal(fam, intervention="affirmative", form="affine", reference=1)


def _push(T, means, covs):
    """Moments of ``T(X)`` for ``X ~ N(means, covs)`` (elementwise over the map axes)."""
    m = jnp.einsum("...ij,...j->...i", T.A, means) + T.b
    S = T.A @ covs @ jnp.swapaxes(T.A, -1, -2)
    return m, S


def test_w2_map_against_scipy_formula(rng):
    d = 4
    x0, x1 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    S0, S1 = x0 @ x0.T + np.eye(d), x1 @ x1.T + 0.5 * np.eye(d)
    m0, m1 = rng.normal(size=d), rng.normal(size=d)
    T = maps.w2_map(m0, S0, m1, S1)
    r = np.real(scipy.linalg.sqrtm(S0))
    ri = np.linalg.inv(r)
    M = ri @ np.real(scipy.linalg.sqrtm(r @ S1 @ r)) @ ri
    np.testing.assert_allclose(T.A, M, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(T.b, m1 - M @ m0, rtol=1e-10, atol=1e-10)
    # The Monge map is symmetric positive definite and pushes N(m0, S0) onto N(m1, S1).
    np.testing.assert_allclose(T.A, np.asarray(T.A).T, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(np.asarray(T.A)) > 0)
    mean, cov = _push(T, jnp.asarray(m0), jnp.asarray(S0))
    np.testing.assert_allclose(mean, m1, atol=1e-10)
    np.testing.assert_allclose(cov, S1, atol=1e-10)


@pytest.mark.parametrize("which", ["solved", "solved_affirmative"])
def test_subgroup_maps_carry_moments_exactly(which, request):
    fam, sol = request.getfixturevalue(which)
    T = maps.subgroup_maps(fam, sol)
    assert T.batch_shape == (fam.k, fam.m)
    mean, cov = _push(T, fam.means, fam.covs)
    np.testing.assert_allclose(mean, sol.target.means, atol=1e-10)
    np.testing.assert_allclose(cov, sol.target.covs, atol=1e-10)
    # Same result when the Solution or its target family is passed.
    np.testing.assert_allclose(maps.subgroup_maps(fam, sol.target).A, T.A)


@pytest.mark.parametrize("which", ["solved", "solved_affirmative"])
def test_align_puts_every_group_in_the_same_template_coordinates(which, request):
    fam, sol = request.getfixturevalue(which)
    al = maps.align_maps(sol)
    assert al.batch_shape == (fam.m,)
    mean, cov = _push(al[None], sol.target.means, sol.target.covs)  # broadcast over classes
    for g in range(1, fam.m):
        np.testing.assert_allclose(mean[:, g], mean[:, 0], atol=1e-9)
        np.testing.assert_allclose(cov[:, g], cov[:, 0], atol=1e-9)
    np.testing.assert_allclose(mean[:, 0], sol.template.means, atol=1e-9)
    np.testing.assert_allclose(cov[:, 0], sol.template.covs, atol=1e-9)


def test_align_is_identity_on_the_affirmative_reference(solved_affirmative):
    fam, sol = solved_affirmative
    al = maps.align_maps(sol)
    np.testing.assert_allclose(al.A[1], np.eye(fam.d), atol=1e-12)
    np.testing.assert_allclose(al.b[1], 0.0, atol=1e-12)


def test_moment_maps_carry_group_mixture_moments(solved):
    fam, sol = solved
    M = maps.moment_maps(fam, sol)
    m0, S0 = fam.group_moments()
    m1, S1 = sol.target.group_moments()
    mean, cov = _push(M, m0, S0)
    np.testing.assert_allclose(mean, m1, atol=1e-10)
    np.testing.assert_allclose(cov, S1, atol=1e-10)


def test_group_moments_against_sampling_formula(rng):
    fam = random_family(rng, 3, 2, 2)
    m, S = fam.group_moments()
    w = np.asarray(fam.base_rates)
    for g in range(2):
        mean = sum(w[i, g] * np.asarray(fam.means)[i, g] for i in range(3))
        second = sum(
            w[i, g] * (np.asarray(fam.covs)[i, g] + np.outer(fam.means[i, g], fam.means[i, g])) for i in range(3)
        )
        np.testing.assert_allclose(m[g], mean, atol=1e-12)
        np.testing.assert_allclose(S[g], second - np.outer(mean, mean), atol=1e-12)


def test_posterior_map_matches_scipy_posterior(solved):
    fam, sol = solved
    P = maps.posterior_map(fam, sol)
    x, _, a = fam.sample(jax.random.PRNGKey(3), 50)
    x, a = np.asarray(x), np.asarray(a)
    out = np.asarray(P.apply(x, a))
    T = maps.subgroup_maps(fam, sol)
    q, mu, cov = np.asarray(fam.priors), np.asarray(fam.means), np.asarray(fam.covs)
    for j in range(len(x)):
        g = a[j]
        lik = np.array([q[i, g] * scipy.stats.multivariate_normal(mu[i, g], cov[i, g]).pdf(x[j]) for i in range(3)])
        post = lik / lik.sum()
        want = sum(post[i] * (np.asarray(T.A)[i, g] @ x[j] + np.asarray(T.b)[i, g]) for i in range(3))
        np.testing.assert_allclose(out[j], want, rtol=1e-8, atol=1e-10)
    with pytest.raises(NotImplementedError, match="not invertible"):
        P.inverse()


def test_group_maps_dispatch_and_errors(solved):
    fam, sol = solved
    assert isinstance(maps.group_maps(fam, sol, "align"), js.AffineMap)
    assert isinstance(maps.group_maps(fam, sol, "moment"), js.AffineMap)
    assert isinstance(maps.group_maps(fam, sol, "posterior"), maps.PosteriorMap)
    with pytest.raises(ValueError, match="map: unknown group map 'wasserstein'"):
        maps.group_maps(fam, sol, "wasserstein")
    # kind= is the deprecated name of map= (Steerer(map=) is the package's word)
    with pytest.warns(DeprecationWarning, match="kind= is renamed map="):
        old = maps.group_maps(fam, sol, kind="moment")
    np.testing.assert_array_equal(old.A, maps.group_maps(fam, sol, map="moment").A)
    assert isinstance(maps.group_maps(fam, sol), js.AffineMap)  # default: align
    with pytest.raises(TypeError, match="both map= and its deprecated alias kind="):
        maps.group_maps(fam, sol, "align", kind="moment")
    other = random_family(np.random.default_rng(0), 3, 2, 4)
    with pytest.raises(ValueError, match="target:"):
        maps.subgroup_maps(other, sol)


def test_apply_with_codes_equals_per_row_loop(rng):
    for G in (2, 12):  # dense selection and chunked gathering
        A = rng.normal(size=(G, 3, 3)) + 3 * np.eye(3)
        b = rng.normal(size=(G, 3))
        f = js.AffineMap(jnp.asarray(A), jnp.asarray(b))
        x = rng.normal(size=(37, 3))
        idx = rng.integers(0, G, size=37)
        out = np.asarray(f.apply(x, idx))
        want = np.stack([A[idx[j]] @ x[j] + b[idx[j]] for j in range(37)])
        np.testing.assert_allclose(out, want, rtol=1e-12)
        np.testing.assert_allclose(jax.jit(f.apply)(x, idx), out, rtol=1e-12)


def test_apply_two_code_axes_and_broadcasting(solved):
    fam, sol = solved
    T = maps.subgroup_maps(fam, sol)
    x, y, a = fam.sample(jax.random.PRNGKey(0), 64)
    out = T.apply(x, y, a)
    want = jnp.einsum("nij,nj->ni", T.A[y, a], x) + T.b[y, a]
    np.testing.assert_allclose(out, want, rtol=1e-12)
    # Without codes the map axes broadcast: every map on one point.
    every = T.apply(x[0])
    assert every.shape == (fam.k, fam.m, fam.d)
    np.testing.assert_allclose(every[y[0], a[0]], out[0], rtol=1e-12)


def test_inverse_and_compose(rng):
    A = rng.normal(size=(2, 3, 3)) + 2 * np.eye(3)
    f = js.AffineMap(jnp.asarray(A), jnp.asarray(rng.normal(size=(2, 3))))
    g = js.AffineMap(jnp.asarray(A[::-1].copy()), jnp.asarray(rng.normal(size=(2, 3))))
    x = rng.normal(size=(10, 3))
    a = rng.integers(0, 2, size=10)
    np.testing.assert_allclose(f.inverse().apply(f.apply(x, a), a), x, atol=1e-12)
    np.testing.assert_allclose(g.compose(f).apply(x, a), g.apply(f.apply(x, a), a), atol=1e-12)
    ident = f.inverse().compose(f)
    np.testing.assert_allclose(ident.A, np.broadcast_to(np.eye(3), (2, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(ident.b, 0.0, atol=1e-12)


def test_lift_steers_the_subspace_and_keeps_the_complement(rng):
    D, p = 7, 3
    U = np.linalg.qr(rng.normal(size=(D, p)))[0]
    c = rng.normal(size=D)
    small = js.AffineMap(jnp.asarray(np.eye(p) + 0.3 * rng.normal(size=(2, p, p))), jnp.asarray(rng.normal(size=(2, p))))
    full = small.lift(U, c)
    assert full.A.shape == (2, D, D) and full.b.shape == (2, D)
    x = rng.normal(size=(9, D))
    a = rng.integers(0, 2, size=9)
    y = np.asarray(full.apply(x, a))
    z = (x - c) @ U
    np.testing.assert_allclose((y - c) @ U, small.apply(z, a), atol=1e-12)  # subspace steered as fitted
    P = U @ U.T
    np.testing.assert_allclose(y - y @ P, x - x @ P, atol=1e-12)  # complement untouched
    # identity lifts to identity; inverse commutes with lifting
    ident = js.AffineMap.identity(p, (2,), dtype=jnp.float64).lift(U, c)
    np.testing.assert_allclose(ident.A, np.broadcast_to(np.eye(D), (2, D, D)), atol=1e-15)
    np.testing.assert_allclose(ident.b, 0.0, atol=1e-15)
    inv = small.inverse().lift(U, c)
    np.testing.assert_allclose(inv.apply(y, a), x, atol=1e-12)
    # jit
    jf = jax.jit(lambda m, U, c: m.lift(U, c))(small, jnp.asarray(U), jnp.asarray(c))
    np.testing.assert_allclose(jf.A, full.A, atol=1e-14)


def test_lift_errors(rng):
    small = js.AffineMap.identity(2, (2,), dtype=jnp.float64)
    U = np.linalg.qr(rng.normal(size=(5, 2)))[0]
    with pytest.raises(ValueError, match="basis: expected shape"):
        small.lift(U[:, :1], np.zeros(5))
    with pytest.raises(ValueError, match="not orthonormal"):
        small.lift(2 * U, np.zeros(5))
    with pytest.raises(ValueError, match="center"):
        small.lift(U, np.zeros(4))
    with pytest.raises(ValueError, match="log-normal"):
        js.AffineMap(small.A, small.b, lognormal=True).lift(U, np.zeros(5))


def test_lognormal_maps_conjugate_by_log_exp(rng):
    fam = random_family(rng, 2, 2, 2)
    lfam = js.GaussianFamily(fam.priors, fam.means, fam.covs, lognormal=True)
    sol = js.nearest_ideal(fam)
    lsol = js.nearest_ideal(lfam)
    T, lT = maps.subgroup_maps(fam, sol), maps.subgroup_maps(lfam, lsol)
    assert lT.lognormal and not T.lognormal
    z, y, a = fam.sample(jax.random.PRNGKey(1), 20)
    np.testing.assert_allclose(lT.apply(jnp.exp(z), y, a), jnp.exp(T.apply(z, y, a)), rtol=1e-10)
    np.testing.assert_allclose(lT.inverse().apply(lT.apply(jnp.exp(z), y, a), y, a), jnp.exp(z), rtol=1e-10)
    with pytest.raises(ValueError, match="inner: cannot compose a log-normal"):
        lT.compose(T)


def test_batched_maps_equal_loop(rng):
    fam = random_family(rng, 2, 2, 2, batch=(3,))
    sol = js.nearest_ideal(fam, form="affine")
    T = maps.subgroup_maps(fam, sol)
    Mo = maps.moment_maps(fam, sol)
    assert T.batch_shape == (3, 2, 2) and Mo.batch_shape == (3, 2)
    for j in range(3):
        one = js.nearest_ideal(fam[j], form="affine")
        np.testing.assert_allclose(T.A[j], maps.subgroup_maps(fam[j], one).A, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(Mo.b[j], maps.moment_maps(fam[j], one).b, rtol=1e-7, atol=1e-9)
    v = jax.vmap(lambda f, s: maps.subgroup_maps(f, s).A)(fam, sol)
    np.testing.assert_allclose(v, T.A, rtol=1e-12)


def test_maps_are_pytrees_under_jit(solved):
    fam, sol = solved
    T = maps.subgroup_maps(fam, sol)
    leaves = jax.tree_util.tree_leaves(T)
    assert len(leaves) == 2
    x, y, a = fam.sample(jax.random.PRNGKey(2), 16)
    np.testing.assert_allclose(jax.jit(lambda t, x, y, a: t.apply(x, y, a))(T, x, y, a), T.apply(x, y, a), rtol=1e-12)


def test_sample_weights_realise_target_priors(solved):
    fam, sol = solved
    x, y, a = fam.sample(jax.random.PRNGKey(4), 4000)
    w = np.asarray(maps.sample_weights(sol, y, a))
    np.testing.assert_allclose(w, np.asarray(sol.weights)[np.asarray(y), np.asarray(a)])
    # Weighted cell frequencies equal q̃ when the empirical cell frequencies equal q.
    counts = np.zeros((fam.k, fam.m))
    np.add.at(counts, (np.asarray(y), np.asarray(a)), 1.0)
    q_emp = counts / counts.sum()
    w_cell = np.asarray(sol.weights) * q_emp
    np.testing.assert_allclose(w_cell / q_emp * np.asarray(fam.priors), sol.target.priors, atol=1e-12)


def test_apply_errors(solved):
    fam, sol = solved
    T = maps.subgroup_maps(fam, sol)
    x, y, a = fam.sample(jax.random.PRNGKey(0), 8)
    with pytest.raises(ValueError, match="codes: got 1 code array"):
        T.apply(x, a)
    with pytest.raises(ValueError, match=r"^a: group code 5 \(entry 0\) is out of range; there are 2 groups"):
        T.apply(x, y, a.at[0].set(5))
    with pytest.raises(ValueError, match=r"x: expected points \[..., 3\]"):
        T.apply(x[:, :2], y, a)
    with pytest.raises(ValueError, match=r"^y: has length 4 but x has 8 rows"):
        T.apply(x, y[:4], a)
    with pytest.raises(ValueError, match="A: expected square"):
        js.AffineMap(jnp.ones((2, 3)), jnp.ones(2))
