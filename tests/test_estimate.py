import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsteer as js
from jaxsteer import estimate as est
from conftest import random_family

K, M, D = 2, 3, 3


def make_data(rng, n=600, k=K, m=M, d=D, offset=0.0):
    """Labelled data with distinct per-cell means/scales and every cell populated."""
    y = np.concatenate([np.repeat(np.arange(k), m * 3), rng.integers(0, k, n - k * m * 3)])
    a = np.concatenate([np.tile(np.repeat(np.arange(m), 3), k), rng.integers(0, m, n - k * m * 3)])
    perm = rng.permutation(n)
    y, a = y[perm], a[perm]
    loc = rng.normal(size=(k, m, d)) * 3
    mix = rng.normal(size=(k, m, d, d))
    X = loc[y, a] + np.einsum("nij,nj->ni", mix[y, a], rng.standard_t(6, size=(n, d))) + offset
    return X, y, a


def numpy_cell_moments(X, y, a, k, m, w=None):
    """Two-pass weighted reference per cell in extended precision: count, mean, scatter, third, fourth."""
    X = np.asarray(X, np.longdouble)
    w = np.ones(len(X), np.longdouble) if w is None else np.asarray(w, np.longdouble)
    d = X.shape[1]
    out = {f: np.zeros(s, np.longdouble) for f, s in [("count", (k, m)), ("mean", (k, m, d)),
                                                      ("scatter", (k, m, d, d)), ("third", (k, m, d)),
                                                      ("fourth", (k, m))]}
    for i in range(k):
        for g in range(m):
            sel = (y == i) & (a == g)
            x, ww = X[sel], w[sel]
            W = ww.sum()
            mu = (ww[:, None] * x).sum(0) / W
            u = x - mu
            sq = (u * u).sum(1)
            out["count"][i, g] = W
            out["mean"][i, g] = mu
            out["scatter"][i, g] = (ww[:, None] * u).T @ u
            out["third"][i, g] = (ww * sq) @ u
            out["fourth"][i, g] = ww @ (sq * sq)
    return {f: v.astype(np.float64) for f, v in out.items()}


def assert_stats_close(s, ref, rtol=1e-10):
    """Compare statistics, each against its natural scale (σ for means, trS^1.5/√W for third, ...)."""
    get = (lambda f: np.asarray(ref[f])) if isinstance(ref, dict) else (lambda f: np.asarray(getattr(ref, f)))
    W, trS = get("count"), np.trace(get("scatter"), axis1=-2, axis2=-1)
    scale = {
        "count": np.max(W),
        "mean": np.sqrt(np.max(trS / W)) + 1e4 * np.max(np.abs(get("mean"))) * np.finfo(float).eps / rtol,
        "scatter": np.max(np.abs(get("scatter"))),
        "third": np.max(trS**1.5 / np.sqrt(W)),
        "fourth": np.max(trS**2 / W),
    }
    for f, sc in scale.items():
        np.testing.assert_allclose(np.asarray(getattr(s, f)), get(f), rtol=0, atol=rtol * sc, err_msg=f)


def split_uneven(rng, n, parts=7):
    cuts = np.sort(rng.choice(np.arange(1, n), parts - 1, replace=False))
    return np.split(np.arange(n), cuts)


# -- one-shot ------------------------------------------------------------------------------------


def test_one_shot_matches_numpy(rng):
    X, y, a = make_data(rng)
    fam = est.fit_family(X, y, a, shrinkage=None)
    assert (fam.k, fam.m, fam.d) == (K, M, D) and not fam.lognormal
    for i in range(K):
        for g in range(M):
            sel = (y == i) & (a == g)
            np.testing.assert_allclose(fam.priors[i, g], sel.mean(), rtol=1e-13)
            np.testing.assert_allclose(fam.means[i, g], X[sel].mean(0), rtol=1e-12)
            np.testing.assert_allclose(fam.covs[i, g], np.cov(X[sel].T, ddof=1), rtol=1e-11)
    stats = est.from_data(X, y, a, K, M)
    assert_stats_close(stats, numpy_cell_moments(X, y, a, K, M))
    np.testing.assert_array_equal(stats.n_rows, np.array([[np.sum((y == i) & (a == g)) for g in range(M)]
                                                          for i in range(K)]))
    fam0 = est.to_family(stats, shrinkage=None, ddof=0)
    np.testing.assert_allclose(fam0.covs[1, 2], np.cov(X[(y == 1) & (a == 2)].T, ddof=0), rtol=1e-11)


@pytest.mark.parametrize("n, block_max", [(301, 0), (302, None)])
def test_both_scatter_layouts_match_numpy(rng, monkeypatch, n, block_max):
    """The batch scatter as one spread product (small batches) and one product per cell (above
    BLOCK_SCATTER_MAX) both give numpy's per-cell moments (each n is a shape of its own, so each
    layout is traced afresh)."""
    if block_max is not None:
        monkeypatch.setattr(est, "BLOCK_SCATTER_MAX", block_max)
    X = rng.normal(size=(n, 4)) * np.array([1.0, 3.0, 0.5, 1e-2]) + 5.0
    y, a = rng.integers(0, 3, n), rng.integers(0, 2, n)
    assert_stats_close(est.from_data(X, y, a, 3, 2), numpy_cell_moments(X, y, a, 3, 2))


def test_num_classes_groups_inferred_and_explicit(rng):
    X, y, a = make_data(rng)
    fam = est.fit_family(X, y, a, num_classes=K, num_groups=M, shrinkage=0.2)
    fam2 = est.fit_family(X, y, a, shrinkage=0.2)
    np.testing.assert_array_equal(fam.covs, fam2.covs)
    labels = np.array(["no", "yes"])[y]
    _, codes = np.unique(labels, return_inverse=True)
    np.testing.assert_array_equal(est.fit_family(X, codes, a, shrinkage=0.2).means, fam.means)


# -- streaming -----------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_streaming_equals_one_shot(rng, weighted, offset):
    X, y, a = make_data(rng, n=500, offset=offset)
    w = rng.uniform(0.0, 3.0, len(X)) if weighted else None
    one = est.from_data(X, y, a, K, M, sample_weight=w)
    ref = numpy_cell_moments(X, y, a, K, M, w)
    assert_stats_close(one, ref, rtol=1e-9)

    batches = split_uneven(rng, len(X))
    assert len(batches) == 7 and len({len(b) for b in batches}) > 1
    parts = [est.from_data(X[b], y[b], a[b], K, M, sample_weight=None if w is None else w[b]) for b in batches]
    # merge in a random order and a random tree shape
    pool = [parts[i] for i in rng.permutation(len(parts))]
    while len(pool) > 1:
        i, j = sorted(rng.choice(len(pool), 2, replace=False))
        merged = est.merge(pool[i], pool[j]) if rng.random() < 0.5 else est.merge(pool[j], pool[i])
        pool = [p for t, p in enumerate(pool) if t not in (i, j)] + [merged]
    tree = pool[0]
    # sequential updates in a shuffled batch order
    seq = est.SuffStats.zeros(K, M, D)
    for t in rng.permutation(len(batches)):
        b = batches[t]
        seq = est.update(seq, X[b], y[b], a[b], None if w is None else w[b])

    for s in (tree, seq):
        # ~1e-8 relative to the two-pass estimate even with a 1e6 offset (raw sums would lose ~1e-4)
        assert_stats_close(s, ref, rtol=1e-8)
        np.testing.assert_array_equal(s.n_rows, one.n_rows)
        for shrink in (None, "ledoit_wolf"):
            f1, f2 = est.to_family(s, shrinkage=shrink), est.to_family(one, shrinkage=shrink)
            np.testing.assert_allclose(f1.covs, f2.covs, rtol=1e-8)
            np.testing.assert_allclose(f1.means, f2.means, rtol=1e-12)
            np.testing.assert_allclose(f1.priors, f2.priors, rtol=1e-12)
    if offset:
        # Ledoit–Wolf intensity is shift-invariant: matches the un-offset data
        lw_off = est.ledoit_wolf_intensity(seq)
        lw = est.ledoit_wolf_intensity(est.from_data(X - offset, y, a, K, M, sample_weight=w))
        np.testing.assert_allclose(lw_off, lw, rtol=1e-7)


def test_merge_with_empty_is_identity(rng):
    X, y, a = make_data(rng, n=100)
    s = est.from_data(X, y, a, K, M)
    z = est.SuffStats.zeros(K, M, D)
    for out in (est.merge(z, s), est.merge(s, z)):
        for f1, f2 in zip(out, s):
            np.testing.assert_array_equal(f1, f2)


def test_jit_update_equals_eager(rng):
    X, y, a = make_data(rng, n=300)
    w = rng.uniform(0.5, 2.0, len(X))
    s0 = est.from_data(X[:120], y[:120], a[:120], K, M)
    eager = est.update(s0, X[120:], y[120:], a[120:], w[120:])
    jitted = jax.jit(est.update)(s0, jnp.asarray(X[120:]), jnp.asarray(y[120:]), jnp.asarray(a[120:]),
                                 jnp.asarray(w[120:]))
    for f, g in zip(eager, jitted):
        np.testing.assert_allclose(g, f, rtol=1e-12, atol=1e-12)
    fam = jax.jit(functools.partial(est.to_family, shrinkage="ledoit_wolf"))(jitted)
    np.testing.assert_allclose(fam.covs, est.to_family(eager).covs, rtol=1e-12)


# -- weights -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shrinkage", [None, "ledoit_wolf", 0.25])
def test_weighted_equals_repeated(rng, shrinkage):
    X, y, a = make_data(rng, n=300)
    w = rng.integers(0, 4, len(X))
    # guarantee every cell keeps ≥ 2 positive-weight rows
    for i in range(K):
        for g in range(M):
            idx = np.flatnonzero((y == i) & (a == g))[:2]
            w[idx] = np.maximum(w[idx], 1)
    rep = np.repeat(np.arange(len(X)), w)
    fw = est.fit_family(X, y, a, sample_weight=w.astype(float), shrinkage=shrinkage)
    fr = est.fit_family(X[rep], y[rep], a[rep], shrinkage=shrinkage)
    np.testing.assert_allclose(fw.priors, fr.priors, rtol=1e-12)
    np.testing.assert_allclose(fw.means, fr.means, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(fw.covs, fr.covs, rtol=1e-10, atol=1e-12)
    # n_rows counts rows with positive weight
    sw = est.from_data(X, y, a, K, M, sample_weight=w)
    assert int(np.sum(sw.n_rows)) == int(np.sum(w > 0))
    assert_stats_close(sw, est.from_data(X[rep], y[rep], a[rep], K, M), rtol=1e-10)


# -- shrinkage -----------------------------------------------------------------------------------


def test_ledoit_wolf_matches_sklearn(rng):
    cov_mod = pytest.importorskip("sklearn.covariance")
    d = 5
    # small cells (including n < d) so that the intensities are far from 0 and 1
    X, y, a = make_data(rng, n=70, k=2, m=2, d=d)
    a[np.flatnonzero((y == 1) & (a == 1))[4:]] = 0  # cell (1, 1) keeps exactly 4 rows
    stats = est.from_data(X, y, a, 2, 2)
    assert int(stats.n_rows[1, 1]) == 4 < d
    lw = est.ledoit_wolf_intensity(stats)
    fam0 = est.to_family(stats, ddof=0)
    fam1 = est.fit_family(X, y, a)  # default: ledoit_wolf, ddof=1
    for i in range(2):
        for g in range(2):
            x = X[(y == i) & (a == g)]
            ref_cov, ref_s = cov_mod.ledoit_wolf(x)
            assert 0.0 < ref_s < 1.0
            np.testing.assert_allclose(lw[i, g], ref_s, rtol=1e-10)
            np.testing.assert_allclose(fam0.covs[i, g], ref_cov, rtol=1e-10, atol=1e-13)
            n = len(x)
            np.testing.assert_allclose(fam1.covs[i, g], ref_cov * n / (n - 1), rtol=1e-10, atol=1e-13)
    # streaming path: same intensities after batch-wise updates
    s = est.SuffStats.zeros(2, 2, d)
    for b in split_uneven(rng, len(X)):
        s = est.update(s, X[b], y[b], a[b])
    np.testing.assert_allclose(est.ledoit_wolf_intensity(s), lw, rtol=1e-10)


def test_ledoit_wolf_one_feature_is_zero(rng):
    X, y, a = make_data(rng, n=100, d=1)
    np.testing.assert_array_equal(est.ledoit_wolf_intensity(est.from_data(X, y, a, K, M)), 0.0)


def test_float_shrinkage_formula(rng):
    X, y, a = make_data(rng)
    s = 0.3
    fam = est.fit_family(X, y, a, shrinkage=s)
    per_cell = rng.uniform(0, 1, (K, M))
    fam_cell = est.to_family(est.from_data(X, y, a, K, M), shrinkage=per_cell)
    for i in range(K):
        for g in range(M):
            c = np.cov(X[(y == i) & (a == g)].T)
            target = np.trace(c) / D * np.eye(D)
            np.testing.assert_allclose(fam.covs[i, g], (1 - s) * c + s * target, rtol=1e-11)
            t = per_cell[i, g]
            np.testing.assert_allclose(fam_cell.covs[i, g], (1 - t) * c + t * target, rtol=1e-11)
    np.testing.assert_allclose(est.fit_family(X, y, a, shrinkage=0.0).covs,
                               est.fit_family(X, y, a, shrinkage=None).covs, rtol=1e-14)
    full = est.fit_family(X, y, a, shrinkage=1.0).covs
    np.testing.assert_allclose(full[0, 0], full[0, 0, 0, 0] * np.eye(D), atol=1e-14)


def test_lognormal_fit_equals_fit_on_log(rng):
    Z, y, a = make_data(rng)
    X = np.exp(Z / 3)
    fam = est.fit_family(X, y, a, lognormal=True)
    ref = est.fit_family(np.log(X), y, a)
    assert fam.lognormal and not ref.lognormal
    np.testing.assert_allclose(fam.means, ref.means, rtol=1e-14)
    np.testing.assert_allclose(fam.covs, ref.covs, rtol=1e-14)
    np.testing.assert_allclose(fam.priors, ref.priors, rtol=1e-14)
    fam2 = est.to_family(est.from_data(np.log(X), y, a, K, M), lognormal=True)
    assert fam2.lognormal
    np.testing.assert_allclose(fam2.covs, fam.covs, rtol=1e-14)


@pytest.mark.parametrize("lognormal", [False, True])
def test_recovers_known_family(rng, lognormal):
    true = random_family(rng, 2, 2, 3)
    if lognormal:
        true = js.GaussianFamily.lognormal_family(true.priors, true.means, true.covs)
    x, y, a = true.sample(jax.random.PRNGKey(7), 100_000)
    for shrink in (None, "ledoit_wolf"):
        fit = est.fit_family(x, y, a, shrinkage=shrink, lognormal=lognormal)
        assert fit.lognormal == lognormal
        np.testing.assert_allclose(fit.priors, true.priors, atol=5e-3)
        np.testing.assert_allclose(fit.means, true.means, atol=0.04)
        np.testing.assert_allclose(fit.covs, true.covs, atol=0.06)
    assert np.all(np.asarray(est.ledoit_wolf_intensity(est.from_data(
        np.log(x) if lognormal else x, y, a, 2, 2))) < 1e-2)


# -- validation ----------------------------------------------------------------------------------


def _bad_cases():
    rng = np.random.default_rng(0)
    X, y, a = make_data(rng, n=120)
    d5, y5, a5 = make_data(rng, n=120, d=5)
    one_row = (y == 1) & (a == 0)
    keep = ~one_row | (np.cumsum(one_row) == 1)
    four = np.flatnonzero((y5 == 0) & (a5 == 2))[4:]
    keep5 = np.setdiff1d(np.arange(len(y5)), four)
    Xnan = X.copy()
    Xnan[5, 1] = np.nan
    Xinf = X.copy()
    Xinf[7, 0] = np.inf
    yf = y.astype(float)
    yf[3] = 0.5
    aneg = a.copy()
    aneg[2] = -1
    pos = np.exp(X)
    pos[4, 2] = 0.0
    wneg = np.ones(len(X))
    wneg[9] = -1.0
    return [
        ("X-1d", dict(X=X[:, 0]), r"^X: expected a 2-D"),
        ("X-3d", dict(X=X[None]), r"^X: expected a 2-D"),
        ("y-len", dict(y=y[:-1]), r"^y: has length 119 but X has 120"),
        ("a-len", dict(a=a[:-3]), r"^a: has length"),
        ("y-2d", dict(y=y[:, None]), r"^y: expected a 1-D"),
        ("X-nan", dict(X=Xnan), r"^X: row 5, column \d is nan; drop or impute"),
        ("X-inf", dict(X=Xinf), r"^X: row 7, column \d is inf; drop or impute"),
        ("y-float", dict(y=yf), r"^y: class codes must be integers; entry 3"),
        ("y-str", dict(y=np.array(["u", "v"])[y]), r"^y: .*np\.unique"),
        ("a-neg", dict(a=aneg), r"^a: group codes must be non-negative; entry 2"),
        ("y-range", dict(num_classes=1), r"^y: class code 1 .*out of range for num_classes=1"),
        ("a-range", dict(num_groups=2), r"^a: group code 2 .*out of range for num_groups=2"),
        ("cell-1-row", dict(X=X[keep], y=y[keep], a=a[keep]), r"^y, a: class 1, group 0 has 1 row;"),
        ("cell-0-rows", dict(num_classes=3), r"^y, a: class 2, group 0 has 0 rows"),
        ("n-le-d", dict(X=d5[keep5], y=y5[keep5], a=a5[keep5], shrinkage=None),
         r"^shrinkage: class 0, group 2 has 4 rows for d=5 features"),
        ("lognormal-nonpos", dict(X=pos, lognormal=True), r"^X: lognormal=True .*X\[4, 2\] = 0\.0"),
        ("lognormal-neg", dict(X=-np.exp(X), lognormal=True), r"^X: lognormal=True"),
        ("weight-neg", dict(sample_weight=wneg), r"^sample_weight: weights must be non-negative; entry 9"),
        ("weight-len", dict(sample_weight=np.ones(5)), r"^sample_weight: expected shape \(120,\)"),
        ("weight-nan", dict(sample_weight=np.full(120, np.nan)), r"^sample_weight: weights must be finite; entry 0 is nan"),
        ("weight-small", dict(sample_weight=np.full(120, 0.01)), r"^sample_weight: class 0, group 0 has total weight"),
        ("shrink-str", dict(shrinkage="oas"), r"^shrinkage: unknown method 'oas'"),
        ("shrink-high", dict(shrinkage=1.5), r"^shrinkage: .*\[0, 1\]"),
        ("shrink-neg", dict(shrinkage=-0.1), r"^shrinkage: .*\[0, 1\]"),
        ("shrink-nan", dict(shrinkage=float("nan")), r"^shrinkage: .*\[0, 1\]"),
        ("num-classes", dict(num_classes=0), r"^num_classes: expected a positive integer"),
    ], (X, y, a)


_CASES, _DATA = _bad_cases()


@pytest.mark.parametrize("name,kwargs,pattern", _CASES, ids=[c[0] for c in _CASES])
def test_fit_family_bad_inputs(name, kwargs, pattern):
    X, y, a = _DATA
    args = dict(X=X, y=y, a=a)
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        est.fit_family(args.pop("X"), args.pop("y"), args.pop("a"), **args)


def test_update_and_to_family_bad_inputs(rng):
    X, y, a = make_data(rng, n=60)
    s = est.SuffStats.zeros(K, M, D)
    with pytest.raises(ValueError, match=r"^y: class code 2 .*out of range for num_classes=2"):
        est.update(s, X, np.where(y == 1, 2, y), a)
    with pytest.raises(ValueError, match=r"^X: has 2 features but stats were built for d=3"):
        est.update(s, X[:, :2], y, a)
    with pytest.raises(ValueError, match=r"^X: expected a 2-D"):
        est.from_data(X[:, 0], y, a, K, M)
    with pytest.raises(ValueError, match=r"^sample_weight: weights must be non-negative"):
        est.update(s, X, y, a, -np.ones(len(X)))
    stats = est.from_data(X, y, a, K, M)
    with pytest.raises(ValueError, match=r"^shrinkage: unknown method"):
        est.to_family(stats, shrinkage="ledoit")
    with pytest.raises(ValueError, match=r"^shrinkage: .*\[0, 1\]"):
        est.to_family(stats, shrinkage=2.0)
    with pytest.raises(ValueError, match=r"^stats: class 0, group 0 has 0 rows"):
        est.to_family(est.SuffStats.zeros(K, M, D))
    const = np.ones_like(X)
    with pytest.raises(ValueError, match=r"^X: class 0, group 0 has zero variance"):
        est.fit_family(const, y, a)


def test_float32_statistics(rng):
    X, y, a = make_data(rng, n=400, offset=100.0)
    s32 = est.SuffStats.zeros(K, M, D, dtype=jnp.float32)
    for b in split_uneven(rng, len(X)):
        s32 = est.update(s32, X[b], y[b], a[b])
    assert s32.scatter.dtype == jnp.float32
    f32, f64 = est.to_family(s32), est.fit_family(X, y, a)
    assert f32.dtype == jnp.float32
    np.testing.assert_allclose(f32.covs, f64.covs, rtol=0, atol=1e-4 * np.max(np.abs(f64.covs)))


def test_from_data_size_names():
    rng = np.random.default_rng(0)
    X, y, a = rng.normal(size=(50, 2)), rng.integers(0, 2, 50), rng.integers(0, 3, 50)
    new = est.from_data(X, y, a, num_classes=2, num_groups=3)
    with pytest.warns(DeprecationWarning) as caught:
        old = est.from_data(X, y, a, k=2, m=3)
    assert sorted(str(w.message).split(":")[1].split("=")[0] for w in caught) == [" the argument k", " the argument m"]
    for f_new, f_old in zip(new, old):
        np.testing.assert_array_equal(f_new, f_old)
    with pytest.raises(TypeError, match="pass num_classes and num_groups"):
        est.from_data(X, y, a)
