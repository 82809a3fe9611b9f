"""Tests of jaxsteer.ideal: ideal conditions, exact and Monte Carlo Bayes rates, JS divergence."""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import integrate, optimize, stats  # noqa: E402

from jaxsteer.divergence import js_divergence  # noqa: E402
from jaxsteer.family import GaussianFamily  # noqa: E402
from jaxsteer.ideal import (  # noqa: E402
    bayes_rates_1d,
    bayes_rates_mc,
    ideal_residuals,
    is_ideal,
    js_divergence_1d,
)

# ------------------------------------------------------------------------------------------------
# constructors
# ------------------------------------------------------------------------------------------------


def _spd(rng, d, lo=0.5, hi=2.0):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q @ np.diag(rng.uniform(lo, hi, size=d)) @ q.T


def _orth(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _sqrtm(s):
    w, v = np.linalg.eigh(s)
    return v @ np.diag(np.sqrt(w)) @ v.T


def _inv_sqrtm(s):
    w, v = np.linalg.eigh(s)
    return v @ np.diag(1.0 / np.sqrt(w)) @ v.T


def _template(rng, k, d):
    nu = rng.normal(size=(k, d)) * 1.5
    gam = np.stack([_spd(rng, d) for _ in range(k)])
    return nu, gam


def _family_from_maps(nu, gam, maps, shifts, pi, p_group):
    """μ_ia = A_a ν_i + b_a, Σ_ia = A_a Γ_i A_aᵀ, q[i, a] = p_a π_i."""
    k, d = nu.shape
    m = len(maps)
    means = np.zeros((k, m, d))
    covs = np.zeros((k, m, d, d))
    for a in range(m):
        for i in range(k):
            means[i, a] = maps[a] @ nu[i] + shifts[a]
            covs[i, a] = maps[a] @ gam[i] @ maps[a].T
    covs = 0.5 * (covs + np.swapaxes(covs, -1, -2))
    priors = np.outer(pi, p_group)
    return GaussianFamily(priors, means, covs)


def _symmetric_ideal(rng, k=3, m=3, d=3, rotate_group=None):
    nu, gam = _template(rng, k, d)
    g0 = _inv_sqrtm(gam[0])
    maps = []
    for a in range(m):
        s = _spd(rng, d)
        amap = s @ g0
        if a == rotate_group:
            amap = _orth(rng, d) @ amap
        maps.append(amap)
    shifts = rng.normal(size=(m, d))
    pi = rng.dirichlet(np.ones(k) * 3)
    p_group = rng.dirichlet(np.ones(m) * 3)
    return _family_from_maps(nu, gam, maps, shifts, pi, p_group)


def _random_family(rng, k, m, d):
    priors = rng.dirichlet(np.ones(k * m) * 3).reshape(k, m)
    means = rng.normal(size=(k, m, d))
    covs = np.stack([[_spd(rng, d) for _ in range(m)] for _ in range(k)])
    return GaussianFamily(priors, means, covs)


def _symmetrised(fam, rotate_group=None, seed=0):
    """The ideal family keeping every group's class-0 distribution and group 0's class geometry."""
    rng = np.random.default_rng(seed)
    mu = np.asarray(fam.means)
    cov = np.asarray(fam.covs)
    pr = np.asarray(fam.priors)
    k, m, d = mu.shape
    w0 = _inv_sqrtm(cov[0, 0])
    delta = np.stack([w0 @ (mu[i, 0] - mu[0, 0]) for i in range(k)])
    g = np.stack([w0 @ cov[i, 0] @ w0 for i in range(k)])
    maps, shifts = [], []
    for a in range(m):
        amap = _sqrtm(cov[0, a])
        if a == rotate_group:
            amap = amap @ _orth(rng, d)
        maps.append(amap)
        shifts.append(mu[0, a])
    pi = pr.sum(axis=1)
    return _family_from_maps(delta, g, maps, shifts, pi, pr.sum(axis=0))


def _univariate_ideal(rng, k, m, decreasing_group=1):
    nu = rng.normal(size=k) * 1.5
    gam = np.exp(rng.normal(size=k) * 0.4)
    scale = np.exp(rng.normal(size=m) * 0.5)
    scale[decreasing_group] *= -1.0
    shift = rng.normal(size=m)
    pi = rng.dirichlet(np.ones(k) * 3)
    p_group = rng.dirichlet(np.ones(m) * 3)
    means = nu[:, None] * scale[None, :] + shift[None, :]
    stds = gam[:, None] * np.abs(scale)[None, :]
    return GaussianFamily.univariate(np.outer(pi, p_group), means, stds)


def _random_univariate(rng, k, m):
    priors = rng.dirichlet(np.ones(k * m) * 3).reshape(k, m)
    return GaussianFamily.univariate(
        priors, rng.normal(size=(k, m)) * 1.5, np.exp(rng.normal(size=(k, m)) * 0.4)
    )


def _np(tree):
    return jax.tree.map(np.asarray, tree)


def _np_params(fam):
    pr = np.asarray(fam.priors)
    base = pr / pr.sum(axis=0, keepdims=True)
    return base, np.asarray(fam.means[..., 0]), np.sqrt(np.asarray(fam.covs[..., 0, 0]))


def _brute_confusion(fam, cost, n_grid=200_001):
    """Confusion of the Bayes rule by root finding on a fine grid and scipy quad of the densities."""
    base, mu, sd = _np_params(fam)
    cost = np.asarray(cost)
    k, m = base.shape
    lo = float((mu - 14 * sd).min())
    hi = float((mu + 14 * sd).max())
    grid = np.linspace(lo, hi, n_grid)

    out = np.zeros((m, k, k))
    for a in range(m):

        def risks(x, a=a):
            x = np.atleast_1d(x)
            lp = np.log(base[:, a]) + stats.norm.logpdf(x[:, None], mu[:, a], sd[:, a])
            return np.exp(lp - lp.max(axis=1, keepdims=True)) @ cost

        lab = np.argmin(risks(grid), axis=1)
        cuts = [-np.inf]
        for p in np.nonzero(np.diff(lab))[0]:
            j, l = lab[p], lab[p + 1]
            r = optimize.brentq(
                lambda x, j=j, l=l: risks(x)[0, j] - risks(x)[0, l],
                grid[p],
                grid[p + 1],
                xtol=1e-15,
                rtol=4 * np.finfo(float).eps,
            )
            cuts.append(r)
        cuts.append(np.inf)
        labels = list(lab[np.r_[0, np.nonzero(np.diff(lab))[0] + 1]])
        for i in range(k):
            for (u, v), j in zip(zip(cuts[:-1], cuts[1:]), labels):
                val, _ = integrate.quad(
                    stats.norm.pdf, u, v, args=(mu[i, a], sd[i, a]), epsabs=1e-13, epsrel=1e-12, limit=200
                )
                out[a, i, j] += val
    return out


COSTS_2 = [np.array([[0.0, 1.0], [c, 0.0]]) for c in (0.5, 1.0, 3.0)]


# ------------------------------------------------------------------------------------------------
# ideal conditions
# ------------------------------------------------------------------------------------------------


def test_symmetric_ideal_family_is_ideal_in_both_forms():
    fam = _symmetric_ideal(np.random.default_rng(0))
    for form in ("symmetric", "affine"):
        res = ideal_residuals(fam, form=form)
        assert float(res.priors) < 1e-12
        assert float(res.features) < 1e-9, (form, res)
        assert bool(is_ideal(fam, form=form))


def test_rotated_group_is_affine_ideal_but_not_symmetric():
    fam = _symmetric_ideal(np.random.default_rng(1), rotate_group=2)
    assert float(ideal_residuals(fam, form="symmetric").features) > 1e-2
    assert not bool(is_ideal(fam, form="symmetric"))
    assert bool(is_ideal(fam, form="affine"))
    # other reference classes see the same affine-template structure
    for c in (1, 2):
        assert bool(is_ideal(fam, form="affine", reference_class=c))


def test_general_affine_maps_are_affine_ideal():
    rng = np.random.default_rng(2)
    for k, d in ((2, 2), (3, 3), (4, 2)):
        nu, gam = _template(rng, k, d)
        maps = [rng.normal(size=(d, d)) + 2 * np.eye(d) for _ in range(3)]
        maps[1][:, 0] *= -1.0  # an orientation-reversing map
        fam = _family_from_maps(nu, gam, maps, rng.normal(size=(3, d)), np.ones(k) / k, np.ones(3) / 3)
        assert bool(is_ideal(fam, form="affine")), (k, d, ideal_residuals(fam, form="affine"))
        assert not bool(is_ideal(fam, form="symmetric"))


def test_random_family_is_not_ideal():
    rng = np.random.default_rng(3)
    for k, m, d in ((2, 2, 3), (3, 3, 3), (3, 2, 1)):
        fam = _random_family(rng, k, m, d)
        for form in ("symmetric", "affine"):
            assert float(ideal_residuals(fam, form=form).features) > 1e-2
            assert not bool(is_ideal(fam, form=form))


def test_perturbed_base_rates_are_not_ideal():
    fam = _symmetric_ideal(np.random.default_rng(4), rotate_group=1)
    pr = np.asarray(fam.priors).copy()
    pr[0, 1] += 0.01
    pr[1, 1] -= 0.01
    bad = GaussianFamily(pr, fam.means, fam.covs)
    res = ideal_residuals(bad, form="affine")
    assert float(res.priors) > 1e-3
    assert float(res.features) < 1e-9
    assert not bool(is_ideal(bad, form="affine"))
    assert not bool(is_ideal(bad, form="symmetric"))


def test_affine_k2_uses_higher_moments():
    # G = diag(1, 2, 3); δ_0 = e2, δ_1 = (e1 + e3)/√2 share |δ|², δᵀGδ and the eigenvalues of G but
    # not δᵀG²δ (4 vs 5): the configurations are not related by any orthogonal map.
    d = 3
    g = np.diag([1.0, 2.0, 3.0])
    deltas = [np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 1.0]) / np.sqrt(2)]
    means = np.zeros((2, 2, d))
    covs = np.zeros((2, 2, d, d))
    for a in range(2):
        covs[0, a] = np.eye(d)
        covs[1, a] = g
        means[1, a] = deltas[a]
    fam = GaussianFamily(np.full((2, 2), 0.25), means, covs)
    assert float(ideal_residuals(fam, form="affine").features) > 0.1
    # the same δ in both groups up to a symmetry of G (a sign flip) is ideal
    means[1, 1] = np.array([0.0, -1.0, 0.0])
    fam = GaussianFamily(np.full((2, 2), 0.25), means, covs)
    assert bool(is_ideal(fam, form="affine"))


def test_univariate_affine_condition_is_exact():
    rng = np.random.default_rng(5)
    fam = _univariate_ideal(rng, k=3, m=3, decreasing_group=1)
    assert bool(is_ideal(fam, form="affine"))
    assert not bool(is_ideal(fam, form="symmetric"))  # the decreasing map flips the mean offsets
    base, mu, sd = _np_params(fam)
    # flipping the offset of one class only (not the whole group) is not ideal
    mu2 = mu.copy()
    mu2[1, 2] = 2 * mu[0, 2] - mu[1, 2]
    fam2 = GaussianFamily.univariate(fam.priors, mu2, sd)
    assert not bool(is_ideal(fam2, form="affine"))
    # changing one std ratio is not ideal
    sd2 = sd.copy()
    sd2[2, 0] *= 1.05
    assert not bool(is_ideal(GaussianFamily.univariate(fam.priors, mu, sd2), form="affine"))


def test_residuals_batched_and_jit():
    rng = np.random.default_rng(6)
    fams = [_symmetric_ideal(rng, rotate_group=1), _random_family(rng, 3, 3, 3)]
    batched = GaussianFamily(
        np.stack([f.priors for f in fams]), np.stack([f.means for f in fams]), np.stack([f.covs for f in fams])
    )
    for form in ("symmetric", "affine"):
        res = _np(ideal_residuals(batched, form=form))
        jitted = _np(jax.jit(lambda f, form=form: ideal_residuals(f, form=form))(batched))
        for b, f in enumerate(fams):
            single = _np(ideal_residuals(f, form=form))
            for key in ("priors", "features"):
                assert getattr(res, key).shape == (2,)
                np.testing.assert_allclose(getattr(res, key)[b], getattr(single, key), rtol=1e-10, atol=1e-13)
                np.testing.assert_allclose(getattr(jitted, key)[b], getattr(single, key), rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(is_ideal(batched, form="affine"), [True, False])


def test_bad_form_raises():
    fam = _random_family(np.random.default_rng(7), 2, 2, 2)
    with pytest.raises(ValueError, match="form"):
        ideal_residuals(fam, form="orthogonal")
    with pytest.raises(ValueError, match="form"):
        is_ideal(fam, form="Symmetric")
    with pytest.raises(ValueError, match="reference_class"):
        ideal_residuals(fam, reference_class=2)


# ------------------------------------------------------------------------------------------------
# exact univariate rates
# ------------------------------------------------------------------------------------------------


def test_exact_rates_match_brute_force_quadrature_k2():
    rng = np.random.default_rng(8)
    fam = _random_univariate(rng, 2, 3)
    costs = COSTS_2 + [np.array([[0.2, 1.5], [2.0, -0.3]]), np.array([[1.0, 0.0], [0.0, 1.0]])]
    for cost in costs:
        exact = np.asarray(bayes_rates_1d(fam, jnp.asarray(cost)).confusion)
        brute = _brute_confusion(fam, cost)
        np.testing.assert_allclose(exact, brute, atol=1e-7, rtol=0)
        np.testing.assert_allclose(exact.sum(axis=-1), 1.0, atol=1e-13)


def test_exact_rates_match_brute_force_quadrature_k3_general_cost():
    rng = np.random.default_rng(9)
    fam = _random_univariate(rng, 3, 2)
    for cost in (1.0 - np.eye(3), rng.uniform(size=(3, 3))):
        exact = np.asarray(bayes_rates_1d(fam, jnp.asarray(cost)).confusion)
        np.testing.assert_allclose(exact, _brute_confusion(fam, cost), atol=1e-7, rtol=0)


@pytest.mark.parametrize(
    "means, stds",
    [
        ([[0.0, 1.0], [1.0, 1.5]], [[1.0, 1.0], [1.0 + 1e-9, 1.0000001]]),  # (nearly) linear boundary
        ([[0.0, 1.0], [1.0, 1.5]], [[1.0, 1e-3], [1e3, 1.0]]),  # variance ratios of 1e6
        ([[1e4, -1e4], [1e4 + 1.0, -1e4 + 0.5]], [[1.0, 2.0], [1.3, 0.4]]),  # far from the origin
    ],
)
def test_exact_rates_extreme_univariate_families(means, stds):
    fam = GaussianFamily.univariate([[0.3, 0.2], [0.2, 0.3]], means, stds)
    cost = np.array([[0.0, 1.0], [2.0, 0.0]])
    exact = np.asarray(bayes_rates_1d(fam, jnp.asarray(cost)).confusion)
    np.testing.assert_allclose(exact, _brute_confusion(fam, cost), atol=1e-7, rtol=0)


def test_float32_inputs():
    fam = _random_univariate(np.random.default_rng(17), 2, 2).astype(jnp.float32)
    cost = jnp.array([[0.0, 1.0], [2.0, 0.0]], jnp.float32)
    r32 = bayes_rates_1d(fam, cost)
    assert r32.confusion.dtype == jnp.float32
    r64 = bayes_rates_1d(fam.astype(jnp.float64), cost.astype(jnp.float64))
    np.testing.assert_allclose(r32.confusion, r64.confusion, atol=1e-6)
    ideal = _symmetric_ideal(np.random.default_rng(18), rotate_group=1).astype(jnp.float32)
    assert bool(is_ideal(ideal, form="affine", atol=1e-4))
    assert not bool(is_ideal(ideal, form="symmetric", atol=1e-4))


def test_degenerate_costs():
    fam = _random_univariate(np.random.default_rng(10), 2, 2)
    always_one = bayes_rates_1d(fam, jnp.array([[1.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_allclose(always_one.confusion[..., 1], 1.0, atol=1e-15)
    np.testing.assert_allclose(always_one.error, 0.0, atol=1e-15)
    always_zero = bayes_rates_1d(fam, jnp.zeros((2, 2)))  # ties go to class 0
    np.testing.assert_allclose(always_zero.confusion[..., 0], 1.0, atol=1e-15)


def test_exact_rates_match_monte_carlo():
    rng = np.random.default_rng(11)
    cases = [(_random_univariate(rng, 2, 3), jnp.array([[0.0, 1.0], [2.0, 0.0]]))]
    cases.append((_random_univariate(rng, 3, 2), jnp.asarray(rng.uniform(size=(3, 3)))))
    for fam, cost in cases:
        exact = _np(bayes_rates_1d(fam, cost))
        mc = _np(bayes_rates_mc(fam, cost, jax.random.PRNGKey(0)))
        se = np.maximum(np.asarray(mc.confusion_se), 1e-12)
        assert np.all(np.abs(exact.confusion - mc.confusion) <= 4 * se + 1e-12)
        assert abs(float(exact.error - mc.error)) <= 4 * float(mc.error_se)
        pse = np.maximum(np.asarray(mc.positive_rate_se), 1e-12)
        assert np.all(np.abs(exact.positive_rate - mc.positive_rate) <= 4 * pse + 1e-12)


def test_ideal_univariate_family_has_zero_gaps():
    rng = np.random.default_rng(12)
    fam = _univariate_ideal(rng, k=2, m=3, decreasing_group=1)
    assert bool(is_ideal(fam, form="affine"))
    for cost in COSTS_2:
        r = _np(bayes_rates_1d(fam, jnp.asarray(cost)))
        for key in ("tpr_gap", "fpr_gap", "dp_gap", "eo_gap"):
            assert float(getattr(r, key)) < 1e-10, (cost, key, getattr(r, key))
        assert 0.01 < float(r.positive_rate[0, 1]) < 0.99  # a non-trivial rule
    bad = _random_univariate(rng, 2, 3)
    for cost in COSTS_2:
        r = _np(bayes_rates_1d(bad, jnp.asarray(cost)))
        assert float(r.tpr_gap) > 0.01 and float(r.fpr_gap) > 0.01 and float(r.dp_gap) > 0.01


def test_ideal_univariate_family_k3_general_cost():
    rng = np.random.default_rng(13)
    fam = _univariate_ideal(rng, k=3, m=3, decreasing_group=2)
    for cost in (1.0 - np.eye(3), rng.uniform(size=(3, 3))):
        r = _np(bayes_rates_1d(fam, jnp.asarray(cost)))
        assert float(np.max(r.confusion_gap)) < 1e-10
        assert float(np.max(r.positive_rate_gap)) < 1e-10


def test_jit_and_batching_match():
    rng = np.random.default_rng(14)
    fams = [_random_univariate(rng, 2, 3) for _ in range(3)]
    cost = jnp.array([[0.0, 1.0], [3.0, 0.0]])
    batched = GaussianFamily(
        np.stack([f.priors for f in fams]), np.stack([f.means for f in fams]), np.stack([f.covs for f in fams])
    )
    eager = _np(bayes_rates_1d(batched, cost))
    jitted = _np(jax.jit(bayes_rates_1d)(batched, cost))
    singles = [_np(bayes_rates_1d(f, cost)) for f in fams]
    for key, v in eager._asdict().items():
        np.testing.assert_allclose(getattr(jitted, key), v, rtol=1e-12, atol=1e-14)
        for b in range(len(fams)):
            np.testing.assert_allclose(v[b], getattr(singles[b], key), rtol=1e-12, atol=1e-14)
    assert eager.confusion.shape == (3, 3, 2, 2)
    assert eager.positive_rate.shape == (3, 3, 2)
    assert eager.error.shape == (3,)

    # Monte Carlo: same key for every batch member, so a batch equals a loop
    mc = _np(bayes_rates_mc(batched, cost, jax.random.PRNGKey(1), n=2000))
    for b, f in enumerate(fams):
        single = _np(bayes_rates_mc(f, cost, jax.random.PRNGKey(1), n=2000))
        np.testing.assert_allclose(mc.confusion[b], single.confusion, atol=1e-12)
        np.testing.assert_allclose(mc.eo_gap_se[b], single.eo_gap_se, atol=1e-12)


def test_lognormal_family_rates_equal_gaussian_on_log_scale():
    fam = _random_univariate(np.random.default_rng(15), 2, 2)
    logfam = fam.replace(lognormal=True)
    cost = jnp.array([[0.0, 1.0], [2.0, 0.0]])
    a, b = bayes_rates_1d(fam, cost), bayes_rates_1d(logfam, cost)
    np.testing.assert_allclose(a.confusion, b.confusion, atol=1e-15)


def test_rates_input_errors():
    rng = np.random.default_rng(16)
    fam = _random_univariate(rng, 2, 2)
    with pytest.raises(ValueError, match="cost"):
        bayes_rates_1d(fam, jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="d == 1"):
        bayes_rates_1d(_random_family(rng, 2, 2, 2), jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="cost"):
        bayes_rates_mc(fam, jnp.zeros((2,)), jax.random.PRNGKey(0))


# ------------------------------------------------------------------------------------------------
# Monte Carlo on multivariate ideal families
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3])
def test_multivariate_ideal_family_has_zero_gaps_monte_carlo(k):
    rng = np.random.default_rng(20 + k)
    original = _random_family(rng, k, 3, 3)
    ideal = _symmetrised(original, rotate_group=2, seed=k)
    assert bool(is_ideal(ideal, form="affine"))
    assert not bool(is_ideal(ideal, form="symmetric"))
    if k == 2:
        costs = COSTS_2
    else:
        costs = [
            1.0 - np.eye(3),
            np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 1.0], [1.0, 1.0, 0.0]]),
            np.array([[0.0, 2.0, 1.0], [1.0, 0.0, 1.0], [4.0, 1.0, 0.0]]),
        ]
    key = jax.random.PRNGKey(k)
    for cost in costs:
        cost = jnp.asarray(cost)
        mc = _np(bayes_rates_mc(ideal, cost, key, n=60_000))
        assert np.all(mc.confusion_gap <= 4 * mc.confusion_gap_se + 1e-12)
        assert np.all(mc.positive_rate_gap <= 4 * mc.positive_rate_gap_se + 1e-12)
        assert float(mc.eo_gap) <= 4 * float(mc.eo_gap_se) + 1e-12
        assert float(mc.dp_gap) <= 4 * float(mc.dp_gap_se) + 1e-12
        orig = _np(bayes_rates_mc(original, cost, key, n=60_000))
        assert float(orig.eo_gap) > 6 * float(orig.eo_gap_se)


# ------------------------------------------------------------------------------------------------
# Jensen–Shannon divergence
# ------------------------------------------------------------------------------------------------


def _js_quad(p, q):
    wp, wq = np.asarray(p.priors), np.asarray(q.priors)
    mp, mq = np.asarray(p.means[..., 0]), np.asarray(q.means[..., 0])
    sp, sq = np.sqrt(np.asarray(p.covs[..., 0, 0])), np.sqrt(np.asarray(q.covs[..., 0, 0]))
    total = 0.0
    for i in range(wp.shape[0]):
        for a in range(wp.shape[1]):

            def h(x, i=i, a=a):
                f = wp[i, a] * stats.norm.pdf(x, mp[i, a], sp[i, a])
                g = wq[i, a] * stats.norm.pdf(x, mq[i, a], sq[i, a])
                mid = 0.5 * (f + g)
                return 0.5 * (f * np.log(f / mid) if f > 0 else 0.0) + 0.5 * (g * np.log(g / mid) if g > 0 else 0.0)

            lo = min(mp[i, a] - 15 * sp[i, a], mq[i, a] - 15 * sq[i, a])
            hi = max(mp[i, a] + 15 * sp[i, a], mq[i, a] + 15 * sq[i, a])
            pts = sorted([mp[i, a], mq[i, a]])
            total += integrate.quad(h, lo, hi, points=pts, epsabs=1e-15, epsrel=1e-13, limit=500)[0]
    return total


def test_js_divergence_1d_matches_scipy_and_monte_carlo():
    rng = np.random.default_rng(30)
    p = _random_univariate(rng, 2, 3)
    for scale in (1.0, 0.02, 30.0):
        q0 = _random_univariate(rng, 2, 3)
        q = q0.replace(covs=q0.covs * scale**2)
        np.testing.assert_allclose(float(js_divergence_1d(p, q)), _js_quad(p, q), atol=1e-12)
    q = p.replace(means=p.means + 0.3)
    js = float(js_divergence_1d(p, q))
    est, se = jax.jit(js_divergence, static_argnames="n_samples")(
        p, q, key=jax.random.PRNGKey(0), n_samples=20_000
    )
    assert abs(js - float(est)) <= 4 * float(se)
    assert float(js_divergence_1d(p, p)) == pytest.approx(0.0, abs=1e-15)
    assert 0.0 <= float(js_divergence_1d(p, q)) <= np.log(2.0)


def test_js_divergence_1d_batched_and_jit():
    rng = np.random.default_rng(31)
    ps = [_random_univariate(rng, 2, 2) for _ in range(2)]
    q = _random_univariate(rng, 2, 2)
    batched = GaussianFamily(np.stack([f.priors for f in ps]), np.stack([f.means for f in ps]),
                             np.stack([f.covs for f in ps]))
    out = js_divergence_1d(batched, q)  # q broadcasts against the batch
    assert out.shape == (2,)
    for b, f in enumerate(ps):
        np.testing.assert_allclose(out[b], js_divergence_1d(f, q), rtol=1e-13)
    np.testing.assert_allclose(jax.jit(js_divergence_1d)(batched, q), out, rtol=1e-13)
    with pytest.raises(ValueError, match="d == 1"):
        js_divergence_1d(_random_family(rng, 2, 2, 2), _random_family(rng, 2, 2, 2))


# -- exact rates of linear rules -------------------------------------------------------------

import jaxsteer as js  # noqa: E402
from tests.conftest import random_family  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def _equal_cov_family(rng, d, batch=()):
    q = rng.uniform(0.5, 1.5, batch + (2, 2))
    q /= q.sum(axis=(-2, -1), keepdims=True)
    mu = rng.normal(size=batch + (2, 2, d))
    x = rng.normal(size=batch + (2, d, d))
    S = x @ np.swapaxes(x, -1, -2) + 0.5 * np.eye(d)
    return js.GaussianFamily(q, mu, np.stack([S, S], axis=-4))


@pytest.mark.parametrize("cost", [[[0, 1], [1, 0]], [[0, 2], [1, 0]], [[0, -1], [-2, 0]], [[0, 1], [-1, 0]]])
def test_bayes_rates_linear_matches_monte_carlo(rng, cost):
    from jaxsteer import ideal as ideal_mod

    fam = _equal_cov_family(rng, 3)
    C = jnp.array(cost, float)
    exact = ideal_mod.bayes_rates_linear(fam, C)
    mc = ideal_mod.bayes_rates_mc(fam, C, jax.random.PRNGKey(1), 200_000)
    tol = 5 * np.maximum(np.asarray(mc.confusion_se), 1e-4)
    assert np.all(np.abs(np.asarray(exact.confusion) - np.asarray(mc.confusion)) <= tol)
    assert abs(float(exact.error) - float(mc.error)) <= 5 * float(mc.error_se) + 1e-6


def test_bayes_rates_linear_equals_exact_1d_and_batches(rng):
    from jaxsteer import ideal as ideal_mod

    fam = _equal_cov_family(rng, 1, batch=(3,))
    C = jnp.array([[0.0, 1.0], [1.5, 0.0]])
    lin = ideal_mod.bayes_rates_linear(fam, C)
    one = ideal_mod.bayes_rates_1d(fam, C)
    for key in ("confusion", "error", "eo_gap", "dp_gap"):
        np.testing.assert_allclose(getattr(lin, key), getattr(one, key), atol=1e-12)
    loop = [ideal_mod.bayes_rates_linear(fam[j], C).eo_gap for j in range(3)]
    np.testing.assert_allclose(lin.eo_gap, loop, atol=1e-14)


def test_bayes_rates_linear_errors(rng):
    from jaxsteer import ideal as ideal_mod

    with pytest.raises(ValueError, match="class covariances differ"):
        ideal_mod.bayes_rates_linear(random_family(rng, 2, 2, 2), jnp.eye(2))
    with pytest.raises(ValueError, match="needs k = 2"):
        ideal_mod.bayes_rates_linear(random_family(rng, 3, 2, 2), jnp.eye(3))


def test_bayes_predict_matches_rule(rng):
    from jaxsteer import ideal as ideal_mod

    fam = random_family(rng, 3, 2, 2)
    x, y, a = fam.sample(jax.random.PRNGKey(0), 200)
    pred = np.asarray(ideal_mod.bayes_predict(fam, x, a))
    logf = np.asarray(fam.log_density(x))  # [n, k, m]
    post = logf[np.arange(200), :, np.asarray(a)] + np.log(np.asarray(fam.base_rates)[:, np.asarray(a)].T)
    np.testing.assert_array_equal(pred, post.argmax(-1))
    mc = ideal_mod.bayes_rates_mc(fam, 1 - jnp.eye(3), jax.random.PRNGKey(2), 50_000)
    assert abs(float(np.mean(pred != np.asarray(y))) - float(mc.error)) < 0.1
