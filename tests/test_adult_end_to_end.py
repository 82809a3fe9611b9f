"""The end-to-end Flax example (benchmarks/experiments/adult_end_to_end.py) runs and reports finite numbers.

``--quick`` trains on a 4000-row subset for a few steps; it takes 40–70 s on two shared CPU cores,
almost all of it XLA compilation (two training steps with ``ideal_gap``, the Steerer and test-gap
solves), so the tests that run it are marked slow.
"""

import json
import math
import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[1])  # benchmarks/ is a top-level package of the repo
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.experiments import adult_end_to_end as e2e  # noqa: E402

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("adult_end_to_end")
    assert e2e.main(["--quick", "--out", str(out)]) == 0
    return json.loads((out / "adult_end_to_end.json").read_text()), out


@pytest.mark.slow
def test_outputs_written(quick_run):
    res, out = quick_run
    md = (out / "adult_end_to_end.md").read_text()
    assert "| method | accuracy | ΔDP | ΔEO |" in md
    assert "## Unweighted cross-entropy" in md and "class balance" in md
    assert "![accuracy against ΔEO and ΔDP](adult_end_to_end.png)" in md
    pytest.importorskip("matplotlib")
    png = out / "adult_end_to_end.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_every_method_reported_with_finite_numbers(quick_run):
    res, _ = quick_run
    assert set(res["tables"]) == {"none", "ideal"}
    for weighting, table in res["tables"].items():
        names = set(table["methods"])
        assert e2e.PLAIN in names
        assert ("(i) plain, class-balance weights" in names) == (weighting == "ideal")
        for mp in ("align", "moment"):
            assert f"(ii) frozen Steer ({mp}) + head" in names
            assert f"(iv) fine-tuned Steer ({mp})" in names
        assert any(n.startswith("(iii) ideal_gap λ=") for n in names)
        assert any(n.startswith("(v) ideal_gap λ=") for n in names)
        for name, rows in table["methods"].items():
            assert len(rows) == res["config"]["seeds"] == 1
            for r in rows:
                for k in ("accuracy", "dp", "eo", "test_gap"):
                    assert math.isfinite(r[k]), (weighting, name, k, r[k])
                assert 0.5 < r["accuracy"] <= 1.0, (name, r)
                assert 0.0 <= r["dp"] <= 1.0 and 0.0 <= r["eo"] <= 1.0, (name, r)
                assert r["test_gap"] >= 0.0, (name, r)
        assert set(table["paired_vs_plain"]) == names - {e2e.PLAIN}
    for hist in res["train_curves"].values():
        for epoch in hist[0]:
            assert math.isfinite(epoch["ce"])
            assert epoch["gap"] is None or math.isfinite(epoch["gap"])
    for rows in res["steerers"].values():
        assert all(math.isfinite(r["kl"]) for r in rows)
    assert res["skipped_steps"] == 0
    assert all(v is not None and v > 0 for v in res["step_seconds"].values())
    # one compilation per training-step kind (plain, head-only, ideal_gap on the plain and on the steered
    # model): models built later with the same structure reuse them
    assert len(res["step_compilations"]) == 4, res["step_compilations"]


def test_ideal_weights_give_every_group_the_reference_base_rate():
    import numpy as np

    y = np.array([0, 0, 0, 1, 0, 1, 1, 0, 1, 1])
    a = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    w = e2e.ideal_weights(y, a)[y, a]
    assert np.isclose(w.mean(), 1.0)
    for g in (0, 1):
        rate = w[(a == g) & (y == 1)].sum() / w[a == g].sum()
        assert np.isclose(rate, y[a == e2e.REFERENCE].mean())
