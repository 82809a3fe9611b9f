"""Steerer.partial_fit and Steerer.from_stats: data that does not fit in memory or lives on several hosts.

Each result is compared with ``Steerer.fit`` on all rows at once (a different code path: one
``fit_family`` call, a cold solve).
"""

import numpy as np
import pytest

import jaxsteer as js
from jaxsteer import estimate

CLASSES, GROUPS = np.array(["hi", "lo"]), np.array(["F", "M", "X"])


def _data(n=2400, d=4, seed=0):
    """Anisotropic class×group cells, so that the nearest ideal family is well separated from others."""
    rng = np.random.default_rng(seed)
    y = rng.choice(CLASSES, n)
    a = rng.choice(GROUPS, n, p=[0.3, 0.5, 0.2])
    scales = {("hi", "F"): [2.0, 1.0, 0.5, 0.3], ("lo", "F"): [1.0, 1.5, 0.4, 0.8],
              ("hi", "M"): [1.8, 0.9, 0.6, 0.3], ("lo", "M"): [0.9, 1.6, 0.5, 0.7],
              ("hi", "X"): [2.2, 1.2, 0.4, 0.4], ("lo", "X"): [1.1, 1.3, 0.6, 0.9]}
    X = rng.normal(size=(n, d))
    for (c, g), s in scales.items():
        rows = (y == c) & (a == g)
        X[rows] = X[rows] * np.asarray(s)[:d] + (c == "hi") * 0.8 + (g == "F") * np.array([1.0, 0, 0, 0])[:d]
    return X, y, a


def _assert_same_fit(st, full, X, y, a):
    np.testing.assert_allclose(st.family_.means, full.family_.means, rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.family_.covs, full.family_.covs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.family_.priors, full.family_.priors, rtol=0, atol=1e-15)
    np.testing.assert_allclose(float(st.solution_.kl), float(full.solution_.kl), rtol=1e-9)
    np.testing.assert_allclose(st.solution_.target.covs, full.solution_.target.covs, atol=1e-6)
    np.testing.assert_allclose(st.transform(X, a, y), full.transform(X, a, y), atol=1e-6)
    np.testing.assert_allclose(st.sample_weight(y, a), full.sample_weight(y, a), rtol=1e-9)
    assert st.reference_ == full.reference_
    assert st.classes_.tolist() == full.classes_.tolist() and st.groups_.tolist() == full.groups_.tolist()


def test_partial_fit_in_batches_equals_fit():
    X, y, a = _data()
    full = js.Steerer().fit(X, y, a)
    st = js.Steerer()
    for rows in np.array_split(np.arange(len(y)), 7):
        st.partial_fit(X[rows], y[rows], a[rows], classes=["lo", "hi"], groups=GROUPS)
    _assert_same_fit(st, full, X, y, a)


def test_partial_fit_continues_after_fit_and_weights():
    X, y, a = _data()
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    half = len(y) // 2
    full = js.Steerer(form="symmetric").fit(X, y, a, sample_weight=w)
    st = js.Steerer(form="symmetric").fit(X[:half], y[:half], a[:half], sample_weight=w[:half])
    st.partial_fit(X[half:], y[half:], a[half:], sample_weight=w[half:])
    _assert_same_fit(st, full, X, y, a)


def test_from_stats_merged_from_hosts_equals_fit():
    X, y, a = _data()
    yc = np.searchsorted(CLASSES, y)
    ac = np.searchsorted(GROUPS, a)
    hosts = [estimate.from_data(X[r], yc[r], ac[r], 2, 3) for r in np.array_split(np.arange(len(y)), 3)]
    stats = estimate.merge(estimate.merge(hosts[0], hosts[1]), hosts[2])
    st = js.Steerer.from_stats(stats, classes=CLASSES, groups=GROUPS, map="moment")
    full = js.Steerer(map="moment").fit(X, y, a)
    _assert_same_fit(st, full, X, y, a)
    np.testing.assert_allclose(st.transform(X, a), full.transform(X, a), atol=1e-6)  # moment maps: unique
    more = _data(600, seed=5)
    st.partial_fit(*more)  # continues from the merged statistics
    full = js.Steerer(map="moment").fit(np.vstack([X, more[0]]), np.r_[y, more[1]], np.r_[a, more[2]])
    _assert_same_fit(st, full, X, y, a)
    codes = js.Steerer.from_stats(stats)  # no labels: the codes are the labels
    assert codes.classes_.tolist() == [0, 1] and codes.groups_.tolist() == [0, 1, 2]


def test_lognormal_partial_fit():
    X, y, a = _data()
    P = np.exp(X / 3)
    full = js.Steerer(lognormal=True).fit(P, y, a)
    st = js.Steerer(lognormal=True)
    for rows in np.array_split(np.arange(len(y)), 3):
        st.partial_fit(P[rows], y[rows], a[rows], classes=CLASSES, groups=GROUPS)
    _assert_same_fit(st, full, P, y, a)


def test_not_fitted_until_every_cell_has_data():
    X, y, a = _data()
    st = js.Steerer()
    st.partial_fit(X[:3], y[:3], a[:3], classes=CLASSES, groups=GROUPS)
    with pytest.raises(js.NotFittedError, match=r"not fitted yet: class '\w+', group '\w' has 0 rows"):
        st.transform(X, a)
    # enough rows for 2 per cell but fewer than d: Ledoit–Wolf may estimate no shrinkage; either way usable later
    for rows in np.array_split(np.arange(3, len(y)), 4):
        st.partial_fit(X[rows], y[rows], a[rows])
    assert st.transform(X, a).shape == X.shape


def test_partial_fit_label_errors():
    X, y, a = _data()
    st = js.Steerer().partial_fit(X[:200], y[:200], a[:200])
    with pytest.raises(ValueError, match=r"^y: value 'new' \(entry 0\) was not seen"):
        st.partial_fit(X[:5], np.array(["new"] * 5), a[:5])
    with pytest.raises(ValueError, match=r"^X: has 3 features but earlier batches had 4"):
        st.partial_fit(X[:5, :3], y[:5], a[:5])
    stats = estimate.from_data(X, np.searchsorted(CLASSES, y), np.searchsorted(GROUPS, a), 2, 3)
    with pytest.raises(ValueError, match=r"^groups: expected 3 labels"):
        js.Steerer.from_stats(stats, groups=["F", "M"])
    with pytest.raises(ValueError, match=r"^groups: list the labels in sorted order"):
        js.Steerer.from_stats(stats, groups=["M", "F", "X"])
    with pytest.raises(ValueError, match=r"^classes: labels must be distinct"):
        js.Steerer().partial_fit(X, y, a, classes=["hi", "hi", "lo"])
    with pytest.raises(TypeError, match=r"^stats: expected jaxsteer.estimate.SuffStats"):
        js.Steerer.from_stats({"count": 1})


def test_from_stats_warns_on_float32_statistics():
    import jax

    X, y, a = _data()
    with jax.enable_x64(False):
        stats = estimate.from_data(X, np.searchsorted(CLASSES, y), np.searchsorted(GROUPS, a), 2, 3)
    assert stats.mean.dtype == np.float32
    with pytest.warns(RuntimeWarning, match="float32 statistics carry about 7 significant digits"):
        st = js.Steerer.from_stats(stats, classes=CLASSES, groups=GROUPS)
    np.testing.assert_allclose(float(st.solution_.kl), float(js.Steerer().fit(X, y, a).solution_.kl), rtol=1e-4)
