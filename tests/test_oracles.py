"""Self-tests of the independent numpy/scipy/cvxpy oracle in tests/oracles.py."""
import numpy as np
import pytest

import oracles as O


def _family(seed, k, m, d):
    return O.random_family(np.random.default_rng(seed), k, m, d)


def _ideal(seed, k, m, d):
    """An exactly ideal family in symmetric form: gauge Gamma_0 = I, nu_0 = 0, SPD maps."""
    rng = np.random.default_rng(seed)
    nu = rng.normal(size=(k, d))
    nu[0] = 0.0
    Gamma = np.stack([np.eye(d)] + [O._random_spd(rng, d, 0.8) for _ in range(k - 1)])
    pi = rng.dirichlet(np.full(k, 5.0)) * (1 - 0.1 * k) + 0.1
    p = rng.dirichlet(np.full(m, 5.0)) * (1 - 0.1 * m) + 0.1
    A = np.stack([O._random_spd(rng, d, 0.6) for _ in range(m)])
    b = rng.normal(size=(m, d))
    return O.ideal_family(nu, Gamma, pi, p, A, b)


# ---------------------------------------------------------------------------------------------
# building blocks


def test_gaussian_kl_univariate_formula():
    rng = np.random.default_rng(0)
    m1, m0 = rng.normal(size=2)
    s1, s0 = np.exp(rng.normal(size=2))
    expected = np.log(s0 / s1) + (s1 ** 2 + (m1 - m0) ** 2) / (2 * s0 ** 2) - 0.5
    got = O.gaussian_kl(np.array([m1]), np.array([[s1 ** 2]]), np.array([m0]), np.array([[s0 ** 2]]))
    assert got == pytest.approx(expected, rel=1e-12)


def test_kl_family_parts_and_zero():
    pr, mu, S = _family(1, 3, 2, 3)
    assert O.kl_family(pr, mu, S, pr, mu, S) == pytest.approx(0.0, abs=1e-12)
    pr2, mu2, S2 = _family(2, 3, 2, 3)
    parts = O.kl_family_parts(pr2, mu2, S2, pr, mu, S)
    assert parts["kl"] == pytest.approx(parts["kl_priors"] + parts["kl_features"], rel=1e-12)
    assert parts["kl"] > 0


def test_random_family_properties():
    pr, mu, S = _family(3, 3, 3, 4)
    assert pr.min() >= 0.03 and pr.sum() == pytest.approx(1.0)
    p = pr.sum(0)
    base = pr / p
    assert np.ptp(p) > 0.01 and np.min(np.ptp(base, axis=1)) > 0.02
    ev = np.linalg.eigvalsh(S)
    assert ev.min() > 0.29 and ev.max() < 3.01


@pytest.mark.parametrize("form", ["symmetric", "affine"])
def test_all_groups_gradient(form):
    rng = np.random.default_rng(4)
    pr, mu, S = O.random_family(rng, 3, 2, 2)
    prob = O._AllProblem(pr, mu, S, form, 0, (0, 1, 2))
    n = 2 * 2 + 2 * 3 + 2 * (prob.nA + 2)
    x = 0.3 * rng.normal(size=n)
    _, g = prob.value_grad(x)
    h = 1e-6
    gn = np.array([(prob.value_grad(x + h * e)[0] - prob.value_grad(x - h * e)[0]) / (2 * h)
                   for e in np.eye(n)])
    assert np.max(np.abs(g - gn)) < 1e-6 * max(1.0, np.max(np.abs(g)))


def test_group_gradient():
    rng = np.random.default_rng(5)
    pr, mu, S = O.random_family(rng, 3, 2, 3)
    prob = O._GroupProblem(mu[:, 0], S[:, 0], mu[:, 1], S[:, 1], pr[:, 1])
    A = rng.normal(size=(3, 3))
    _, G, _ = prob.value_grad(A)
    h = 1e-6
    Gn = np.array([(prob.value_grad(A + h * E.reshape(3, 3))[0]
                    - prob.value_grad(A - h * E.reshape(3, 3))[0]) / (2 * h)
                   for E in np.eye(9)]).reshape(3, 3)
    assert np.max(np.abs(G - Gn)) < 1e-7


# ---------------------------------------------------------------------------------------------
# (a) symmetric affirmative: scipy == cvxpy


@pytest.mark.parametrize("seed,k,m,d", [(10, 2, 2, 1), (11, 3, 2, 2), (12, 2, 3, 3), (13, 3, 3, 2)])
def test_affirmative_symmetric_scipy_matches_cvxpy(seed, k, m, d):
    pr, mu, S = _family(seed, k, m, d)
    for r in (0, m - 1):
        for c in (0, k - 1):
            a = O.affirmative(pr, mu, S, form="symmetric", reference=r, reference_class=c)
            b = O.affirmative_cvxpy(pr, mu, S, reference=r, reference_class=c)
            assert a["kl"] == pytest.approx(b["kl"], rel=1e-6)
            assert a["kl"] <= b["kl"] + 1e-9  # the local optimiser is at least as accurate
            assert a["kl_priors"] == pytest.approx(b["kl_priors"], rel=1e-12)
            np.testing.assert_allclose(a["means"], b["means"], atol=1e-4)
            np.testing.assert_allclose(a["covs"], b["covs"], atol=1e-4)
            # the symmetric constraint: A_a Sigma_cr^{1/2} is SPD
            R = O.psd_sqrt(S[c, r])
            for A in a["A"]:
                M = A @ R
                np.testing.assert_allclose(M, M.T, atol=1e-9)
                assert np.linalg.eigvalsh(O._sym(M)).min() > 0


# ---------------------------------------------------------------------------------------------
# (b) univariate closed form == numerical optimum


@pytest.mark.parametrize("seed,k,m", [(20, 2, 2), (21, 3, 2), (22, 2, 3), (23, 3, 3)])
@pytest.mark.parametrize("form", ["symmetric", "affine"])
def test_univariate_closed_form_matches_scipy(seed, k, m, form):
    pr, mu, S = _family(seed, k, m, 1)
    stds = np.sqrt(S[..., 0, 0])
    for r in range(m):
        cf = O.univariate_affirmative_closed_form(pr, mu[..., 0], stds, form=form, reference=r)
        num = O.affirmative(pr, mu, S, form=form, reference=r)
        assert cf["kl"] == pytest.approx(num["kl"], rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(cf["means"], num["means"], atol=1e-6)
        np.testing.assert_allclose(cf["covs"], num["covs"], atol=1e-6)
        if form == "symmetric":
            assert np.all(cf["scale"] > 0)


def test_univariate_affine_uses_negative_branch():
    """A group that is the mirror image of the reference: only s- fits it exactly."""
    rng = np.random.default_rng(30)
    pr, mu, S = O.random_family(rng, 2, 2, 1)
    base = pr[:, 0] / pr[:, 0].sum()
    pr = np.outer(base, [0.4, 0.6])
    mu[:, 1] = -2.0 * mu[:, 0] + 1.0
    S[:, 1] = 4.0 * S[:, 0]
    stds = np.sqrt(S[..., 0, 0])
    aff = O.univariate_affirmative_closed_form(pr, mu, stds, form="affine")
    sym = O.univariate_affirmative_closed_form(pr, mu, stds, form="symmetric")
    assert aff["kl"] < 1e-12 and aff["scale"][1] == pytest.approx(-2.0)
    assert sym["kl"] > 1e-3
    assert O.affirmative(pr, mu, S, form="affine")["kl"] < 1e-12


# ---------------------------------------------------------------------------------------------
# (c) orderings: affine <= symmetric, all <= affirmative


@pytest.mark.parametrize("seed,k,m,d", [(40, 2, 2, 2), (41, 3, 2, 1), (42, 2, 3, 2)])
def test_orderings(seed, k, m, d):
    pr, mu, S = _family(seed, k, m, d)
    tol = 1e-9
    all_sym = O.all_groups(pr, mu, S, form="symmetric")
    all_aff = O.all_groups(pr, mu, S, form="affine")
    assert all_aff["kl"] <= all_sym["kl"] + tol
    for r in range(m):
        aff_sym = O.affirmative(pr, mu, S, form="symmetric", reference=r)
        aff_aff = O.affirmative(pr, mu, S, form="affine", reference=r)
        assert aff_aff["kl"] <= aff_sym["kl"] + tol
        assert all_sym["kl"] <= aff_sym["kl"] + tol
        assert all_aff["kl"] <= aff_aff["kl"] + tol
    for res in (all_sym, all_aff):
        # the returned family is ideal with q~[i,a] = p_a pi_i and the reported KL is its KL
        np.testing.assert_allclose(res["priors"], np.outer(res["pi"], pr.sum(0)), atol=1e-14)
        assert res["kl"] == pytest.approx(res["objective"], rel=1e-9, abs=1e-12)
        assert res["kl"] == pytest.approx(
            O.kl_family(res["priors"], res["means"], res["covs"], pr, mu, S), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# (d) an ideal family is its own nearest ideal family


@pytest.mark.parametrize("seed,k,m,d", [(50, 2, 2, 2), (51, 3, 3, 2), (52, 2, 2, 1)])
def test_ideal_family_has_zero_kl(seed, k, m, d):
    pr, mu, S = _ideal(seed, k, m, d)
    results = []
    for r in range(m):
        results.append(O.affirmative(pr, mu, S, form="symmetric", reference=r))
        results.append(O.affirmative(pr, mu, S, form="affine", reference=r))
        results.append(O.affirmative_cvxpy(pr, mu, S, reference=r))
        if d == 1:
            stds = np.sqrt(S[..., 0, 0])
            for form in ("symmetric", "affine"):
                results.append(O.univariate_affirmative_closed_form(pr, mu, stds, form=form,
                                                                    reference=r))
    results.append(O.all_groups(pr, mu, S, form="symmetric"))
    results.append(O.all_groups(pr, mu, S, form="affine"))
    for res in results:
        assert res["kl"] < 1e-8
    for res in results[-2:]:
        assert not res["at_boundary"]
        np.testing.assert_allclose(res["priors"], pr, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# (e) groups that differ by a rotation: affine-ideal, not symmetric-ideal


def _rotated_family(seed, d=2, angle=2.0):
    rng = np.random.default_rng(seed)
    pr0, mu0, S0 = O.random_family(rng, 2, 1, d)
    base = pr0[:, 0]
    pr = np.outer(base, [0.35, 0.65])
    if d == 2:
        Q = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    else:
        Q = O.random_orthogonal(rng, d, det=1)
    mu = np.stack([mu0[:, 0], mu0[:, 0] @ Q.T], axis=1)
    S = np.stack([S0[:, 0], Q @ S0[:, 0] @ Q.T], axis=1)
    return pr, mu, O._sym(S), Q


@pytest.mark.parametrize("seed,d", [(60, 2), (61, 3)])
def test_rotation_is_affine_ideal_not_symmetric(seed, d):
    pr, mu, S, Q = _rotated_family(seed, d)
    for r in (0, 1):
        aff = O.affirmative(pr, mu, S, form="affine", reference=r)
        sym = O.affirmative(pr, mu, S, form="symmetric", reference=r)
        assert aff["kl"] < 1e-8
        assert sym["kl"] > 1e-3
        assert O.affirmative_cvxpy(pr, mu, S, reference=r)["kl"] == pytest.approx(sym["kl"],
                                                                                 rel=1e-6)
    aff = O.affirmative(pr, mu, S, form="affine", reference=0)
    np.testing.assert_allclose(aff["A"][1], Q, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# the `all` problem on faces of the simplex


def test_single_class_support_is_closed_form():
    """With one class kept every group fits exactly: KL = -sum_a p_a ln q(i|a)."""
    pr, mu, S = _family(70, 2, 2, 2)
    p = pr.sum(0)
    base = pr / p
    for i in range(2):
        res = O.all_groups(pr, mu, S, form="affine", support=(i,), n_starts=2)
        assert res["kl"] == pytest.approx(-np.sum(p * np.log(base[i])), abs=1e-9)
        assert res["pi"][1 - i] == 0.0


@pytest.mark.slow
def test_symmetric_all_infimum_can_sit_on_the_boundary():
    """Documents a property of the `all` problem: in the symmetric form the best value can be
    approached only as the reference class's base rate goes to 0 (not attained)."""
    found = False
    for seed in range(200, 230):
        pr, mu, S = _family(seed, 3, 3, 3)
        res = O.all_groups(pr, mu, S, form="symmetric", n_starts=4)
        if res["at_boundary"]:
            found = True
            assert res["interior"] is None or res["kl"] < res["interior"]["kl"]
            assert res["pi_min"] < 1e-8
            break
    assert found


@pytest.mark.slow
@pytest.mark.parametrize("seed,k,m,d", [(80, 3, 3, 5), (81, 2, 3, 4)])
def test_slow_larger_families(seed, k, m, d):
    pr, mu, S = _family(seed, k, m, d)
    sym = O.affirmative(pr, mu, S, form="symmetric")
    cvx = O.affirmative_cvxpy(pr, mu, S)
    aff = O.affirmative(pr, mu, S, form="affine")
    assert sym["kl"] == pytest.approx(cvx["kl"], rel=1e-6)
    assert aff["kl"] <= sym["kl"] + 1e-9
    all_sym = O.all_groups(pr, mu, S, form="symmetric")
    all_aff = O.all_groups(pr, mu, S, form="affine")
    assert all_aff["kl"] <= all_sym["kl"] + 1e-9 and all_sym["kl"] <= sym["kl"] + 1e-9
    assert all_aff["kl"] <= aff["kl"] + 1e-9
    inf = O.all_groups_infimum(pr, mu, S, form="affine", n_starts=4)
    assert inf["kl"] <= all_aff["kl"] + 1e-9
