"""The result tuples of jaxsteer.bayes / jaxsteer.ideal (field, name and position access; pytrees under
jit and vmap), the re-exports of jaxsteer.ideal, and the shared argument checks.

The numbers themselves (exact against Monte Carlo, scipy, batching) are tested in test_ideal.py."""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxsteer  # noqa: E402
from jaxsteer import bayes, divergence, ideal  # noqa: E402
from jaxsteer.bayes import BayesRates, BayesRatesMC  # noqa: E402
from jaxsteer.family import GaussianFamily  # noqa: E402
from jaxsteer.ideal import IdealResiduals  # noqa: E402

COST2 = jnp.array([[0.0, 1.0], [2.0, 0.0]])


def _univariate(rng, k, m, batch=()):
    priors = rng.dirichlet(np.ones(k * m) * 3, size=batch).reshape(batch + (k, m))
    return GaussianFamily.univariate(priors, rng.normal(size=batch + (k, m)) * 1.5,
                                     np.exp(rng.normal(size=batch + (k, m)) * 0.4))


def _present(r):
    return [f for f in r._fields if getattr(r, f) is not None]


# ------------------------------------------------------------------------------------------------
# re-exports: jaxsteer.ideal keeps every name it had, as the same objects


@pytest.mark.parametrize("name", ["bayes_rates_1d", "bayes_rates_mc", "bayes_rates_linear", "bayes_predict",
                                  "BayesRates", "BayesRatesMC"])
def test_ideal_reexports_bayes(name):
    assert getattr(ideal, name) is getattr(bayes, name)
    assert name in ideal.__all__ and name in bayes.__all__


def test_ideal_reexports_js_divergence_1d():
    assert ideal.js_divergence_1d is divergence.js_divergence_1d
    assert "js_divergence_1d" in ideal.__all__ and "js_divergence_1d" in divergence.__all__


def test_package_exposes_the_modules():
    assert jaxsteer.bayes is bayes and jaxsteer.divergence is divergence and jaxsteer.ideal is ideal
    assert jaxsteer.is_ideal is ideal.is_ideal
    # the private helpers live in one module, not copied into the three
    for mod in (bayes, ideal, divergence):
        for helper in ("_check_family", "_check_cost", "_check_univariate", "_safe_base_rates"):
            assert not hasattr(mod, helper), (mod.__name__, helper)


# ------------------------------------------------------------------------------------------------
# name, attribute and position access agree


def test_rates_k2_access(rng):
    r = bayes.bayes_rates_1d(_univariate(rng, 2, 3), COST2)
    assert type(r) is BayesRates
    assert _present(r) == list(BayesRates._fields)  # k = 2: every field, tpr/fpr included
    for i, f in enumerate(r._fields):
        assert r[f] is getattr(r, f)
        assert r[i] is getattr(r, f)
    head = r[:2]
    assert type(head) is tuple and head[0] is r.confusion and head[1] is r.positive_rate
    np.testing.assert_array_equal(r["eo_gap"], np.maximum(r.tpr_gap, r.fpr_gap))
    assert set(r._asdict()) == set(BayesRates._fields)
    with pytest.raises(KeyError):
        r["not_a_field"]
    with pytest.raises(IndexError):
        r[len(r._fields)]


def test_rates_k3_have_no_tpr_fpr(rng):
    r = bayes.bayes_rates_1d(_univariate(rng, 3, 2), 1.0 - jnp.eye(3))
    assert r.tpr_gap is None and r.fpr_gap is None
    for name in ("tpr_gap", "fpr_gap"):
        with pytest.raises(KeyError, match=name):
            r[name]  # as the dict of earlier versions, which had no such key
    for f in _present(r):
        assert r[f] is getattr(r, f)
    np.testing.assert_array_equal(r["eo_gap"], np.max(np.asarray(r.confusion_gap)))


@pytest.mark.parametrize("k", [2, 3])
def test_mc_rates_access(rng, k):
    cost = COST2 if k == 2 else 1.0 - jnp.eye(3)
    r = bayes.bayes_rates_mc(_univariate(rng, k, 2), cost, jax.random.PRNGKey(0), n=500)
    assert type(r) is BayesRatesMC
    # the fields of BayesRates come first, in its order
    assert BayesRatesMC._fields[:7] == BayesRates._fields[:7]
    for f in _present(r):
        assert r[f] is getattr(r, f)
    se_fields = [f for f in BayesRatesMC._fields if f.endswith("_se")]
    assert all(getattr(r, f) is not None for f in se_fields if f not in ("tpr_gap_se", "fpr_gap_se"))
    assert (r.tpr_gap_se is None) == (k != 2)
    if k == 2:
        np.testing.assert_array_equal(r["eo_gap_se"], np.where(r.tpr_gap >= r.fpr_gap, r.tpr_gap_se, r.fpr_gap_se))
    else:
        with pytest.raises(KeyError):
            r["tpr_gap_se"]


def test_linear_rates_access(rng):
    S = np.array([[1.0, 0.3], [0.3, 2.0]])
    fam = GaussianFamily(priors=rng.dirichlet(np.ones(4)).reshape(2, 2), means=rng.normal(size=(2, 2, 2)),
                         covs=np.broadcast_to(S, (2, 2, 2, 2)))
    r = bayes.bayes_rates_linear(fam, COST2)
    assert type(r) is BayesRates
    for f in r._fields:
        assert r[f] is getattr(r, f)


def test_ideal_residuals_access(rng):
    fam = _univariate(rng, 2, 3)
    res = ideal.ideal_residuals(fam, form="affine")
    assert type(res) is IdealResiduals
    assert res["priors"] is res.priors is res[0]
    assert res["features"] is res.features is res[1]
    p, f = res  # unpacks as a pair
    assert p is res.priors and f is res.features
    with pytest.raises(KeyError):
        res["symmetric"]


# ------------------------------------------------------------------------------------------------
# pytrees: through jit and vmap, and back


def test_rates_jit_returns_the_tuple(rng):
    fam = _univariate(rng, 2, 3)
    eager = bayes.bayes_rates_1d(fam, COST2)
    jitted = jax.jit(bayes.bayes_rates_1d)(fam, COST2)
    assert type(jitted) is BayesRates
    for f in eager._fields:
        np.testing.assert_allclose(jitted[f], getattr(eager, f), rtol=1e-12, atol=1e-15)
    # as an argument of a jitted function, and through tree_map (None fields stay None)
    assert float(jax.jit(lambda r: r["eo_gap"] - r.eo_gap)(eager)) == 0.0
    k3 = bayes.bayes_rates_1d(_univariate(rng, 3, 2), 1.0 - jnp.eye(3))
    mapped = jax.tree.map(lambda x: 2 * x, k3)
    assert type(mapped) is BayesRates and mapped.tpr_gap is None
    np.testing.assert_allclose(mapped.error, 2 * k3.error)
    assert jax.tree.structure(jax.jit(lambda r: r)(k3)) == jax.tree.structure(k3)


def test_rates_vmap_over_families_and_costs(rng):
    fam = _univariate(rng, 2, 3, batch=(4,))
    batched = bayes.bayes_rates_1d(fam, COST2)
    vmapped = jax.vmap(lambda f: bayes.bayes_rates_1d(f, COST2))(fam)
    assert type(vmapped) is BayesRates
    for f in batched._fields:
        np.testing.assert_allclose(vmapped[f], getattr(batched, f), rtol=1e-12, atol=1e-15)
    # a traced cost matrix
    costs = jnp.stack([COST2, COST2.T, 1.0 - jnp.eye(2)])
    one = fam[0]
    over_costs = jax.jit(jax.vmap(lambda c: bayes.bayes_rates_1d(one, c)))(costs)
    assert over_costs.eo_gap.shape == (3,)
    for j in range(3):
        np.testing.assert_allclose(over_costs.eo_gap[j], bayes.bayes_rates_1d(one, costs[j]).eo_gap, atol=1e-14)


def test_mc_rates_vmap_over_keys(rng):
    fam = _univariate(rng, 2, 2)
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    out = jax.vmap(lambda key: bayes.bayes_rates_mc(fam, COST2, key, n=300))(keys)
    assert type(out) is BayesRatesMC and out.eo_gap_se.shape == (3,)
    for j in range(3):
        single = bayes.bayes_rates_mc(fam, COST2, keys[j], n=300)
        np.testing.assert_allclose(out.confusion[j], single.confusion, atol=1e-12)


def test_ideal_residuals_vmap(rng):
    fam = _univariate(rng, 3, 2, batch=(3,))
    out = jax.vmap(lambda f: ideal.ideal_residuals(f, form="affine"))(fam)
    assert type(out) is IdealResiduals
    ref = ideal.ideal_residuals(fam, form="affine")
    np.testing.assert_allclose(out.features, ref.features, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(out["priors"], ref["priors"], rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------------------------------------
# shared checks


def test_univariate_checks_name_the_alternative(rng):
    fam2d = GaussianFamily(priors=np.full((2, 2), 0.25), means=rng.normal(size=(2, 2, 2)),
                           covs=np.broadcast_to(np.eye(2), (2, 2, 2, 2)))
    with pytest.raises(ValueError, match="bayes_rates_1d: needs a univariate.*bayes_rates_mc"):
        bayes.bayes_rates_1d(fam2d, COST2)
    with pytest.raises(ValueError, match="js_divergence_1d: needs a univariate.*js_divergence"):
        divergence.js_divergence_1d(fam2d, fam2d)
    for fn in (bayes.bayes_rates_1d, bayes.bayes_rates_linear):
        with pytest.raises(TypeError, match="expected a GaussianFamily"):
            fn("not a family", COST2)
    with pytest.raises(ValueError, match=r"cost must have shape \(k, k\)"):
        bayes.bayes_rates_mc(_univariate(rng, 2, 2), jnp.eye(3), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="cost must be finite"):
        bayes.bayes_rates_1d(_univariate(rng, 2, 2), jnp.array([[0.0, jnp.inf], [1.0, 0.0]]))


def test_bayes_predict_group_codes(rng):
    fam = _univariate(rng, 2, 2)
    x = jnp.array([[0.0], [1.0], [2.0]])
    codes = bayes.bayes_predict(fam, x, np.array([0, 1, 1]))
    np.testing.assert_array_equal(bayes.bayes_predict(fam, x, np.array([0.0, 1.0, 1.0])), codes)
    with pytest.raises(ValueError, match=r"a: group code 2 \(entry 1\) is out of range"):
        bayes.bayes_predict(fam, x, np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="a: has length 2 but x has 3 rows"):
        bayes.bayes_predict(fam, x, np.array([0, 1]))
    traced = jax.jit(lambda a: bayes.bayes_predict(fam, x, a))(jnp.array([0, 1, 1]))
    np.testing.assert_array_equal(traced, codes)
