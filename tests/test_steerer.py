"""``Steerer``: the estimator interface, the pre-processing protocol on synthetic Gaussian data, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import PolynomialFeatures

import jaxsteer as js
from jaxsteer import ideal, maps, metrics


@pytest.fixture(scope="module")
def biased_data():
    """A biased binary family (d = 3): group 0 has fewer positives and a shifted, rotated class 1."""
    priors = np.array([[0.30, 0.25], [0.10, 0.35]])
    means = np.array([[[0.0, 0.0, 0.0], [0.5, 0.0, 0.2]], [[1.0, 0.8, 0.0], [2.0, 1.5, 0.5]]])
    rot = np.array([[1.0, 0.4, 0.0], [0.4, 1.5, 0.3], [0.0, 0.3, 0.8]])
    covs = np.stack(
        [np.stack([np.eye(3), 1.2 * np.eye(3)]), np.stack([rot, np.diag([0.6, 1.0, 1.4])])]
    )
    fam = js.GaussianFamily(priors, means, covs)
    x, y, a = fam.sample(jax.random.PRNGKey(0), 40_000)
    return fam, np.asarray(x), np.asarray(y), np.asarray(a)


@pytest.fixture(scope="module")
def fitted(biased_data):
    _, x, y, a = biased_data
    n = len(x) // 2
    st = js.Steerer(intervention="affirmative", form="affine", map="align", reference=1).fit(x[:n], y[:n], a[:n])
    return st, n


def test_fit_attributes_and_report(fitted):
    st, _ = fitted
    assert st.n_features_in_ == 3
    np.testing.assert_array_equal(st.classes_, [0, 1])
    np.testing.assert_array_equal(st.groups_, [0, 1])
    assert st.reference_ == 1
    assert bool(st.solution_.converged)
    assert st.subgroup_map_.batch_shape == (2, 2)
    assert st.group_map_.batch_shape == (2,)
    assert st.weights_.shape == (2, 2)
    rep = st.report()
    assert "KL(ideal ‖ fitted)" in rep and "converged=True" in rep and "ΔEO ≤" in rep


def test_fit_transform_pushes_training_subgroups_onto_the_target(fitted, biased_data):
    st, n = fitted
    _, x, y, a = biased_data
    xs = st.transform(x[:n], a[:n], y[:n])
    # The maps carry the fitted subgroup moments exactly onto the ideal family's.
    refit = js.fit_family(xs, y[:n], a[:n], shrinkage=None)
    fam0 = js.fit_family(x[:n], y[:n], a[:n], shrinkage=None)
    T = st.subgroup_map_
    np.testing.assert_allclose(refit.means, jnp.einsum("kmij,kmj->kmi", T.A, fam0.means) + T.b, atol=1e-10)
    np.testing.assert_allclose(refit.means, st.solution_.target.means, atol=1e-10)
    # Covariances: the sample covariances are pushed by A exactly, and the fitted (Ledoit–Wolf
    # shrunk) model's covariances land exactly on the target's.
    At = jnp.swapaxes(T.A, -1, -2)
    np.testing.assert_allclose(refit.covs, T.A @ fam0.covs @ At, atol=1e-10)
    np.testing.assert_allclose(T.A @ st.family_.covs @ At, st.solution_.target.covs, atol=1e-10)


def test_steered_data_group_is_unpredictable_in_template_coordinates(fitted, biased_data):
    """After the subgroup maps and `align`, a quadratic probe for the group within each class is at chance."""
    st, n = fitted
    _, x, y, a = biased_data
    z = np.asarray(maps.align_maps(st.solution_).apply(st.transform(x, a, y), a))
    poly = PolynomialFeatures(2)
    for i in (0, 1):
        tr = (y[:n] == i)
        te = (y[n:] == i)
        probe = LogisticRegression(max_iter=2000).fit(poly.fit_transform(z[:n][tr]), a[:n][tr])
        acc = probe.score(poly.transform(z[n:][te]), a[n:][te])
        chance = max(np.mean(a[n:][te]), 1 - np.mean(a[n:][te]))
        assert acc <= chance + 0.015, (i, acc, chance)
        # Before steering the group is clearly predictable.
        raw = LogisticRegression(max_iter=2000).fit(poly.fit_transform(x[:n][tr]), a[:n][tr])
        assert raw.score(poly.transform(x[n:][te]), a[n:][te]) > chance + 0.05


def test_bayes_rule_of_steered_data_is_fair(fitted, biased_data):
    """The Bayes rule refitted on steered (and weighted) data has ~0 equal-opportunity and DP gaps."""
    st, n = fitted
    _, x, y, a = biased_data
    xs = st.transform(x[n:], a[n:], y[n:])
    w = st.sample_weight(y[n:], a[n:])
    fam_s = js.fit_family(st.transform(x[:n], a[:n], y[:n]), y[:n], a[:n], sample_weight=st.sample_weight(y[:n], a[:n]))
    pred = ideal.bayes_predict(fam_s, xs, a[n:])
    eo = float(metrics.equal_opportunity_difference(y[n:], pred, a[n:], sample_weight=w))
    dp = float(metrics.demographic_parity_difference(pred, a[n:], sample_weight=w))
    pred_raw = ideal.bayes_predict(st.family_, x[n:], a[n:])
    eo_raw = float(metrics.equal_opportunity_difference(y[n:], pred_raw, a[n:]))
    assert eo < 0.03 and dp < 0.03, (eo, dp)
    assert eo_raw > 0.1


def test_round_trips_and_input_types(fitted, biased_data):
    st, _ = fitted
    _, x, y, a = biased_data
    x, y, a = x[:200], y[:200], a[:200]
    for yy in (None, y):
        out = st.transform(x, a, yy)
        assert isinstance(out, np.ndarray)
        np.testing.assert_allclose(st.inverse_transform(out, a, yy), x, atol=1e-10)
    out_j = st.transform(jnp.asarray(x), jnp.asarray(a))
    assert isinstance(out_j, jax.Array)
    np.testing.assert_allclose(out_j, st.transform(x, a), atol=1e-12)
    assert isinstance(st.transform(x.tolist(), a.tolist()), np.ndarray)


def test_string_labels_and_groups(biased_data):
    _, x, y, a = biased_data
    x, y, a = x[:4000], y[:4000], a[:4000]
    lab, grp = np.array(["low", "high"])[y], np.array(["F", "M"])[a]
    st = js.Steerer(reference="M", map="moment").fit(x, lab, grp)
    codes = js.Steerer(reference=1, map="moment").fit(x, (1 - y), a)  # "high" < "low": codes flip
    np.testing.assert_array_equal(st.classes_, ["high", "low"])
    np.testing.assert_allclose(st.transform(x, grp), codes.transform(x, a), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(st.sample_weight(lab, grp), codes.sample_weight(1 - y, a))
    assert st.reference_ == "M"
    with pytest.raises(ValueError, match=r"^a: value 'X' \(entry \d+\) was not seen in fit \(known: \['F', 'M'\]\)"):
        st.transform(x[:3], np.array(["F", "M", "X"]))


@pytest.mark.parametrize("kind", ["moment", "posterior"])
def test_map_kinds(kind, biased_data):
    _, x, y, a = biased_data
    x, y, a = x[:4000], y[:4000], a[:4000]
    st = js.Steerer(map=kind).fit(x, y, a)
    out = st.transform(x, a)
    assert out.shape == x.shape and np.all(np.isfinite(out))
    want = maps.group_maps(st.family_, st.solution_, kind).apply(x, a)
    np.testing.assert_allclose(out, want, rtol=1e-12)


def test_lognormal_steerer(biased_data):
    _, x, y, a = biased_data
    x, y, a = np.exp(x[:4000]), y[:4000], a[:4000]
    st = js.Steerer(lognormal=True, map="align").fit(x, y, a)
    out = st.fit_transform(x, y, a)
    assert np.all(out > 0)
    gauss = js.Steerer(map="align").fit(np.log(x), y, a)
    np.testing.assert_allclose(np.log(out), gauss.transform(np.log(x), a, y), rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="X: a log-normal steerer needs strictly positive"):
        st.transform(-x, a)


def test_params_and_errors(biased_data):
    _, x, y, a = biased_data
    st = js.Steerer()
    assert st.get_params()["form"] == "affine"
    assert st.set_params(form="symmetric") is st and st.form == "symmetric"
    assert repr(st) == "Steerer(form='symmetric')"
    with pytest.raises(ValueError, match="colour: not a parameter of Steerer"):
        st.set_params(colour="red")
    with pytest.raises(ValueError, match="map: unknown value 'wasserstein'"):
        js.Steerer(map="wasserstein")
    with pytest.raises(ValueError, match="intervention: unknown value"):
        st.set_params(intervention="some")
    st = js.Steerer()
    with pytest.raises(js.NotFittedError, match="not fitted yet"):
        st.transform(x, a)
    with pytest.raises(ValueError, match="a: found a single group"):
        st.fit(x[:100], y[:100], np.zeros(100, int))
    with pytest.raises(ValueError, match="y: expected a 1-D array of length 100"):
        st.fit(x[:100], y[:99], a[:100])
    bad = x[:100].copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"^X: row 3, column 1 is nan; drop or impute"):
        st.fit(bad, y[:100], a[:100])
    with pytest.raises(ValueError, match="reference: 7 is not a group"):
        js.Steerer(reference=7).fit(x[:100], y[:100], a[:100])
    st.fit(x[:2000], y[:2000], a[:2000])
    with pytest.raises(ValueError, match="X: has 2 features but the steerer was fitted with 3"):
        st.transform(x[:5, :2], a[:5])


def test_transform_keeps_a_jax_inputs_dtype(fitted, biased_data):
    """Work is done in float64; JAX input comes back in its own dtype, numpy input as float64."""
    st, n = fitted
    _, x, y, a = biased_data
    ref = st.transform(x[n:n + 200], a[n:n + 200])
    out32 = st.transform(jnp.asarray(x[n:n + 200], jnp.float32), a[n:n + 200])
    assert ref.dtype == np.float64 and out32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out32), ref, rtol=1e-5, atol=1e-5)
    sub32 = st.transform(jnp.asarray(x[n:n + 200], jnp.float32), a[n:n + 200], y[n:n + 200])
    assert sub32.dtype == jnp.float32


def test_estimators_work_in_float64_with_x64_off():
    """A fit with the global flag off (JAX's default) gives the float64 answer: the family's
    statistics and the solution are float64 and match a fit with the flag on."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 4)) * np.array([1.0, 1e-2, 1.0, 1.0])  # a small-variance feature
    y, a = rng.integers(0, 2, 3000), rng.integers(0, 2, 3000)
    x[:, 0] += y + 0.5 * a
    on = js.Steerer().fit(x, y, a)
    with jax.enable_x64(False):
        off = js.Steerer().fit(x, y, a)
        mm = js.baselines.MiMiC().fit(x, y, a)
        z = off.transform(x, a)
    assert off.family_.covs.dtype == jnp.float64 and mm.transform(x, a).dtype == np.float64
    np.testing.assert_allclose(float(off.solution_.kl), float(on.solution_.kl), rtol=1e-10)
    np.testing.assert_allclose(z, on.transform(x, a), rtol=1e-9, atol=1e-9)


def test_fitted_maps_apply_at_default_float32_without_warnings(fitted, biased_data):
    """The fitted maps are numpy float64: applied directly (or turned into an nn.Steer) with the
    global flag off they compute in float32, warn about nothing, and match the float64 transform."""
    import warnings

    from jaxsteer.nn import Steer

    st, n = fitted
    _, x, y, a = biased_data
    xs, ys, as_ = x[n:n + 300], y[n:n + 300], a[n:n + 300]
    want, want_sub = st.transform(xs, as_), st.transform(xs, as_, ys)
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("error")
        x32 = jnp.asarray(xs, jnp.float32)
        out = st.group_map_.apply(x32, jnp.asarray(as_))
        sub = st.subgroup_map_.apply(x32, jnp.asarray(ys), jnp.asarray(as_))
        steer = Steer.from_steerer(st)
        via_nn = steer(x32, jnp.asarray(as_))
    assert out.dtype == sub.dtype == via_nn.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(sub), want_sub, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(via_nn), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["moment", "posterior"])
def test_with_map_equals_a_fit_with_that_map(kind, fitted, biased_data):
    """with_map swaps the label-free map without solving again: the same transform as a Steerer
    fitted with that map from the start; the original is unchanged."""
    st, n = fitted
    _, x, y, a = biased_data
    other = st.with_map(kind)
    assert other.map == kind and st.map == "align" and other.solution_ is st.solution_
    fresh = js.Steerer(intervention="affirmative", form="affine", map=kind, reference=1).fit(x[:n], y[:n], a[:n])
    xs, as_ = x[n:n + 300], a[n:n + 300]
    np.testing.assert_allclose(other.transform(xs, as_), fresh.transform(xs, as_), rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="map: unknown group map 'wasserstein'"):
        st.with_map("wasserstein")
    with pytest.raises(js.NotFittedError):
        js.Steerer().with_map("moment")
