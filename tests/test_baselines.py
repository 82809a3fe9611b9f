"""Baselines (MeanMatching, MiMiC, LEACE, Reweighing): properties, oracles, interface and input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxsteer import NotFittedError
from jaxsteer.baselines import LEACE, MeanMatching, MiMiC, Reweighing

ALL = (MeanMatching, MiMiC, LEACE, Reweighing)
GROUPS = np.array(["blue", "green", "red"])
CLASSES = np.array(["no", "yes"])


def make_data(rng, n=600, d=4, m=3, shared_cov=False, p=None):
    """Groups with different means (and covariances unless ``shared_cov``), labels depending on x."""
    p = np.full(m, 1.0 / m) if p is None else np.asarray(p)
    a = rng.choice(m, size=n, p=p)
    a[:m] = np.arange(m)  # every group present
    shift = rng.normal(scale=1.5, size=(m, d))
    if shared_cov:
        L = np.tril(rng.normal(size=(d, d))) + 2.0 * np.eye(d)
        X = rng.normal(size=(n, d)) @ L.T + shift[a]
    else:
        L = np.tril(rng.normal(size=(m, d, d))) + 2.0 * np.eye(d)
        X = np.einsum("nij,nj->ni", L[a], rng.normal(size=(n, d))) + shift[a]
    y = (X[:, 0] + rng.normal(size=n) > np.median(X[:, 0])).astype(int)
    y[: 2 * m] = np.repeat([0, 1], m)  # every class × group cell present
    return X, y, a


def str_data(rng, **kw):
    X, y, a = make_data(rng, **kw)
    return X, CLASSES[y], GROUPS[a]


def weighted_cov(X, Z, w):
    p = w / w.sum()
    Xc, Zc = X - p @ X, Z - p @ Z
    return (Xc * p[:, None]).T @ Zc


def onehot(a, m):
    return (np.asarray(a)[:, None] == np.arange(m)[None, :]).astype(float)


# -- mean matching -----------------------------------------------------------------------------------


def test_mean_matching_equalises_group_means(rng):
    X, y, a = str_data(rng, p=[0.2, 0.5, 0.3])
    mm = MeanMatching().fit(X, y, a)
    assert mm.reference_ == "green"  # most frequent
    Xs = mm.transform(X, a)
    target = X[a == "green"].mean(0)
    for g in GROUPS:
        np.testing.assert_allclose(Xs[a == g].mean(0), target, atol=1e-12)
    np.testing.assert_array_equal(Xs[a == "green"], X[a == "green"])
    np.testing.assert_array_equal(np.asarray(mm.group_map_.A), np.broadcast_to(np.eye(4), (3, 4, 4)))
    # explicit reference, weighted means
    w = rng.uniform(0.1, 2.0, size=len(a))
    Xs = MeanMatching(reference="red").fit_transform(X, None, a, sample_weight=w)
    ref = np.average(X[a == "red"], axis=0, weights=w[a == "red"])
    for g in GROUPS:
        np.testing.assert_allclose(np.average(Xs[a == g], axis=0, weights=w[a == g]), ref, atol=1e-12)


def test_mean_matching_round_trip_and_jax_io(rng):
    X, y, a = str_data(rng)
    mm = MeanMatching().fit(X, y, a)
    Xs = mm.transform(X, a)
    assert isinstance(Xs, np.ndarray)
    np.testing.assert_allclose(mm.inverse_transform(Xs, a), X, atol=1e-12)
    Xj = mm.transform(jnp.asarray(X), a)
    assert isinstance(Xj, jax.Array)
    np.testing.assert_allclose(np.asarray(Xj), Xs, atol=1e-14)


# -- MiMiC -------------------------------------------------------------------------------------------


def test_mimic_maps_group_moments_onto_reference(rng):
    X, y, a = str_data(rng, p=[0.5, 0.3, 0.2])
    mi = MiMiC().fit(X, y, a)  # Ledoit–Wolf: exact on the (shrunk) estimates
    ref = list(GROUPS).index(mi.reference_)
    assert mi.reference_ == "blue"
    A, b = np.asarray(mi.group_map_.A), np.asarray(mi.group_map_.b)
    mu, S = np.asarray(mi.means_), np.asarray(mi.covs_)
    for g in range(3):
        np.testing.assert_allclose(A[g] @ mu[g] + b[g], mu[ref], atol=1e-10)
        np.testing.assert_allclose(A[g] @ S[g] @ A[g].T, S[ref], atol=1e-10)
        np.testing.assert_allclose(A[g], A[g].T, atol=1e-12)  # Monge maps are symmetric PD
        assert np.all(np.linalg.eigvalsh(A[g]) > 0)
    np.testing.assert_array_equal(A[ref], np.eye(4))
    np.testing.assert_array_equal(b[ref], 0.0)
    # No shrinkage: the transformed sample moments equal the reference group's sample moments.
    Xs = MiMiC(reference="red", shrinkage=None).fit_transform(X, y, a)
    for g in GROUPS:
        np.testing.assert_allclose(Xs[a == g].mean(0), X[a == "red"].mean(0), atol=1e-10)
        np.testing.assert_allclose(np.cov(Xs[a == g].T), np.cov(X[a == "red"].T), atol=1e-10)
    # W2 distances: zero for the reference, equal to the closed form for Gaussians elsewhere.
    w2 = mi.w2_distances()
    assert w2[ref] == pytest.approx(0.0, abs=1e-7)
    for g in range(3):
        r = scipy.linalg.sqrtm(scipy.linalg.sqrtm(S[ref]) @ S[g] @ scipy.linalg.sqrtm(S[ref])).real
        closed = np.sum((mu[g] - mu[ref]) ** 2) + np.trace(S[g] + S[ref] - 2 * r)
        assert w2[g] ** 2 == pytest.approx(closed, rel=1e-8, abs=1e-10)


def test_mimic_round_trip_weights_and_label_free(rng):
    X, y, a = str_data(rng)
    w = rng.uniform(0.5, 2.0, size=len(a))
    mi = MiMiC(shrinkage=0.1).fit(X, None, a, sample_weight=w)
    assert mi.classes_ is None
    Xs = mi.transform(X, a)
    np.testing.assert_allclose(mi.inverse_transform(Xs, a), X, atol=1e-10)
    Xj = mi.inverse_transform(jnp.asarray(Xs), a)
    assert isinstance(Xj, jax.Array)
    # weighted means are carried onto the reference's weighted mean
    ref = mi.reference_
    target = np.average(X[a == ref], axis=0, weights=w[a == ref])
    for g in GROUPS:
        np.testing.assert_allclose(np.average(Xs[a == g], axis=0, weights=w[a == g]), target, atol=1e-10)


# -- LEACE -------------------------------------------------------------------------------------------


def leace_oracle(X, a, m, w=None):
    """Least-squares eraser from the Lagrangian of min tr((P − I) Σ (P − I)ᵀ) s.t. P Σ_xz = 0.

    Row j of P minimises (p − e_j)ᵀ Σ (p − e_j) subject to Σ_xzᵀ p = 0, so
    P = I − C (Cᵀ Σ⁺ C)⁺ Cᵀ Σ⁺ with C = Σ_xz (independent of any whitening).
    """
    w = np.ones(len(a)) if w is None else w
    p = w / w.sum()
    mu = p @ X
    S = weighted_cov(X, X, w)
    C = weighted_cov(X, onehot(a, m), w)
    Sp = np.linalg.pinv(S, rcond=1e-10, hermitian=True)
    E = C @ np.linalg.pinv(C.T @ Sp @ C, rcond=1e-10) @ C.T @ Sp
    P = np.eye(X.shape[1]) - E
    return P, mu - P @ mu


@pytest.mark.parametrize("m", [2, 3])
def test_leace_erases_linear_information_exactly(rng, m):
    X, y, a = make_data(rng, n=500, d=5, m=m)
    w = rng.uniform(0.2, 3.0, size=len(a))
    for weights in (None, w):
        le = LEACE().fit(X, y, a, sample_weight=weights)
        Xe = le.transform(X)
        ww = np.ones(len(a)) if weights is None else weights
        assert np.max(np.abs(weighted_cov(Xe, onehot(a, m), ww))) < 1e-10
        assert le.rank_ == m - 1 and le.cov_rank_ == 5
        # the oracle from the constrained least-squares problem (no whitening)
        P, c = leace_oracle(X, a, m, weights)
        np.testing.assert_allclose(np.asarray(le.eraser_.A), P, atol=1e-10)
        np.testing.assert_allclose(np.asarray(le.eraser_.b), c, atol=1e-10)
        mse = np.sum(ww[:, None] * (Xe - X) ** 2) / ww.sum()
        assert le.mean_sq_edit_ == pytest.approx(mse, rel=1e-9)


def test_leace_is_least_squares_among_affine_erasers(rng):
    X, y, a = make_data(rng, n=400, d=4, m=3)
    le = LEACE().fit(X, y, a)
    A, b = np.asarray(le.eraser_.A), np.asarray(le.eraser_.b)
    C = weighted_cov(X, onehot(a, 3), np.ones(len(a)))
    Xc = X - X.mean(0)

    def cost(P):  # E‖x − (P(x − μ) + μ)‖²; shifting the offset only adds a constant
        return np.mean(np.sum((Xc @ (P - np.eye(4)).T) ** 2, axis=1))

    base = cost(A)
    np.testing.assert_allclose(A @ C, 0.0, atol=1e-10)  # feasible
    np.testing.assert_allclose(b, X.mean(0) - A @ X.mean(0), atol=1e-12)
    # Every other feasible linear part P = A + R (I − C C⁺) costs more.
    Q = np.eye(4) - C @ np.linalg.pinv(C)
    for _ in range(20):
        R = rng.normal(scale=0.1, size=(4, 4)) @ Q
        np.testing.assert_allclose((A + R) @ C, 0.0, atol=1e-10)
        assert cost(A + R) > base
    # the eraser is an (oblique) projection: erasing twice is erasing once
    np.testing.assert_allclose(A @ A, A, atol=1e-10)


def test_leace_probe_at_chance_on_held_out_data(rng):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    n, d = 4000, 6
    X, y, a = make_data(rng, n=2 * n, d=d, m=2, shared_cov=True, p=[0.65, 0.35])
    tr, te = slice(0, n), slice(n, 2 * n)
    raw = LogisticRegression(max_iter=2000).fit(X[tr], a[tr])
    assert raw.score(X[te], a[te]) > 0.85  # the group is linearly visible before erasure
    le = LEACE().fit(X[tr], None, a[tr])
    Xe_tr, Xe_te = le.transform(X[tr]), le.transform(X[te], a[te])
    # tol small: the erased X has a constant direction (v·x' = v·b), along which the flat
    # (coefficient, intercept) trade-off stalls L-BFGS at its default tolerance.
    probe = LogisticRegression(max_iter=5000, tol=1e-8).fit(Xe_tr, a[tr])
    majority = max(np.mean(a[te] == 0), np.mean(a[te] == 1))
    assert probe.score(Xe_te, a[te]) == pytest.approx(majority)  # predicts the majority group
    # the probe learns nothing: its coefficients vanish, its scores are constant on held-out data,
    # and its held-out loss is the constant predictor's
    assert np.max(np.abs(probe.coef_)) < 1e-5
    assert np.std(probe.decision_function(Xe_te)) < 1e-6
    const = np.full(n, np.mean(a[tr] == 1))
    assert log_loss(a[te], probe.predict_proba(Xe_te)[:, 1]) == pytest.approx(log_loss(a[te], const), abs=2e-3)


def test_leace_rank_deficient_covariance(rng):
    X, y, a = make_data(rng, n=300, d=3, m=3)
    X = np.column_stack([X, X[:, 0] - 2.0 * X[:, 1], X[:, 2]])  # rank 3 in d = 5
    le = LEACE().fit(X, y, a)
    assert le.cov_rank_ == 3 and le.rank_ == 2
    Xe = le.transform(X)
    assert np.all(np.isfinite(Xe))
    assert np.max(np.abs(weighted_cov(Xe, onehot(a, 3), np.ones(len(a))))) < 1e-10
    P, c = leace_oracle(X, a, 3)
    np.testing.assert_allclose(np.asarray(le.eraser_.A), P, atol=1e-8)
    np.testing.assert_allclose(np.asarray(le.eraser_.b), c, atol=1e-8)
    # Nothing to erase: identical group means give (numerically) the identity.
    Xs = MeanMatching().fit_transform(X, y, a)
    le0 = LEACE().fit(Xs, y, a)
    np.testing.assert_allclose(le0.transform(Xs), Xs, atol=1e-8)


def test_leace_interface(rng):
    X, y, a = str_data(rng)
    le = LEACE().fit(X, y, a)
    Xe = le.transform(X)
    np.testing.assert_array_equal(le.transform(X, a, y), Xe)  # a and y are only checked
    assert isinstance(le.transform(jnp.asarray(X)), jax.Array)
    np.testing.assert_allclose(le.fit_transform(X, y, a), Xe, atol=1e-14)
    with pytest.raises(NotImplementedError, match="not invertible"):
        le.inverse_transform(Xe, a)
    with pytest.raises(ValueError, match="^a:"):
        le.transform(X, np.where(a == "red", "purple", a))
    with pytest.raises(ValueError, match="^tol:"):
        LEACE(tol=-1.0)


def test_leace_agrees_with_concept_erasure(rng):
    torch = pytest.importorskip("torch")
    ce = pytest.importorskip("concept_erasure")
    X, y, a = make_data(rng, n=500, d=5, m=3)
    Z = torch.from_numpy(onehot(a, 3))
    fitter = ce.LeaceFitter(
        5, 3, dtype=torch.float64, shrinkage=False, constrain_cov_trace=False, svd_tol=1e-12
    )
    fitter.update(torch.from_numpy(X), Z)
    theirs = fitter.eraser(torch.from_numpy(X)).numpy()
    ours = LEACE().fit(X, y, a).transform(X)
    np.testing.assert_allclose(ours, theirs, atol=1e-10)


# -- reweighing --------------------------------------------------------------------------------------


def test_reweighing_formula_and_independence(rng):
    X, y, a = str_data(rng, p=[0.6, 0.3, 0.1])
    for sw in (None, rng.uniform(0.1, 2.0, size=len(a))):
        ww = np.ones(len(a)) if sw is None else sw
        rw = Reweighing().fit(X, y, a, sample_weight=sw)
        w = rw.sample_weight(y, a)
        tot = ww.sum()
        for c in CLASSES:
            for g in GROUPS:
                cell = (y == c) & (a == g)
                expect = (ww[a == g].sum() / tot) * (ww[y == c].sum() / tot) / (ww[cell].sum() / tot)
                np.testing.assert_allclose(w[cell], expect, rtol=1e-12)
        # the reweighted joint factorises and keeps both marginals
        v = ww * w
        J = np.array([[v[(y == c) & (a == g)].sum() for g in GROUPS] for c in CLASSES]) / v.sum()
        py = np.array([ww[y == c].sum() for c in CLASSES]) / tot
        pa = np.array([ww[a == g].sum() for g in GROUPS]) / tot
        np.testing.assert_allclose(J, np.outer(py, pa), atol=1e-12)
    # features unchanged, in the input's array type
    np.testing.assert_array_equal(rw.transform(X, a), X)
    np.testing.assert_array_equal(rw.inverse_transform(X, a), X)
    assert isinstance(rw.transform(jnp.asarray(X), a), jax.Array)
    np.testing.assert_array_equal(rw.fit_transform(X, y, a), X)
    with pytest.raises(ValueError, match="^y:"):
        Reweighing().fit(X, None, a)
    with pytest.raises(ValueError, match="^y, a:"):
        Reweighing().fit(X, np.where(a == "red", "no", y), a)  # empty cell (yes, red)


# -- interface ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_fitted_attributes_string_labels_and_report(rng, cls):
    X, y, a = str_data(rng)
    est = cls().fit(X, y, a)
    np.testing.assert_array_equal(est.classes_, CLASSES)
    np.testing.assert_array_equal(est.groups_, GROUPS)
    assert est.n_features_in_ == 4
    if cls is not Reweighing:
        np.testing.assert_array_equal(est.sample_weight(y, a), np.ones(len(a)))
    text = est.report()
    assert isinstance(text, str) and text.startswith(cls.__name__) and "'red'" in text
    out = est.fit_transform(list(map(list, X)), y, a)  # lists count as numpy input
    assert isinstance(out, np.ndarray) and out.shape == X.shape


@pytest.mark.parametrize("cls", ALL)
def test_get_set_params(cls):
    est = cls()
    params = est.get_params()
    assert set(params) == {MeanMatching: {"reference"}, MiMiC: {"reference", "shrinkage"},
                           LEACE: {"tol"}, Reweighing: set()}[cls]
    assert cls(**params).get_params() == params
    with pytest.raises(ValueError, match="^bogus:"):
        est.set_params(bogus=1)
    assert repr(est) == f"{cls.__name__}()"


def test_set_params_values():
    mi = MiMiC().set_params(reference="red", shrinkage=None)
    assert mi.get_params() == {"reference": "red", "shrinkage": None}
    assert repr(mi) == "MiMiC(reference='red', shrinkage=None)"
    with pytest.raises(ValueError, match="^shrinkage:"):
        MiMiC(shrinkage="bogus")
    with pytest.raises(ValueError, match="^shrinkage:"):
        mi.set_params(shrinkage=1.5)
    assert LEACE().set_params(tol=1e-8).tol == 1e-8


@pytest.mark.parametrize("cls", ALL)
def test_not_fitted(rng, cls):
    X, y, a = str_data(rng, n=20)
    est = cls()
    for call in (lambda: est.transform(X, a), est.report, lambda: est.sample_weight(y, a)):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


@pytest.mark.parametrize("cls", ALL)
def test_bad_inputs_name_the_argument(rng, cls):
    X, y, a = str_data(rng, n=60)
    est = cls().fit(X, y, a)
    with pytest.raises(ValueError, match="^X:.*4"):
        est.transform(X[:, :3], a)
    with pytest.raises(ValueError, match="^a:.*'purple'"):
        est.transform(X, np.where(a == "red", "purple", a))
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="^X:.*NaN"):
        est.transform(Xn, a)
    with pytest.raises(ValueError, match="^X:.*NaN"):
        cls().fit(Xn, y, a)
    with pytest.raises(ValueError, match="^a:"):
        cls().fit(X, y, a[:-1])
    with pytest.raises(ValueError, match="^a:.*single group"):
        cls().fit(X, y, np.full(len(a), "red"))
    with pytest.raises(ValueError, match="^y:"):
        est.transform(X, a, np.where(y == "no", "maybe", y))
    with pytest.raises(ValueError, match="^sample_weight:"):
        cls().fit(X, y, a, sample_weight=-np.ones(len(a)))
    with pytest.raises(ValueError, match="^X:"):
        cls().fit(X[:, 0], y, a)


@pytest.mark.parametrize("cls", [MeanMatching, MiMiC])
def test_reference_errors_and_group_requirements(rng, cls):
    X, y, a = str_data(rng, n=60)
    with pytest.raises(ValueError, match="^reference:.*'purple'"):
        cls(reference="purple").fit(X, y, a)
    with pytest.raises(ValueError, match="^a:"):
        cls().fit(X, y, a).transform(X, None)


def test_mimic_needs_two_rows_per_group(rng):
    X, y, a = str_data(rng, n=60)
    a = a.copy()
    a[a == "red"] = "blue"
    a[0] = "red"
    with pytest.raises(ValueError, match="^a:.*'red'"):
        MiMiC().fit(X, y, a)


def test_sample_weight_inputs(rng):
    X, y, a = str_data(rng, n=60)
    le = LEACE().fit(X, None, a)
    np.testing.assert_array_equal(le.sample_weight(None, a), np.ones(60))
    np.testing.assert_array_equal(le.sample_weight(y, None), np.ones(60))  # fitted without y: shape only
    with pytest.raises(ValueError, match="^a:"):
        le.sample_weight(None, None)
    with pytest.raises(ValueError, match="^a:"):
        le.sample_weight(y, np.where(a == "red", "purple", a))
    rw = Reweighing().fit(X, y, a)
    with pytest.raises(ValueError, match="^y:"):
        rw.sample_weight(None, a)
    with pytest.raises(ValueError, match="^a:"):
        rw.sample_weight(y, a[:-1])
    with pytest.raises(ValueError, match="^y:.*'maybe'"):
        rw.sample_weight(np.where(y == "no", "maybe", y), a)
