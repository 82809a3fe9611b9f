import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jaxsteer as js
from conftest import random_family, random_family_arrays


def test_shapes_and_derived(rng):
    fam = random_family(rng, 3, 2, 4, batch=(5,))
    assert (fam.k, fam.m, fam.d, fam.batch_shape) == (3, 2, 4, (5,))
    np.testing.assert_allclose(fam.group_marginals.sum(-1), 1.0)
    np.testing.assert_allclose(fam.base_rates.sum(-2), 1.0)
    assert fam[2].batch_shape == ()
    leaves, tree = jax.tree_util.tree_flatten(fam)
    again = jax.tree_util.tree_unflatten(tree, leaves)
    np.testing.assert_array_equal(again.covs, fam.covs)


def test_univariate_and_lognormal_constructors():
    fam = js.GaussianFamily.univariate(priors=[[0.3, 0.2], [0.2, 0.3]], means=[[0.0, 1.0], [2.0, 2.5]],
                                       stds=[[1.0, 1.0], [1.0, 2.0]])
    assert fam.d == 1 and fam.covs[1, 1, 0, 0] == 4.0
    ln = js.GaussianFamily.lognormal_family(priors=fam.priors, means=fam.means, covs=fam.covs)
    assert ln.lognormal and not fam.lognormal
    x = jnp.array([[0.5], [2.0]])
    # density of X = exp(Z): f_X(x) = f_Z(log x) / x
    np.testing.assert_allclose(ln.log_density(x), fam.log_density(jnp.log(x)) - jnp.log(x)[:, :, None], rtol=1e-12)
    xs, _, _ = ln.sample(jax.random.PRNGKey(0), 100)
    assert np.all(xs > 0)


def test_log_density_matches_scipy(rng):
    fam = random_family(rng, 2, 3, 3)
    x = rng.normal(size=(7, 3))
    ld = fam.log_density(jnp.asarray(x))
    for i in range(2):
        for a in range(3):
            ref = scipy.stats.multivariate_normal(np.asarray(fam.means[i, a]), np.asarray(fam.covs[i, a])).logpdf(x)
            np.testing.assert_allclose(ld[:, i, a], ref, rtol=1e-10)


def test_sample_moments(rng):
    fam = random_family(rng, 2, 2, 2)
    x, y, a = fam.sample(jax.random.PRNGKey(1), 200_000)
    sel = (np.asarray(y) == 1) & (np.asarray(a) == 0)
    np.testing.assert_allclose(sel.mean(), fam.priors[1, 0], atol=4e-3)
    np.testing.assert_allclose(np.asarray(x)[sel].mean(0), fam.means[1, 0], atol=0.03)
    np.testing.assert_allclose(np.cov(np.asarray(x)[sel].T), fam.covs[1, 0], atol=0.05)


def test_priors_renormalised_and_covs_symmetrised(rng):
    q, mu, cov = random_family_arrays(rng, 2, 2, 3)
    cov = cov.copy()
    cov[0, 0, 0, 1] += 1e-9
    fam = js.GaussianFamily(priors=q * (1 + 1e-8), means=mu, covs=cov)
    np.testing.assert_allclose(fam.priors.sum(), 1.0, rtol=1e-15)
    np.testing.assert_array_equal(fam.covs, jnp.swapaxes(fam.covs, -1, -2))


@pytest.mark.parametrize(
    "mutate, arg",
    [
        (lambda q, mu, c: (q[:, :1], mu, c), "means"),
        (lambda q, mu, c: (q, mu[..., :2], c), "covs"),
        (lambda q, mu, c: (q[0], mu, c), "priors"),
        (lambda q, mu, c: (q, np.where(np.arange(3) == 1, np.nan, mu), c), "means"),
        (lambda q, mu, c: (q, mu, c * np.inf), "covs"),
        (lambda q, mu, c: (q * 2, mu, c), "priors"),
        (lambda q, mu, c: (q - q.max(), mu, c), "priors"),
        (lambda q, mu, c: (q, mu, c + np.triu(np.ones((3, 3)), 1)), "covs"),
        (lambda q, mu, c: (q, mu, c - np.eye(3) * 50), "covs"),
        (lambda q, mu, c: (q, mu, np.zeros_like(c)), "covs"),
    ],
)
def test_bad_input_names_the_argument(rng, mutate, arg):
    q, mu, cov = random_family_arrays(rng, 2, 2, 3)
    with pytest.raises(ValueError, match=arg):
        js.GaussianFamily(*mutate(q, mu, cov))


def test_bad_stds():
    with pytest.raises(ValueError, match="stds"):
        js.GaussianFamily.univariate(priors=[[0.5, 0.5]], means=[[0.0, 1.0]], stds=[[1.0, 0.0]])


def test_rank_deficient_cov_rejected(rng):
    q, mu, cov = random_family_arrays(rng, 2, 2, 3)
    v = rng.normal(size=(3, 2))
    cov = cov.copy()
    cov[1, 1] = v @ v.T  # rank 2
    with pytest.raises(ValueError, match=r"covs.*positive definite"):
        js.GaussianFamily(priors=q, means=mu, covs=cov)


def test_ill_conditioned_float32_cov_points_to_float64(rng):
    """A covariance that is positive definite but too ill-conditioned for float32 gets a message that
    names the precision as the cause; at float64 the same family is accepted; a singular one still
    asks for shrinkage."""
    q, mu, _ = random_family_arrays(rng, 2, 2, 2)
    cov = np.broadcast_to(np.diag([1e-6, 1.0]), (2, 2, 2, 2)).copy()
    with pytest.raises(ValueError, match=r"condition number 1e\+06 is beyond what float32.*float64"):
        js.GaussianFamily(priors=q.astype(np.float32), means=mu.astype(np.float32), covs=cov.astype(np.float32))
    js.GaussianFamily(priors=q, means=mu, covs=cov)  # float64: fine
    cov[0, 0] = np.diag([0.0, 1.0])
    with pytest.raises(ValueError, match=r"Add shrinkage or a ridge"):
        js.GaussianFamily(priors=q.astype(np.float32), means=mu.astype(np.float32), covs=cov.astype(np.float32))


def test_no_validation_under_jit(rng):
    fam = random_family(rng, 2, 2, 2)

    @jax.jit
    def f(fam):
        g = js.GaussianFamily(priors=fam.priors, means=fam.means, covs=fam.covs)
        return g.group_marginals

    np.testing.assert_allclose(f(fam), fam.group_marginals)
