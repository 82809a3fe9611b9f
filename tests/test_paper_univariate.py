"""The univariate paper reproduction (benchmarks/experiments/paper_univariate.py) runs and is exact."""

import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxsteer as js

_ROOT = str(Path(__file__).resolve().parents[1])  # benchmarks/ is a top-level package of the repo
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.experiments import paper_univariate as pu  # noqa: E402

# About a minute of solver compilation; the closed forms it uses are covered by test_solve*.py.
pytestmark = pytest.mark.slow
from jaxsteer import ideal


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper_univariate")
    assert pu.main(["--out", str(out), "--sweep", "4", "--no-figure"]) == 0
    with open(out / "paper_univariate.json") as fh:
        res = json.load(fh)
    return res, out


def test_outputs_written(results):
    res, out = results
    md = (out / "paper_univariate.md").read_text()
    assert "| EF all, affine |" in md and "Verdict" in md
    names = [r["method"] for r in res["rows"]]
    assert names[:2] == ["original", "mean matching"]
    assert {label for label, *_ in pu.EF_METHODS} <= set(names)
    assert res["sweep"]["n"] == 4 and len(res["sweep"]["methods"]) == len(names) - 1


def test_ef_rows_exactly_fair(results):
    res, _ = results
    ef = [r for r in res["rows"] if r["method"].startswith("EF")]
    assert len(ef) == len(pu.EF_METHODS)
    for r in ef:
        assert r["converged"] and r["ideal_affine"], r["method"]
        assert r["kl"] == pytest.approx(r["solver_kl"], rel=1e-9, abs=1e-12)
        for c in pu.COSTS:
            assert r[c]["target"]["dp_gap"] < 1e-8, (r["method"], c)
            assert r[c]["target"]["eo_gap"] < 1e-8, (r["method"], c)
        assert r["certificate_holds"], r["method"]
    assert res["verdict"]["exact_fairness"]
    assert res["verdict"]["sweep_max_gap_ef"] < 1e-8
    assert res["self_check_max_abs_diff"] < 1e-10


def test_original_and_mean_matching(results):
    res, _ = results
    by = {r["method"]: r for r in res["rows"]}
    orig, mm = by["original"], by["mean matching"]
    assert orig["kl"] == 0.0 and orig["js"] == pytest.approx(0.0, abs=1e-14)
    assert orig["0-1"]["target"]["eo_gap"] > 0.3  # the case study is unfair to begin with
    # a per-group translation leaves every group-aware rate unchanged
    for c in pu.COSTS:
        for g in ("error", "dp_gap", "eo_gap"):
            assert mm[c]["target"][g] == pytest.approx(orig[c]["target"][g], abs=1e-12)
    # the closed form of its KL: Σ_i q[i,0] δ² / (2σ_i0²)
    q, mu, sd = (np.asarray(v) for v in (pu.PRIORS, pu.MEANS, pu.STDS))
    base = q / q.sum(0)
    delta = base[:, 1] @ mu[:, 1] - base[:, 0] @ mu[:, 0]
    assert mm["kl"] == pytest.approx(float(np.sum(q[:, 0] * delta**2 / (2 * sd[:, 0] ** 2))), rel=1e-12)


def test_mean_matching_family():
    fam = pu.random_families(3, seed=1)
    mm = pu.mean_matching(fam, reference=1)
    base = np.asarray(mm.priors / mm.priors.sum(-2, keepdims=True))
    gmean = np.einsum("bia,biad->bad", base, np.asarray(mm.means))
    np.testing.assert_allclose(gmean[:, 0], gmean[:, 1], atol=1e-12)
    np.testing.assert_array_equal(np.asarray(mm.covs), np.asarray(fam.covs))
    np.testing.assert_array_equal(np.asarray(mm.means[:, :, 1]), np.asarray(fam.means[:, :, 1]))


def test_rule_rates_against_bayes_rates_1d():
    fam = pu.random_families(1, seed=3)[0]
    for c in pu.COSTS.values():
        ref = ideal.bayes_rates_1d(fam, jnp.asarray(c))
        mine = pu.rule_rates(fam, fam, c)
        for g in ("error", "dp_gap", "eo_gap", "tpr_gap", "fpr_gap"):
            assert mine[g] == pytest.approx(float(getattr(ref, g)), abs=1e-12)
    # with identical groups the group-blind rule is the group-aware one
    same = js.GaussianFamily.univariate(priors=[[0.2, 0.3], [0.2, 0.3]], means=[[0.0, 0.0], [1.0, 1.0]],
                                        stds=[[1.0, 1.0], [2.0, 2.0]])
    blind = pu.rule_rates(same, same, pu.COSTS["0-1"], blind=True)
    ref = ideal.bayes_rates_1d(same, jnp.asarray(pu.COSTS["0-1"]))
    assert blind["error"] == pytest.approx(float(ref.error), abs=1e-12)
