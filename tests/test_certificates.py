"""Pinsker certificates: the target's Bayes rule deployed on the original family obeys the bounds.

For small univariate families, the Bayes rule of the ideal target ``θ̃`` (exactly fair on ``θ̃``) is
applied to the ORIGINAL family ``θ``; its confusion rates on ``θ`` are computed exactly (decision
regions located on a grid and refined by bisection, interval masses from normal CDFs) and compared
with the certified bounds.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import jaxsteer as js
from jaxsteer.certificates import Certificate, certificate
from jaxsteer.ideal import bayes_rates_1d

from conftest import random_family

B = 6  # one batch shape → one compilation per option set
COSTS = [np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.0, 0.3], [1.0, 0.0]])]


def _labels(x, base, mu, sd, cost):
    """Bayes decisions ``argmin_j Σ_i C[i,j] q(i|a) f_ia(x)`` of one group at points ``x``."""
    lp = np.log(base) - np.log(sd) - 0.5 * ((x[..., None] - mu) / sd) ** 2
    rel = np.exp(lp - lp.max(axis=-1, keepdims=True))
    return np.argmin(rel @ cost, axis=-1)  # ties → smallest j, like jaxsteer.ideal


def rule_confusion(rule_fam, data_fam, cost, n_grid=20001):
    """Confusion ``[m, k, k]`` (``[a, i, j] = P(h = j | Y = i, A = a)``) on ``data_fam`` of the Bayes
    rule of ``rule_fam`` (both unbatched univariate families, as numpy)."""
    k, m = rule_fam.k, rule_fam.m
    base = np.asarray(rule_fam.base_rates)
    mu_r, sd_r = np.asarray(rule_fam.means[..., 0]), np.sqrt(np.asarray(rule_fam.covs[..., 0, 0]))
    mu_d, sd_d = np.asarray(data_fam.means[..., 0]), np.sqrt(np.asarray(data_fam.covs[..., 0, 0]))
    out = np.zeros((m, k, k))
    for a in range(m):
        lab = functools.partial(_labels, base=base[:, a], mu=mu_r[:, a], sd=sd_r[:, a], cost=cost)
        lo = min((mu_r[:, a] - 14 * sd_r[:, a]).min(), (mu_d[:, a] - 14 * sd_d[:, a]).min())
        hi = max((mu_r[:, a] + 14 * sd_r[:, a]).max(), (mu_d[:, a] + 14 * sd_d[:, a]).max())
        x = np.linspace(lo, hi, n_grid)
        lx = lab(x)
        idx = np.nonzero(lx[:-1] != lx[1:])[0]
        left, right, l_left = x[idx], x[idx + 1], lx[idx]
        for _ in range(100):  # bisection to rounding
            mid = 0.5 * (left + right)
            same = lab(mid) == l_left
            left, right = np.where(same, mid, left), np.where(same, right, mid)
        edges = np.concatenate([[-np.inf], right, [np.inf]])
        cell_labels = np.concatenate([[lx[0]], lx[idx + 1]])  # label to the right of each boundary
        for i in range(k):
            mass = norm.cdf(edges[1:], mu_d[i, a], sd_d[i, a]) - norm.cdf(edges[:-1], mu_d[i, a], sd_d[i, a])
            np.add.at(out[a, i], cell_labels, mass)
    return out


@pytest.fixture(scope="module")
def solved():
    rng = np.random.default_rng(7)
    fam = random_family(rng, 2, 2, 1, batch=(B,))
    # "all" moves every group (the pair bound uses both); its symmetric form compiles fastest
    sols = {"affirmative": js.nearest_ideal(fam, intervention="affirmative", form="affine"),
            "all": js.nearest_ideal(fam, intervention="all", form="symmetric")}
    return fam, sols


def test_rule_confusion_helper_matches_bayes_rates_1d(solved):
    """Self-check of the test's integrator: the target's rule on the target reproduces the library."""
    _, sols = solved
    target = sols["all"].target
    for cost in COSTS:
        ref = np.asarray(bayes_rates_1d(target, jnp.asarray(cost)).confusion)
        for b in range(B):
            np.testing.assert_allclose(rule_confusion(target[b], target[b], cost), ref[b], atol=1e-12)


@pytest.mark.parametrize("intervention", ["affirmative", "all"])
def test_bayes_rule_of_target_on_original_obeys_bounds(solved, intervention):
    fam, sols = solved
    sol = sols[intervention]
    assert bool(np.all(np.asarray(sol.converged)))
    cert = certificate(sol)
    target = sol.target
    q = np.asarray(fam.priors)
    base = np.asarray(fam.base_rates)
    worst_eo, worst_bound = 0.0, 0.0
    for cost in COSTS:
        on_target = bayes_rates_1d(target, jnp.asarray(cost))
        conf_t = np.asarray(on_target.confusion)  # [B, m, k, k]
        assert np.max(np.asarray(on_target.eo_gap)) < 1e-9  # exactly fair on θ̃
        assert np.max(np.asarray(on_target.dp_gap)) < 1e-9
        for b in range(B):
            conf = rule_confusion(target[b], fam[b], cost)  # the same rule, on θ
            c = jax.tree_util.tree_map(lambda x: np.asarray(x)[b], cert)
            # per-subgroup transfer, every entry of row i
            diff = np.abs(conf - conf_t[b])  # [m, k, k]
            assert np.all(diff <= c.tpr_transfer.T[:, :, None] + 1e-12)
            # one-vs-rest FPR (k = 2: P(h=1 | Y=0, A=a)) and positive-rate transfer
            fpr = conf[:, 0, 1]
            assert np.all(np.abs(fpr - conf_t[b][:, 0, 1]) <= c.fpr_transfer[1] + 1e-12)
            pos = np.einsum("ia,ai->a", base[b], conf[:, :, 1])
            pos_t = np.einsum("ia,ai->a", np.asarray(target.base_rates)[b], conf_t[b][:, :, 1])
            assert np.all(np.abs(pos - pos_t) <= c.group_transfer + 1e-12)
            # gaps on θ of the rule exactly fair on θ̃
            tpr = conf[:, 1, 1]
            eo, fgap, dp = np.ptp(tpr), np.ptp(fpr), np.ptp(pos)
            assert eo <= c.eo_bound + 1e-12
            assert fgap <= c.fpr_bound + 1e-12
            assert max(eo, fgap) <= c.equalized_odds_bound + 1e-12
            assert dp <= c.dp_bound + 1e-12
            # error transfer (costs in [0, 1])
            err = np.einsum("ia,ij,aij->", q[b], cost, conf)
            err_t = float(np.asarray(on_target.error)[b])
            assert abs(err - err_t) <= c.tv_bound + 1e-12
            worst_eo, worst_bound = max(worst_eo, eo), max(worst_bound, float(c.eo_bound))
    # the check is not vacuous: the rule is visibly unfair on θ and the bounds are informative
    assert worst_eo > 0.01
    assert worst_bound < 1.0


def test_certificate_identities_and_jit(solved):
    fam, sols = solved
    sol = sols["all"]
    cert = certificate(sol)
    assert isinstance(cert, Certificate)
    assert cert.kl.shape == (B,) and cert.tpr_transfer.shape == (B, 2, 2)
    assert cert.tpr_gap_bound.shape == (B, 2) and cert.group_transfer.shape == (B, 2)
    K = np.asarray(sol.subgroup_kl)
    np.testing.assert_allclose(cert.tpr_transfer, np.sqrt(K / 2), rtol=1e-12)
    np.testing.assert_allclose(cert.tv_bound, np.sqrt(np.asarray(sol.kl) / 2), rtol=1e-12)
    # k = 2: FPR of class 1 is a rate of class 0
    np.testing.assert_allclose(cert.fpr_transfer[:, 1], cert.tpr_transfer[:, 0], rtol=1e-12)
    # two groups: the pair bound is the sum of both
    np.testing.assert_allclose(cert.eo_bound, np.sqrt(K[:, 1, 0] / 2) + np.sqrt(K[:, 1, 1] / 2), rtol=1e-12)
    np.testing.assert_allclose(cert.fpr_bound, np.sqrt(K[:, 0, 0] / 2) + np.sqrt(K[:, 0, 1] / 2), rtol=1e-12)
    # chain rule: the group-conditional KLs average (over the preserved group marginals) to the KL
    p = np.asarray(fam.group_marginals)
    kl_a = 2 * np.asarray(cert.group_transfer) ** 2
    np.testing.assert_allclose(np.sum(p * kl_a, axis=-1), sol.kl, rtol=1e-10)
    # jittable, pytree
    jitted = jax.jit(certificate)(sol)
    for x, y in zip(jitted, cert):
        np.testing.assert_allclose(x, y, rtol=1e-12)
    # affirmative: the reference group does not move
    aff = certificate(sols["affirmative"])
    np.testing.assert_allclose(np.asarray(aff.tpr_transfer)[:, :, 0], 0.0, atol=1e-7)  # sqrt of rounding


def test_summary_and_errors(solved):
    _, sols = solved
    cert = certificate(sols["affirmative"])
    text = str(cert)
    assert "ΔEO" in text and "equalized odds" in text and "TV" in text and "batch (6,)" in text
    one = jax.tree_util.tree_map(lambda x: x[0], cert)
    assert f"{float(one.eo_bound):.4g}" in one.summary()
    with pytest.raises(TypeError, match="Solution"):
        certificate(sols["affirmative"].target)


def test_multiclass_per_class_bounds():
    """k = 3, m = 3: per-class TPR gaps on θ of the target's rule are within the certified bounds."""
    rng = np.random.default_rng(3)
    fam = random_family(rng, 3, 3, 1, batch=(2,))
    sol = js.nearest_ideal(fam, intervention="affirmative", form="affine")
    cert = certificate(sol)
    assert cert.tpr_gap_bound.shape == (2, 3) and cert.fpr_transfer.shape == (2, 3, 3)
    cost = 1.0 - np.eye(3)
    base = np.asarray(fam.base_rates)
    for b in range(2):
        conf = rule_confusion(sol.target[b], fam[b], cost)  # [m, k, k]
        c = jax.tree_util.tree_map(lambda x: np.asarray(x)[b], cert)
        gaps = np.ptp(np.diagonal(conf, axis1=1, axis2=2), axis=0)  # [k]
        assert np.all(gaps <= c.tpr_gap_bound + 1e-12)
        assert np.max(np.ptp(conf, axis=0)) <= c.eo_bound + 1e-12  # every confusion entry
        assert np.sqrt(np.mean(gaps**2)) <= c.rms_tpr_gap_bound + 1e-12
        # one-vs-rest FPR of class j: P(h=j | Y≠j, A=a)
        for j in range(3):
            others = [i for i in range(3) if i != j]
            w = base[b][others] / base[b][others].sum(axis=0)  # [k-1, m]
            fpr = np.einsum("ia,ai->a", w, conf[:, others, j])
            assert np.ptp(fpr) <= c.fpr_gap_bound[j] + 1e-12
        assert np.max(gaps) > 1e-3
