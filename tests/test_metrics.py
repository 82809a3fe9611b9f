"""jaxsteer.metrics against fairlearn / scikit-learn, jit = eager, empty-cell conventions, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsteer import metrics as M

fm = pytest.importorskip("fairlearn.metrics")
skm = pytest.importorskip("sklearn.metrics")


def _binary_data(seed, m, n=800):
    """Random binary labels and predictions whose rates depend on the group (all cells populated)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, m, n)
    y = (rng.random(n) < 0.3 + 0.1 * a).astype(np.int64)
    p = (rng.random(n) < 0.2 + 0.1 * a + 0.4 * y).astype(np.int64)
    w = rng.uniform(0.1, 3.0, n)
    return y, p, a, w


def _multi_data(seed, k, m, n=1500):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, m, n)
    y = rng.integers(0, k, n)
    noise = rng.integers(0, k, n)
    p = np.where(rng.random(n) < 0.4 + 0.15 * a + 0.05 * y, y, noise)
    w = rng.uniform(0.1, 3.0, n)
    return y, p, a, w


def _by_group(metric, y, p, a, w):
    params = {} if w is None else {"sample_params": {"sample_weight": w}}
    mf = fm.MetricFrame(metrics=metric, y_true=y, y_pred=p, sensitive_features=a, **params)
    return mf


# ---------------------------------------------------------------------------------------------
# binary metrics vs fairlearn
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_against_fairlearn(m, weighted):
    y, p, a, w = _binary_data(10 + m, m)
    w = w if weighted else None
    for g in range(m):  # every cell populated: the conventions for empty cells do not enter
        for c in (0, 1):
            assert np.sum((a == g) & (y == c)) > 0
    kw = {} if w is None else {"sample_weight": w}

    ref_dp = fm.demographic_parity_difference(y, p, sensitive_features=a, **kw)
    ref_eop = fm.equal_opportunity_difference(y, p, sensitive_features=a, **kw)
    ref_eo = fm.equalized_odds_difference(y, p, sensitive_features=a, agg="worst_case", **kw)
    np.testing.assert_allclose(M.demographic_parity_difference(p, a, sample_weight=w), ref_dp, atol=1e-12)
    np.testing.assert_allclose(M.equal_opportunity_difference(y, p, a, sample_weight=w), ref_eop, atol=1e-12)
    np.testing.assert_allclose(M.equalized_odds_difference(y, p, a, sample_weight=w), ref_eo, atol=1e-12)
    assert ref_eo > 0.05 and ref_dp > 0.05  # the data are unfair: a non-trivial comparison

    tpr = _by_group(fm.true_positive_rate, y, p, a, w).by_group.to_numpy()
    fpr = _by_group(fm.false_positive_rate, y, p, a, w).by_group.to_numpy()
    sel = _by_group(fm.selection_rate, y, p, a, w).by_group.to_numpy()
    np.testing.assert_allclose(M.true_positive_rates(y, p, a, num_groups=m, sample_weight=w), tpr, atol=1e-12)
    np.testing.assert_allclose(M.false_positive_rates(y, p, a, num_groups=m, sample_weight=w), fpr, atol=1e-12)
    np.testing.assert_allclose(M.selection_rates(p, a, num_groups=m, sample_weight=w), sel, atol=1e-12)
    np.testing.assert_allclose(M.accuracy(y, p, sample_weight=w),
                               skm.accuracy_score(y, p, sample_weight=w), atol=1e-12)


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_multiclass_against_fairlearn_one_vs_rest(m, weighted):
    k = 4
    y, p, a, w = _multi_data(20 + m, k, m)
    w = w if weighted else None
    gaps = np.asarray(M.tpr_gaps(y, p, a, num_classes=k, num_groups=m, sample_weight=w))
    conf = np.asarray(M.confusion_matrices(y, p, a, num_classes=k, num_groups=m, sample_weight=w))
    per_class = []
    for i in range(k):
        mf = _by_group(fm.true_positive_rate, (y == i).astype(int), (p == i).astype(int), a, w)
        tpr_i = mf.by_group.to_numpy()
        per_class.append(tpr_i)
        np.testing.assert_allclose(M.true_positive_rates(y, p, a, num_groups=m, positive=i, sample_weight=w),
                                   tpr_i, atol=1e-12)
        np.testing.assert_allclose(conf[:, i, i], tpr_i, atol=1e-12)
        np.testing.assert_allclose(gaps[i], mf.difference(method="between_groups"), atol=1e-12)
        mf_f = _by_group(fm.false_positive_rate, (y == i).astype(int), (p == i).astype(int), a, w)
        np.testing.assert_allclose(M.false_positive_rates(y, p, a, num_groups=m, positive=i, sample_weight=w),
                                   mf_f.by_group.to_numpy(), atol=1e-12)
    assert gaps.max() > 0.05
    per_class = np.array(per_class)  # [k, m]
    spread = per_class.max(axis=1) - per_class.min(axis=1)
    np.testing.assert_allclose(M.rms_tpr_gap(y, p, a, num_classes=k, num_groups=m, sample_weight=w),
                               np.sqrt(np.mean(spread**2)), atol=1e-12)
    if m == 2:  # the literature's formula
        np.testing.assert_allclose(M.rms_tpr_gap(y, p, a, num_classes=k, num_groups=m, sample_weight=w),
                                   np.sqrt(np.mean((per_class[:, 0] - per_class[:, 1]) ** 2)), atol=1e-12)
    # rows of the per-group confusion matrices are sklearn's normalised confusion matrices
    for g in range(m):
        sel = a == g
        ref = skm.confusion_matrix(y[sel], p[sel], labels=np.arange(k), normalize="true",
                                   sample_weight=None if w is None else w[sel])
        np.testing.assert_allclose(conf[g], ref, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# jit, vmap, examples
# ---------------------------------------------------------------------------------------------


def test_jit_equals_eager():
    y, p, a, w = _multi_data(3, 3, 3, n=300)
    yb, pb = (y == 1).astype(int), (p == 1).astype(int)
    cases = [
        (lambda y, p, a, w: M.accuracy(y, p, sample_weight=w), (y, p, a, w)),
        (lambda y, p, a, w: M.selection_rates(p, a, num_groups=3, sample_weight=w), (yb, pb, a, w)),
        (lambda y, p, a, w: M.demographic_parity_difference(p, a, num_groups=3, sample_weight=w),
         (yb, pb, a, w)),
        (lambda y, p, a, w: M.true_positive_rates(y, p, a, num_groups=3, sample_weight=w), (yb, pb, a, w)),
        (lambda y, p, a, w: M.false_positive_rates(y, p, a, num_groups=3, sample_weight=w), (yb, pb, a, w)),
        (lambda y, p, a, w: M.equal_opportunity_difference(y, p, a, num_groups=3, sample_weight=w),
         (yb, pb, a, w)),
        (lambda y, p, a, w: M.equalized_odds_difference(y, p, a, num_groups=3, sample_weight=w),
         (yb, pb, a, w)),
        (lambda y, p, a, w: M.tpr_gaps(y, p, a, num_classes=3, num_groups=3, sample_weight=w), (y, p, a, w)),
        (lambda y, p, a, w: M.rms_tpr_gap(y, p, a, num_classes=3, num_groups=3, sample_weight=w), (y, p, a, w)),
        (lambda y, p, a, w: M.confusion_matrices(y, p, a, num_classes=3, num_groups=3,
                                                 sample_weight=w), (y, p, a, w)),
    ]
    for fn, args in cases:
        args = tuple(jnp.asarray(x) for x in args)
        np.testing.assert_allclose(jax.jit(fn)(*args), fn(*args), atol=1e-12)


def test_positive_class_may_be_traced_and_vmap_over_batches():
    y, p, a, _ = _multi_data(4, 3, 2, n=200)
    f = jax.jit(lambda c: M.equal_opportunity_difference(y, p, a, num_groups=2, positive=c))
    for c in range(3):
        np.testing.assert_allclose(f(c), M.equal_opportunity_difference(y, p, a, positive=c), atol=1e-12)
    ys = jnp.stack([jnp.asarray(y), jnp.asarray(p)])
    batched = jax.vmap(lambda yy: M.rms_tpr_gap(yy, jnp.asarray(p), jnp.asarray(a), num_classes=3, num_groups=2))(ys)
    np.testing.assert_allclose(batched, [M.rms_tpr_gap(y, p, a), 0.0], atol=1e-12)


def test_docstring_examples():
    y = jnp.array([0, 1, 1, 0, 1, 1])
    yhat = jnp.array([0, 1, 0, 0, 1, 1])
    a = jnp.array([0, 0, 0, 1, 1, 1])
    assert float(M.equal_opportunity_difference(y, yhat, a)) == 0.5
    assert float(M.accuracy(jnp.array([0, 1, 1, 2]), jnp.array([0, 1, 2, 2]))) == 0.75
    np.testing.assert_array_equal(
        M.confusion_matrices(jnp.array([0, 1, 1]), jnp.array([0, 1, 0]), jnp.array([0, 0, 1])),
        [[[1, 0], [0, 1]], [[0, 0], [1, 0]]])
    np.testing.assert_array_equal(M.selection_rates(jnp.array([1, 0, 1, 1]), jnp.array([0, 0, 1, 1]), num_groups=2),
                                  [0.5, 1.0])
    assert float(M.demographic_parity_difference(jnp.array([1, 0, 1, 1]), jnp.array([0, 0, 1, 1]))) == 0.5
    np.testing.assert_array_equal(
        M.true_positive_rates(jnp.array([1, 1, 1, 0]), jnp.array([1, 0, 1, 1]), jnp.array([0, 0, 1, 1]), num_groups=2),
        [0.5, 1.0])
    np.testing.assert_array_equal(
        M.false_positive_rates(jnp.array([0, 0, 1, 0]), jnp.array([1, 0, 1, 0]), jnp.array([0, 0, 1, 1]), num_groups=2),
        [0.5, 0.0])
    assert float(M.equalized_odds_difference(jnp.array([1, 0, 1, 0]), jnp.array([1, 1, 1, 0]),
                                             jnp.array([0, 0, 1, 1]))) == 1.0
    y3, p3, a3 = jnp.array([0, 1, 2, 0, 1, 2]), jnp.array([0, 1, 1, 0, 1, 2]), jnp.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(M.tpr_gaps(y3, p3, a3, num_classes=3, num_groups=2), [0.0, 0.0, 1.0])
    np.testing.assert_allclose(M.rms_tpr_gap(y3, p3, a3, num_classes=3, num_groups=2), np.sqrt(1 / 3), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# empty cells
# ---------------------------------------------------------------------------------------------


def test_empty_cells_are_ignored_and_nan_free():
    # group 2 has no positives, group 3 has no members at all
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    p = np.array([1, 0, 0, 1, 1, 1, 0, 1])
    a = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    tpr = np.asarray(M.true_positive_rates(y, p, a, num_groups=4))
    np.testing.assert_array_equal(tpr, [0.5, 1.0, 0.0, 0.0])  # empty cells report 0
    assert float(M.equal_opportunity_difference(y, p, a, num_groups=4)) == 0.5  # groups 0, 1 only
    np.testing.assert_array_equal(M.false_positive_rates(y, p, a, num_groups=4), [0.0, 1.0, 2 / 3, 0.0])
    assert float(M.equalized_odds_difference(y, p, a, num_groups=4)) == 1.0
    np.testing.assert_array_equal(M.selection_rates(p, a, num_groups=4), [1 / 3, 1.0, 2 / 3, 0.0])
    np.testing.assert_allclose(M.demographic_parity_difference(p, a, num_groups=4), 2 / 3, rtol=1e-12)
    # fewer than two populated groups → 0
    assert float(M.equal_opportunity_difference(y, p, np.zeros_like(a), num_groups=3)) == 0.0
    assert float(M.demographic_parity_difference(p, np.zeros_like(a), num_groups=1)) == 0.0
    # zero weights everywhere: no populated cell, everything 0 and finite
    zero = np.zeros(len(y))
    for v in (M.accuracy(y, p, sample_weight=zero),
              M.equalized_odds_difference(y, p, a, sample_weight=zero),
              M.rms_tpr_gap(y, p, a, num_classes=3, num_groups=4, sample_weight=zero)):
        assert float(v) == 0.0
    # zero weight ≡ dropping the samples
    w = (a != 1).astype(float)
    keep = a != 1
    np.testing.assert_allclose(M.tpr_gaps(y, p, a, num_classes=2, num_groups=4, sample_weight=w),
                               M.tpr_gaps(y[keep], p[keep], a[keep], num_classes=2, num_groups=4), atol=1e-15)


def test_rms_tpr_gap_ignores_classes_without_two_groups():
    # class 2 occurs only in group 0, class 3 nowhere: only classes 0 and 1 enter the mean
    y = np.array([0, 1, 2, 0, 1])
    p = np.array([0, 0, 0, 0, 1])
    a = np.array([0, 0, 0, 1, 1])
    gaps = np.asarray(M.tpr_gaps(y, p, a, num_classes=4, num_groups=2))
    np.testing.assert_array_equal(gaps, [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(M.rms_tpr_gap(y, p, a, num_classes=4, num_groups=2), np.sqrt(0.5), rtol=1e-12)
    assert np.all(np.isfinite(np.asarray(M.confusion_matrices(y, p, a, num_classes=4, num_groups=3))))


# ---------------------------------------------------------------------------------------------
# errors and static sizes
# ---------------------------------------------------------------------------------------------


def test_errors():
    y = np.array([0, 1, 1, 0])
    p = np.array([0, 1, 0, 0])
    a = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="same shape"):
        M.equal_opportunity_difference(y, p[:3], a)
    with pytest.raises(ValueError, match="same shape"):
        M.tpr_gaps(y, p, a[:3])
    with pytest.raises(ValueError, match="1-D"):
        M.accuracy(y[None], p[None])
    with pytest.raises(ValueError, match="sample_weight"):
        M.accuracy(y, p, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        M.demographic_parity_difference(p, a, sample_weight=np.array([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"^a: group code 1 \(entry 2\) is out of range for num_groups=1"):
        M.selection_rates(p, a, num_groups=1)
    with pytest.raises(ValueError, match=r"^a: group codes must be non-negative; entry 1 is -1"):
        M.selection_rates(p, np.array([0, -1, 1, 1]))
    with pytest.raises(ValueError, match=r"^y_true: class code 1 \(entry \d\) is out of range for num_classes=1"):
        M.tpr_gaps(y, p, a, num_classes=1, num_groups=2)
    with pytest.raises(ValueError, match="non-negative"):
        M.true_positive_rates(np.array([0, -1, 1, 0]), p, a)
    with pytest.raises(ValueError, match="positive"):
        M.true_positive_rates(y, p, a, positive=-1)
    with pytest.raises(ValueError, match=r"^y_true: class codes must be integers; entry 0 is 0.5"):
        M.accuracy(y + 0.5, p)
    assert float(M.accuracy(y.astype(float), p)) == float(M.accuracy(y, p))  # whole-number floats are codes
    with pytest.raises(TypeError, match="class codes must be integers, got dtype float"):  # traced: unchecked
        jax.jit(M.accuracy)(y.astype(float), p)
    with pytest.raises(ValueError, match="num_groups must be a Python int"):
        M.selection_rates(p, a, num_groups=2.0)
    with pytest.raises(ValueError, match="num_groups must be given"):
        jax.jit(lambda p, a: M.demographic_parity_difference(p, a))(p, a)
    with pytest.raises(ValueError, match="num_classes must be given"):
        jax.jit(lambda y, p, a: M.tpr_gaps(y, p, a, num_groups=2))(y, p, a)
    with pytest.raises(ValueError, match="num_groups must be a Python int"):
        jax.jit(lambda p, a, m: M.selection_rates(p, a, num_groups=m))(p, a, 2)


def test_out_of_range_codes_are_dropped_under_jit():
    y = jnp.array([0, 1, 1, 0, 1])
    p = jnp.array([0, 1, 0, 0, 1])
    a = jnp.array([0, 0, 1, 1, 7])  # the last sample's group is out of range
    got = jax.jit(lambda y, p, a: M.true_positive_rates(y, p, a, num_groups=2))(y, p, a)
    np.testing.assert_array_equal(got, M.true_positive_rates(y[:4], p[:4], a[:4], num_groups=2))
    got = jax.jit(lambda y, p, a: M.tpr_gaps(y, p, a, num_classes=2, num_groups=2))(y.at[0].set(5), p, a)
    np.testing.assert_array_equal(got, M.tpr_gaps(y[1:4], p[1:4], a[1:4], num_classes=2, num_groups=2))


def test_positional_sizes_are_deprecated_but_work():
    y, p, a = np.array([1, 1, 0, 1]), np.array([1, 0, 0, 1]), np.array([0, 0, 1, 1])
    with pytest.warns(DeprecationWarning, match="pass num_groups= by keyword"):
        old = M.true_positive_rates(y, p, a, 2)
    np.testing.assert_array_equal(old, M.true_positive_rates(y, p, a, num_groups=2))
    with pytest.warns(DeprecationWarning, match="pass num_classes=, num_groups= by keyword"):
        old = M.tpr_gaps(y, p, a, 2, 3)
    np.testing.assert_array_equal(old, M.tpr_gaps(y, p, a, num_classes=2, num_groups=3))
    with pytest.raises(TypeError, match="multiple values for num_groups"):
        M.selection_rates(p, a, 2, num_groups=2)


def test_fairlearn_call_forms_match_fairlearn():
    fl = pytest.importorskip("fairlearn.metrics")
    rng = np.random.default_rng(3)
    n = 300
    groups = rng.choice(np.array(["F", "M", "X"]), n)
    y = rng.integers(0, 2, n)
    p = np.where(rng.random(n) < 0.7, y, 1 - y)
    w = rng.random(n)
    codes = np.unique(groups, return_inverse=True)[1]
    for name in ("demographic_parity_difference", "equalized_odds_difference", "equal_opportunity_difference"):
        ours = getattr(M, name)(y, p, sensitive_features=groups, sample_weight=w)
        theirs = getattr(fl, name)(y, p, sensitive_features=groups, sample_weight=w)
        np.testing.assert_allclose(float(ours), theirs, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(float(M.demographic_parity_difference(p, codes, sample_weight=w)),
                               fl.demographic_parity_difference(y, p, sensitive_features=groups, sample_weight=w),
                               rtol=1e-6)
    np.testing.assert_allclose(float(M.equalized_odds_difference(y, p, sensitive_features=groups, agg="mean")),
                               fl.equalized_odds_difference(y, p, sensitive_features=groups, agg="mean"), rtol=1e-6)
    with pytest.raises(ValueError, match="method='to_overall' is not supported"):
        M.demographic_parity_difference(y, p, sensitive_features=groups, method="to_overall")
    with pytest.raises(TypeError, match="got both group codes a and sensitive_features"):
        M.equal_opportunity_difference(y, p, codes, sensitive_features=groups)
