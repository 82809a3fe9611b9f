"""``jaxsteer demo``'s fairlearn rows (issue 16): ThresholdOptimizer when fairlearn is installed, a note
when it is not. The values are checked against fairlearn and scikit-learn called directly."""

import os
import sys

import numpy as np
import pytest
from fairlearn import metrics as fm
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.linear_model import LogisticRegression

from jaxsteer import demo


def _data(n, seed):
    r = np.random.default_rng(seed)
    a = (r.random(n) < 0.4).astype(int)
    y = (r.random(n) < 0.5).astype(int)
    X = np.stack([1.5 * y - 1.0 * a + r.normal(size=n), r.normal(size=n), 0.5 * a + r.normal(size=n)], 1)
    return X, y, a


def test_fairlearn_rows_match_fairlearn():
    X, y, a = _data(800, 0)
    Xt, yt, at = _data(600, 1)
    msgs = []
    rows = demo.fairlearn_rows("toy", X, y, a, Xt, yt, at, msgs.append)
    assert [r["method"] for r in rows] == ["fairlearn ThresholdOptimizer, TPR parity",
                                           "fairlearn ThresholdOptimizer, equalized odds"]
    assert len(msgs) == 2 and all(r["protocol"] == "post" and r["dataset"] == "toy" for r in rows)
    base = LogisticRegression(C=1.0, max_iter=2000).fit(X, y)
    for r, cons in zip(rows, ("true_positive_rate_parity", "equalized_odds")):
        to = ThresholdOptimizer(estimator=base, constraints=cons, prefit=True, predict_method="decision_function")
        pred = to.fit(X, y, sensitive_features=a).predict(Xt, sensitive_features=at, random_state=0)
        assert r["acc"] == pytest.approx(np.mean(pred == yt), abs=1e-12)
        assert r["dp"] == pytest.approx(fm.demographic_parity_difference(yt, pred, sensitive_features=at), abs=1e-12)
        assert r["eo"] == pytest.approx(fm.equal_opportunity_difference(yt, pred, sensitive_features=at), abs=1e-12)
    # the raw logistic regression is unfair here; TPR parity closes most of the gap
    raw = base.predict(Xt)
    assert fm.equal_opportunity_difference(yt, raw, sensitive_features=at) > 0.15
    assert rows[0]["eo"] < 0.1
    md = demo.markdown([], rows)
    assert "| fairlearn ThresholdOptimizer, TPR parity | post |" in md


def test_fairlearn_rows_skipped_without_fairlearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "fairlearn.postprocessing", None)  # import fails
    X, y, a = _data(100, 2)
    assert demo.fairlearn_rows("toy", X, y, a, X, y, a, lambda s: None) is None
    assert "pip install 'jaxsteer[study]'" in demo.FAIRLEARN_NOTE


@pytest.mark.slow  # three EF fits of COMPAS (compile-bound, about a minute); the full demo runs in CI
def test_demo_compas_has_fairlearn_rows(tmp_path):
    res = demo.run(str(tmp_path), datasets=("compas",), quiet=True)
    methods = [r["method"] for r in res["tabular"]]
    assert "fairlearn ThresholdOptimizer, TPR parity" in methods
    assert "fairlearn ThresholdOptimizer, equalized odds" in methods
    report = (tmp_path / "report.md").read_text()
    assert "ThresholdOptimizer" in report and demo.FAIRLEARN_NOTE not in report


def test_demo_compile_flag_respects_the_users_setting(monkeypatch):
    """`jaxsteer demo` turns XLA's backend optimisations off for its compiles unless XLA_FLAGS already
    sets that option (other flags are kept)."""
    from jaxsteer import cli

    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    cli._demo_compile_flags()
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")
    cli._demo_compile_flags()
    assert os.environ["XLA_FLAGS"] == "--xla_backend_optimization_level=3"
    monkeypatch.delenv("XLA_FLAGS")
    cli._demo_compile_flags()
    assert os.environ["XLA_FLAGS"] == "--xla_backend_optimization_level=0"
