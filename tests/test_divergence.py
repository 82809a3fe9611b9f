import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

import jaxsteer as js
from jaxsteer.divergence import gaussian_kl, js_divergence, prior_kl
from conftest import random_family


def _kl_np(m1, s1, m0, s0):
    d = len(m1)
    p0 = np.linalg.inv(s0)
    diff = m1 - m0
    return 0.5 * (np.trace(p0 @ s1) + diff @ p0 @ diff - d + np.linalg.slogdet(s0)[1] - np.linalg.slogdet(s1)[1])


def test_gaussian_kl_matches_formula_and_monte_carlo(rng):
    fam = random_family(rng, 2, 2, 3)
    m1, s1, m0, s0 = (np.asarray(x) for x in (fam.means[0, 0], fam.covs[0, 0], fam.means[1, 1], fam.covs[1, 1]))
    kl = float(gaussian_kl(jnp.asarray(m1), jnp.asarray(s1), jnp.asarray(m0), jnp.asarray(s0)))
    np.testing.assert_allclose(kl, _kl_np(m1, s1, m0, s0), rtol=1e-12)
    x = scipy.stats.multivariate_normal(m1, s1).rvs(400_000, random_state=1)
    mc = np.mean(scipy.stats.multivariate_normal(m1, s1).logpdf(x) - scipy.stats.multivariate_normal(m0, s0).logpdf(x))
    assert abs(mc - kl) < 0.02 * max(kl, 1)


def test_joint_kl_batched_and_zero_on_self(rng):
    p = random_family(rng, 3, 2, 2, batch=(4,))
    q = random_family(rng, 3, 2, 2, batch=(4,))
    kl = js.kl_divergence(p, q)
    assert kl.shape == (4,)
    for b in range(4):
        ref = np.sum(np.asarray(p.priors[b]) * np.log(np.asarray(p.priors[b] / q.priors[b])))
        for i in range(3):
            for a in range(2):
                ref += float(p.priors[b, i, a]) * _kl_np(*(np.asarray(x) for x in (
                    p.means[b, i, a], p.covs[b, i, a], q.means[b, i, a], q.covs[b, i, a])))
        np.testing.assert_allclose(kl[b], ref, rtol=1e-11)
    np.testing.assert_allclose(js.kl_divergence(p, p), 0.0, atol=1e-12)
    assert np.all(kl > 0)


def test_prior_kl_zero_mass_convention(rng):
    p = random_family(rng, 2, 2, 1)
    q0 = np.asarray(p.priors).copy()
    q0[0, 0] = 0.0
    q0 /= q0.sum()
    zero = p.replace(priors=jnp.asarray(q0))
    assert np.isfinite(prior_kl(zero, p))  # 0 ln 0 = 0
    assert np.isinf(prior_kl(p, zero))  # mass where q has none


def test_js_monte_carlo(rng):
    p = random_family(rng, 2, 2, 2)
    js_val, se = js_divergence(p, p, key=jax.random.PRNGKey(0), n_samples=2000)
    assert abs(float(js_val)) < 1e-12
    q = random_family(rng, 2, 2, 2)
    js_val, se = js_divergence(p, q, key=jax.random.PRNGKey(0), n_samples=20000)
    assert 0 < float(js_val) <= np.log(2) + 4 * float(se)
