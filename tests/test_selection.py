"""``jaxsteer.select``: EF variants chosen on validation data.

The data are built so that the right choice is known:

* ``_shift``: every group has the same class structure, but group ``"f"``'s informative feature is
  shifted by −2. The class × group family is then (almost) ideal already (KL ≈ 1e-3), so the
  subgroup maps, ``moment`` and ``posterior`` barely move the data and a group-blind classifier keeps
  the shift's unfairness (validation ΔEO ≈ 0.6); only the ``align`` group map removes the shift from
  training *and* validation data: ΔEO ≈ 0.01 at a *higher* accuracy (0.86 against 0.79). It must be
  chosen, and it dominates every other row (the Pareto front is that row alone).
* ``_proxy``: the group is a strong proxy of the label (base rates 0.9 / 0.1) and only a feature
  carries the group; label-free group maps erase it and lose about 0.1 accuracy, so no candidate is
  within the tolerance and the fallback (most accurate) must be taken.

Every table value is recomputed independently: fresh ``Steerer`` fits with the candidate's map, a
fresh scikit-learn ``LogisticRegression`` trained with the ideal family's prior ratios computed from
the fitted and target families, and fairlearn's metrics.
"""

import sys

import numpy as np
import pytest
from fairlearn import metrics as fm
from sklearn.linear_model import LogisticRegression

import jaxsteer as js
from jaxsteer.selection import Candidate, default_candidates

AFF_SYM = default_candidates(interventions=("affirmative",), forms=("symmetric",))  # pre + 3 rep maps
ALIGN = Candidate("affirmative", "symmetric", "align", "rep")


def _shift(n, seed, delta=-2.0):
    r = np.random.default_rng(seed)
    a = np.where(r.random(n) < 0.6, "m", "f")  # "m" is the most frequent group: affirmative keeps it
    y = (r.random(n) < 0.4).astype(int)
    x1 = 2.0 * y + delta * (a == "f") + r.normal(size=n)
    return np.stack([x1, r.normal(size=n)], 1), y, a


def _proxy(n, seed):
    r = np.random.default_rng(seed)
    a = (r.random(n) < 0.5).astype(int)
    y = (r.random(n) < np.where(a == 1, 0.9, 0.1)).astype(int)
    x1 = 2.0 * y + r.normal(size=n)
    x2 = 3.0 * a + 0.3 * r.normal(size=n)
    return np.stack([x1, x2], 1), y, a


@pytest.fixture(scope="module")
def shift():
    X, y, a = _shift(1500, 0)
    Xv, yv, av = _shift(1500, 1)
    sel = js.select(X, y, a, X_val=Xv, y_val=yv, a_val=av, candidates=AFF_SYM)
    return (X, y, a, Xv, yv, av), sel


def _metrics(yv, pred, av):
    return dict(
        acc=float(np.mean(pred == yv)),
        dp=fm.demographic_parity_difference(yv, pred, sensitive_features=av),
        eo=fm.equal_opportunity_difference(yv, pred, sensitive_features=av),
        eodds=fm.equalized_odds_difference(yv, pred, sensitive_features=av),
    )


def _check_rows(sel, X, y, a, Xv, yv, av, group_codes):
    """Every candidate row recomputed: fresh Steerer, weights q̃/q from the families, sklearn LR, fairlearn."""
    ref = sel.table[0]
    expect = _metrics(yv, LogisticRegression(max_iter=2000).fit(X, y).predict(Xv), av)
    for key, v in expect.items():
        assert ref[key] == pytest.approx(v, abs=1e-12), key
    for row in sel.table[1:]:
        cand = Candidate(row["intervention"], row["form"], row["map"], row["protocol"])
        st = js.Steerer(intervention=cand.intervention, form=cand.form, map=cand.map or "align").fit(X, y, a)
        q, qt = np.asarray(st.family_.priors), np.asarray(st.solution_.target.priors)
        w = (qt / q)[y, group_codes]
        if cand.protocol == "pre":
            Ztr, Zv = st.transform(X, a, y), Xv
        else:
            Ztr, Zv = st.transform(X, a), st.transform(Xv, av)
        pred = LogisticRegression(max_iter=2000).fit(Ztr, y, sample_weight=w).predict(Zv)
        for key, v in _metrics(yv, pred, av).items():
            assert row[key] == pytest.approx(v, abs=1e-9), (cand, key)
        assert row["kl"] == pytest.approx(float(st.solution_.kl), rel=1e-6)
        assert row["converged"] is True and row["fit_s"] > 0 and row["clf_s"] > 0
        assert row["eligible"] == (row["acc"] >= ref["acc"] - sel.tolerance)
        # the selection's own predictions reproduce the row
        assert float(np.mean(sel.predict(Xv, av, cand) == yv)) == pytest.approx(row["acc"], abs=1e-12)
    return ref


def test_known_choice_and_table_values(shift):
    (X, y, a, Xv, yv, av), sel = shift
    assert sel.choice == ALIGN
    assert isinstance(sel.steerer, js.Steerer) and sel.steerer.map == "align"
    assert [r["name"] for r in sel.table] == ["unsteered"] + [c.name for c in AFF_SYM]
    assert [r["chosen"] for r in sel.table] == [False, False, True, False, False]
    ref = sel.table[0]
    assert ref["reference"] and ref["kl"] is None and ref["eligible"] is None
    assert ref["eo"] > 0.4  # the shift makes the group-blind rule unfair
    _check_rows(sel, X, y, a, Xv, yv, av, group_codes=(a == "m").astype(int))
    chosen = sel.row()
    assert chosen["eo"] < 0.05 and chosen["acc"] > ref["acc"] + 0.03
    assert "chose EF affirmative/symmetric [align], rep" in sel.reason
    assert np.array_equal(sel.predict(Xv, av), sel.predict(Xv, av, ALIGN))
    assert "| unsteered |" in sel.markdown()


def test_pareto_front_matches_independent_computation(shift):
    (X, y, a, Xv, yv, av), sel = shift
    par = js.select(X, y, a, X_val=Xv, y_val=yv, a_val=av, candidates=AFF_SYM, criterion="pareto", reuse=sel)
    acc = np.array([r["acc"] for r in par.table])
    eo = np.array([r["eo"] for r in par.table])
    dominated = [bool(np.any((acc >= acc[i]) & (eo <= eo[i]) & ((acc > acc[i]) | (eo < eo[i])))) for i in range(len(acc))]
    assert [r["pareto"] for r in par.table] == [not d for d in dominated]
    assert par.front == (ALIGN,)  # align dominates the unsteered model and the other candidates
    assert par.choice == ALIGN
    # reuse: the steerer was not refitted
    assert par.steerers[AFF_SYM[0]] is sel.steerers[AFF_SYM[0]]
    assert [r["fit_s"] for r in par.table] == [r["fit_s"] for r in sel.table]


def test_other_criteria_and_classifier(shift):
    (X, y, a, Xv, yv, av), sel = shift
    dp = js.select(X, y, a, X_val=Xv, y_val=yv, a_val=av, candidates=AFF_SYM, criterion="dp",
                   classifier=LogisticRegression(C=0.05, max_iter=500), reuse=sel)
    rows = dp.table[1:]
    elig = [i for i, r in enumerate(rows) if r["eligible"]]
    best = min(elig, key=lambda i: (rows[i]["dp"], -rows[i]["acc"], i))
    assert dp.choice == AFF_SYM[best] == ALIGN
    assert dp.classifier.C == 0.05  # the passed classifier (cloned), not the default
    assert dp.positive == 1


class _Centroid:
    """A classifier without scikit-learn's get_params (select deep-copies it): weighted class means."""

    def fit(self, X, y, sample_weight=None):
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight)
        self.labels_ = np.unique(y)
        self.means_ = np.stack([np.average(X[y == c], axis=0, weights=w[y == c]) for c in self.labels_])
        return self

    def predict(self, X):
        return self.labels_[np.argmin(((np.asarray(X)[:, None, :] - self.means_[None]) ** 2).sum(-1), axis=1)]


def test_classifier_without_get_params(shift):
    (X, y, a, Xv, yv, av), sel = shift
    cen = js.select(X, y, a, X_val=Xv, y_val=yv, a_val=av, candidates=[ALIGN], classifier=_Centroid(), reuse=sel)
    st = cen.steerers[ALIGN]
    w = st.sample_weight(y, a)
    pred = _Centroid().fit(st.transform(X, a), y, w).predict(st.transform(Xv, av))
    assert cen.row()["acc"] == pytest.approx(np.mean(pred == yv), abs=1e-12)
    ref_pred = _Centroid().fit(X, y).predict(Xv)
    assert cen.reference["eo"] == pytest.approx(fm.equal_opportunity_difference(yv, ref_pred, sensitive_features=av), abs=1e-12)
    assert not hasattr(_Centroid(), "means_") and cen.classifier is not cen.classifiers[None]


def test_fallback_when_no_candidate_is_accurate_enough():
    X, y, a = _proxy(1200, 2)
    Xv, yv, av = _proxy(1200, 3)
    cands = [Candidate("affirmative", "symmetric", "align", "rep"), Candidate("affirmative", "symmetric", "moment", "rep")]
    sel = js.select(X, y, a, X_val=Xv, y_val=yv, a_val=av, candidates=cands, tolerance=0.02)
    ref, rows = _check_rows(sel, X, y, a, Xv, yv, av, group_codes=a), sel.table[1:]
    w = sel.steerer.sample_weight(y, a)
    assert w.max() / w.min() > 1.5  # the weights matter here (base rates 0.9 / 0.1)
    assert all(r["acc"] < ref["acc"] - 0.05 for r in rows)  # the group proxy is erased: accuracy drops
    assert not any(r["eligible"] for r in rows)
    best = max(range(2), key=lambda i: (rows[i]["acc"], -rows[i]["eo"]))
    assert sel.choice == cands[best]
    assert sel.reason.startswith("no candidate")
    # with the constraint disabled the lowest ΔEO wins
    free = js.select(X, y, a, X_val=Xv, y_val=yv, a_val=av, candidates=cands, tolerance=float("inf"), reuse=sel)
    assert free.choice == cands[min(range(2), key=lambda i: (rows[i]["eo"], -rows[i]["acc"]))]


def test_string_labels_and_positive():
    X, y, a = _shift(600, 4)
    Xv, yv, av = _shift(600, 5)
    lab = np.array(["no", "yes"])
    sel = js.select(X, lab[y], a, X_val=Xv, y_val=lab[yv], a_val=av, candidates=[ALIGN])
    assert sel.positive == "yes"
    pred = (sel.predict(Xv, av) == "yes").astype(int)
    assert sel.row()["eo"] == pytest.approx(fm.equal_opportunity_difference(yv, pred, sensitive_features=av), abs=1e-12)
    neg = js.select(X, lab[y], a, X_val=Xv, y_val=lab[yv], a_val=av, candidates=[ALIGN], positive="no", reuse=sel)
    tpr_no = [np.mean(pred[(av == g) & (yv == 0)] == 0) for g in ("f", "m")]
    assert neg.row()["eo"] == pytest.approx(abs(tpr_no[0] - tpr_no[1]), abs=1e-12)


class _NoWeights:
    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.zeros(len(X), int)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(criterion="best"), "criterion"),
        (dict(tolerance=-0.1), "tolerance"),
        (dict(tolerance=True), "tolerance"),
        (dict(tolerance=float("nan")), "tolerance"),
        (dict(candidates=[]), "candidates"),
        (dict(candidates=("affirmative", "symmetric", None, "pre")), "candidates: got a single"),
        (dict(candidates=[("affirmative", "symmetric", "align", "pre")]), r"candidates\[0\]: protocol 'pre'"),
        (dict(candidates=[("affirmative", "symmetric", None, "rep")]), r"candidates\[0\]: protocol 'rep'"),
        (dict(candidates=[("some", "symmetric", None, "pre")]), r"candidates\[0\]: unknown intervention"),
        (dict(candidates=[("all", "diag", None, "pre")]), r"candidates\[0\]: unknown form"),
        (dict(candidates=[("all", "affine", None, "post")]), r"candidates\[0\]: unknown protocol"),
        (dict(candidates=[ALIGN, ALIGN]), r"candidates\[1\]: .* twice"),
        (dict(candidates=[("all", "affine")]), r"candidates\[0\]: expected"),
        (dict(X_val=np.zeros((5, 3))), "X_val: has 3 features"),
        (dict(y_val=np.full(40, 7)), "y_val"),
        (dict(a_val=np.full(40, "x")), "a_val"),
        (dict(positive=5), "positive"),
        (dict(classifier=object()), "classifier: .* no fit"),
        (dict(classifier=_NoWeights()), "classifier: .* sample_weight"),
        (dict(steerer_options=dict(form="affine")), "steerer_options"),
        (dict(reuse="previous"), "reuse"),
    ],
)
def test_argument_errors_name_the_argument(kwargs, match):
    X, y, a = _shift(40, 6)
    Xv, yv, av = _shift(40, 7)
    args = dict(X_val=Xv, y_val=yv, a_val=av, candidates=[ALIGN])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        js.select(X, y, a, **args)


def test_reuse_on_other_data_is_refused(shift):
    (X, y, a, Xv, yv, av), sel = shift
    with pytest.raises(ValueError, match="reuse: .*other training data"):
        js.select(X[:-1], y[:-1], a[:-1], X_val=Xv, y_val=yv, a_val=av, candidates=AFF_SYM, reuse=sel)


def test_single_class_or_group_is_refused():
    X, y, a = _shift(40, 8)
    with pytest.raises(ValueError, match="y: found a single class"):
        js.select(X, np.zeros(40, int), a, X_val=X, y_val=np.zeros(40, int), a_val=a)
    with pytest.raises(ValueError, match="a: found a single group"):
        js.select(X, y, np.full(40, "m"), X_val=X, y_val=y, a_val=np.full(40, "m"))


def test_missing_scikit_learn_is_a_clear_error(monkeypatch):
    X, y, a = _shift(40, 9)
    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)  # import fails
    with pytest.raises(ImportError, match=r"scikit-learn .*jaxsteer\[study\]"):
        js.select(X, y, a, X_val=X, y_val=y, a_val=a, candidates=[ALIGN])
